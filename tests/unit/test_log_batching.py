"""The servers' log handler holds request lines briefly and writes them in whole-line
batches, without reordering, losing or splitting lines (identity.logs.BatchingStreamHandler)."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import time
from pathlib import Path

from identity.logs import BatchingStreamHandler, JsonFormatter


class Writes(io.StringIO):
    """A stream that remembers each write separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": name, "msg": message, "levelno": level, "levelname": logging.getLevelName(level)}
    )


def handler_on(stream: io.StringIO) -> BatchingStreamHandler:
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler


def messages(text: str) -> list[str]:
    return [json.loads(line)["msg"] for line in text.splitlines()]


def test_request_lines_wait_and_any_other_line_writes_them_first() -> None:
    stream = Writes()
    handler = handler_on(stream)
    for i in range(3):
        handler.handle(record("identity.request", f"request {i}"))
    assert stream.getvalue() == ""
    handler.handle(record("identity.audit", "user.create"))
    assert messages(stream.getvalue()) == ["request 0", "request 1", "request 2", "user.create"]
    handler.handle(record("identity.request", "request 3"))
    handler.handle(record("identity.request", "failed", logging.WARNING))
    assert messages(stream.getvalue())[-2:] == ["request 3", "failed"]


def test_batches_are_whole_lines_within_pipe_buf() -> None:
    stream = Writes()
    handler = handler_on(stream)
    for i in range(200):
        handler.handle(record("identity.request", f"request {i} " + "x" * 100))
    handler.flush()
    assert messages(stream.getvalue()) == [f"request {i} " + "x" * 100 for i in range(200)]
    assert len(stream.writes) > 1
    for write in stream.writes:
        assert write.endswith("\n")
        assert len(write.encode()) <= BatchingStreamHandler.BATCH_BYTES


def test_held_lines_are_written_without_further_logging() -> None:
    stream = Writes()
    handler = handler_on(stream)
    handler.handle(record("identity.request", "lonely"))
    deadline = time.monotonic() + 10
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert messages(stream.getvalue()) == ["lonely"]


def _log_in_a_worker(path: str) -> None:
    stream = open(path, "a")  # noqa: SIM115 - open until the process ends, as stderr is
    handler = handler_on(stream)
    for i in range(5):
        handler.handle(record("identity.request", f"request {i}"))
    # The worker ends the way granian's do: through multiprocessing, without atexit.


def test_a_worker_process_writes_its_held_lines_when_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    worker = multiprocessing.get_context("fork").Process(target=_log_in_a_worker, args=(str(path),))
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0
    assert messages(path.read_text()) == [f"request {i}" for i in range(5)]
