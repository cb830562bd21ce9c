"""Bar charts as SVG geometry, drawn on the server: no script, no external asset, readable
without colour (each bar has its count as a <title>, and the page gives the numbers as a
table too)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 160
AXIS = 18  # room for the labels under the bars
PAD = 16  # room at each side, so the first and last labels are not cut


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    y_ok: float
    h_ok: float
    y_failed: float
    h_failed: float
    label: str
    title: str
    show_label: bool


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    baseline: float


def stacked(
    series: Sequence[tuple[str, int, int]], *, label_every: int = 1, unit: str = ""
) -> Chart:
    """One stacked bar (successes under failures) per ``(label, ok, failed)``."""
    peak = max([ok + failed for _, ok, failed in series] + [1])
    plot = HEIGHT - AXIS
    slot = (WIDTH - 2 * PAD) / max(len(series), 1)
    bars = []
    for i, (label, ok, failed) in enumerate(series):
        h_ok = plot * ok / peak
        h_failed = plot * failed / peak
        bars.append(
            Bar(
                x=round(PAD + i * slot + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                y_ok=round(plot - h_ok, 2),
                h_ok=round(h_ok, 2),
                y_failed=round(plot - h_ok - h_failed, 2),
                h_failed=round(h_failed, 2),
                label=label,
                title=f"{label}{unit}: {ok} succeeded, {failed} failed",
                show_label=i % label_every == 0,
            )
        )
    return Chart(WIDTH, HEIGHT, bars, peak, plot)
