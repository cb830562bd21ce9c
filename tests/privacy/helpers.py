"""What the privacy tests share: a person with everything an account can have, running
the job queue, and reading every table."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from flask import Flask
from sqlalchemy import String, Text, inspect, select
from sqlalchemy.types import JSON

from identity.models.base import utcnow

IP = "203.0.113.77"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) FullAccountTest/1.0"


def run_jobs(app: Flask, now: datetime | None = None) -> int:
    from identity.extensions import db
    from identity.privacy import jobs

    with app.app_context():
        return jobs.run_due(db.session(), app.extensions["identity"], now)


def later(days: float) -> datetime:
    return utcnow() + timedelta(days=days)


def every_text_value(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(table, column, value) for every text and JSON value in the database."""
    from identity.extensions import db
    from identity.models.base import Base

    with app.app_context():
        for table in Base.metadata.sorted_tables:
            columns = [
                c
                for c in table.columns
                if isinstance(getattr(c.type, "impl", c.type), (String, Text, JSON))
                or c.name.endswith("_id")
                or c.name in ("id", "user_id", "subject")
            ]
            for row in db.session.execute(select(*columns)).mappings():
                for name, value in row.items():
                    if value is not None:
                        text = value if isinstance(value, str) else json.dumps(value, default=str)
                        yield table.name, name, text
        db.session.remove()


def traces(app: Flask, needles: list[str]) -> list[tuple[str, str, str]]:
    """Where any of ``needles`` (case-insensitive) still appears in the database."""
    lowered = [n.lower() for n in needles]
    return [
        (table, column, needle)
        for table, column, text in every_text_value(app)
        for needle in lowered
        if needle in text.lower()
    ]


def table_names(app: Flask) -> set[str]:
    from identity.extensions import db

    with app.app_context():
        return set(inspect(db.engine).get_table_names())


class EventListener:
    """A relying party's Security Event Token endpoint on loopback (RFC 8935)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []  # (content type, body)
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                listener.received.append((self.headers.get("Content-Type", ""), body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def user_id_of(app: Flask, email: str) -> uuid.UUID:
    from identity.extensions import db
    from identity.models.user import User

    with app.app_context():
        return db.session.execute(select(User.id).where(User.email == email)).scalar_one()
