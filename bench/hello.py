"""Flask "hello world": the ceiling every endpoint is measured against.

``python bench/hello.py --server granian --port 8001 --workers 2`` serves it through
``identity.server.serve_wsgi``, the very code path ``identity serve`` uses, so both run
under the same server with the same settings.
"""

from __future__ import annotations

import argparse

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello, World!"


def main() -> None:
    from identity.server import SERVERS, serve_wsgi

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=SERVERS, default="granian")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="granian threads per worker")
    args = parser.parse_args()
    extra = {"threads": args.threads} if args.threads else {}
    serve_wsgi(
        lambda: app,
        server=args.server,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="WARNING",
        **extra,
    )


if __name__ == "__main__":
    main()
