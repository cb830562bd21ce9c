"""A relying party's callback endpoint for the browser tests: an HTTP server on 127.0.0.1,
in a background thread, that records every request it receives and answers a plain page."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

PAGE = (
    b'<!doctype html><html lang="en"><head><meta charset="utf-8">'
    b'<link rel="icon" href="data:,"><title>Relying party</title></head>'
    b"<body><p>Back at the relying party.</p></body></html>"
)


@dataclass(frozen=True)
class Received:
    """One request as the relying party saw it."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        """The authorization response: from the query, or from the body of a form_post."""
        return {**self.query, **self.form}


class CallbackServer:
    """``with CallbackServer() as rp:`` listens on a free port of 127.0.0.1 until the end."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        """The first request recorded (so far or within ``timeout``) that matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for received in self.received:
                    if predicate(received):
                        return received
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n".join(map(repr, self.received)) or "nothing"
                    raise AssertionError(
                        f"the relying party received no such request; got:\n{seen}"
                    )
                self._changed.wait(left)

    def _record(self, received: Received) -> None:
        with self._changed:
            self.received.append(received)
            self._changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        record = self._record

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer({})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                self._answer(dict(parse_qsl(body, keep_blank_values=True)))

            def _answer(self, form: dict[str, str]) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                # Recorded before answering: once the browser shows the page, it is here.
                record(Received(self.command, parts.path, query, form))
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the records are the log

        return Handler
