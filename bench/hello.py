"""Flask "hello world": the ceilings every endpoint is measured against.

``python bench/hello.py --server granian --port 8001 --workers 2`` serves it through
``identity.serving.serve_wsgi``, the very code path ``identity serve`` uses, so both run
under the same server with the same settings.

``/`` answers a constant: the cost of the server and Flask alone. ``/statement`` also runs
introspection's one SQL statement (the token's revocation keys and its user's row, as
``identity.oauth.tokens`` builds it) on PostgreSQL, through psycopg on one autocommit
connection per thread and nothing else: the ceiling of any endpoint that makes one
round trip to the database per request, given ``--database-url`` and ``--user-id``.
"""

from __future__ import annotations

import argparse
import threading
import uuid
from typing import Any

from flask import Flask

app = Flask(__name__)
_statement: dict[str, Any] = {}
_local = threading.local()


@app.get("/")
def hello() -> str:
    return "Hello, World!"


@app.get("/statement")
def statement() -> str:
    import psycopg

    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = psycopg.connect(_statement["url"], autocommit=True)
    jti = uuid.uuid4().hex  # never revoked, as in the benchmark's introspection
    rows = connection.execute(
        _statement["sql"],
        {
            "k0": f"jti:{jti}",
            "k1": f"gid:{jti}",
            "k2": f"sub:{_statement['user_id']}",
            "user_id": _statement["user_id"],
        },
    ).fetchall()
    return f"Hello, World! ({len(rows)} row)"


def configure_statement(database_url: str, user_id: str) -> None:
    from sqlalchemy.dialects import postgresql

    from identity.oauth.tokens import _TOKEN_STATE

    _statement["sql"] = str(_TOKEN_STATE.compile(dialect=postgresql.psycopg.dialect()))
    _statement["url"] = database_url.replace("postgresql+psycopg://", "postgresql://")
    _statement["user_id"] = uuid.UUID(user_id)


def main() -> None:
    from identity.serving import SERVERS, serve_wsgi

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", choices=SERVERS, default="granian")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="granian threads per worker")
    parser.add_argument("--database-url", help="PostgreSQL database of /statement")
    parser.add_argument("--user-id", help="the user whose row /statement reads")
    args = parser.parse_args()
    if args.database_url and args.user_id:
        configure_statement(args.database_url, args.user_id)
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
