"""The soak's report (bench/soak.py): per 5-second bucket, the requests, errors, p50 and p99
latency and the memory (VmRSS) of every server worker, as a markdown table and a PNG chart
with the fault windows shaded."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from soak_model import Sample

BUCKET = 5.0  # seconds


@dataclass
class Fault:
    kind: str  # "kill -9 worker", "PostgreSQL restart", "Redis down"
    start: float  # the fault began (seconds on the soak's clock)
    end: float  # the service was back (the killed worker's successor serves; the store answers)
    note: str = ""
    down: float | None = None  # PostgreSQL or Redis: stopped, and ...
    back_from: float | None = None  # ... being started again


@dataclass
class Bucket:
    start: float
    requests: int
    errors: int
    p50: float | None
    p99: float | None
    rss: dict[str, float]  # worker label ("s1/w1234") -> mean VmRSS in MiB


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def buckets(
    samples: list[Sample], rss: list[tuple[float, str, float]], duration: float
) -> list[Bucket]:
    count = max(1, int(-(-duration // BUCKET)))
    latencies: dict[int, list[float]] = defaultdict(list)
    errors: dict[int, int] = defaultdict(int)
    for sample in samples:
        index = min(count - 1, max(0, int(sample.start // BUCKET)))
        latencies[index].append((sample.end - sample.start) * 1000)
        errors[index] += not sample.ok
    memory: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for when, label, mib in rss:
        memory[min(count - 1, int(when // BUCKET))][label].append(mib)
    return [
        Bucket(
            start=i * BUCKET,
            requests=len(latencies[i]),
            errors=errors[i],
            p50=quantile(latencies[i], 0.5),
            p99=quantile(latencies[i], 0.99),
            rss={label: statistics.fmean(v) for label, v in sorted(memory[i].items())},
        )
        for i in range(count)
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(rows: list[Bucket], faults: list[Fault]) -> str:
    lines = [
        "| Time (s) | Requests/s | Errors | p50 (ms) | p99 (ms) | RSS per worker (MiB) | Fault |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        end = row.start + BUCKET
        events = [f.kind for f in faults if f.start < end and f.end >= row.start]
        rss = ", ".join(f"{mib:.0f}" for mib in row.rss.values()) or "-"
        lines.append(
            f"| {row.start:.0f}-{end:.0f} | {row.requests / BUCKET:.0f} | {row.errors} | "
            f"{_ms(row.p50)} | {_ms(row.p99)} | {rss} | {', '.join(events)} |"
        )
    return "\n".join(lines)


def chart(
    rows: list[Bucket], faults: list[Fault], rss: list[tuple[float, str, float]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    x = [row.start + BUCKET / 2 for row in rows]
    figure, (latency, load, memory) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    latency.plot(x, [row.p50 for row in rows], marker=".", label="p50")
    latency.plot(x, [row.p99 for row in rows], marker=".", label="p99")
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    load.plot(x, [row.requests / BUCKET for row in rows], marker=".", label="requests/s")
    load.bar(x, [row.errors for row in rows], width=BUCKET * 0.8, color="tab:red", label="errors")
    load.set_ylabel("per 5 s bucket")
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for when, label, mib in rss:
        series[label].append((when, mib))
    for label, points in sorted(series.items()):
        memory.plot([p[0] for p in points], [p[1] for p in points], label=label)
    memory.set_ylabel("VmRSS (MiB)")
    memory.set_xlabel("seconds")
    colours = {"kill -9 worker": "tab:orange", "PostgreSQL restart": "tab:purple"}
    for axis in (latency, load, memory):
        for fault in faults:
            colour = colours.get(fault.kind, "tab:green")
            axis.axvspan(fault.start, max(fault.end, fault.start + 0.5), alpha=0.2, color=colour)
        axis.grid(alpha=0.3)
    latency.legend(loc="upper left", fontsize="small")
    load.legend(loc="upper left", fontsize="small")
    memory.legend(loc="upper left", fontsize="x-small", ncol=3)
    latency.set_title(
        "identity soak: shaded: " + "; ".join(f"{f.kind} ({f.start:.0f} s)" for f in faults),
        fontsize="small",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
