"""The admin API's audit events: read-only, filtered, newest first, a page at a time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from tests.api.conftest import Api
from tests.oauth.conftest import fast_keys  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("fast_keys")

PROBLEM = "application/problem+json"
START = datetime(2020, 1, 1, tzinfo=UTC)
ACTOR_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
ACTOR_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
SUBJECT = uuid.UUID("cccccccc-0000-4000-8000-000000000003")
FIELDS = {
    "seq",
    "occurred_at",
    "event",
    "outcome",
    "actor_id",
    "subject_id",
    "client_id",
    "ip",
    "request_id",
    "data",
}


@dataclass(frozen=True)
class Seeded:
    seq: int
    n: int
    event: str
    outcome: str
    actor_id: uuid.UUID
    subject_id: uuid.UUID | None

    @property
    def at(self) -> datetime:
        return START + timedelta(hours=self.n)


def at(hours: int) -> str:
    return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def seeded(app: Flask, admin_api: Api) -> list[Seeded]:
    """Twelve events an hour apart from 2020-01-01T00:00Z (after the events of creating the
    caller, which happen now): alpha every third, failures every other, actor A then B,
    the subject every fourth."""
    from identity import audit
    from identity.extensions import db

    rows = []
    with app.app_context():
        for n in range(12):
            with time_machine.travel(START + timedelta(hours=n), tick=False):
                entry = audit.record(
                    db.session(),
                    "test.alpha" if n % 3 == 0 else "test.beta",
                    outcome="failure" if n % 2 else "success",
                    actor_id=ACTOR_A if n < 6 else ACTOR_B,
                    subject_id=SUBJECT if n % 4 == 0 else None,
                    client_id="seeded",
                    n=n,
                )
            rows.append(
                Seeded(
                    entry.seq,
                    n,
                    entry.event,
                    entry.outcome,
                    entry.actor_id,  # type: ignore[arg-type]
                    entry.subject_id,
                )
            )
        db.session.commit()
    return rows


def all_seqs(app: Flask) -> list[int]:
    from identity.extensions import db
    from identity.models.audit import AuditEvent

    with app.app_context():
        return list(db.session.execute(select(AuditEvent.seq)).scalars())


def walk(api: Api, **query: Any) -> tuple[list[int], int]:
    """Every page of a query: the seqs in the order read, and the number of pages."""
    seqs: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        page = api.get("/audit-events", query_string=params)
        assert page.status_code == 200, page.json
        seqs += [e["seq"] for e in page.json["items"]]
        pages += 1
        cursor = page.json["next_cursor"]
        if cursor is None:
            return seqs, pages


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.json
    assert response.mimetype == PROBLEM
    return response.json  # type: ignore[no-any-return]


def test_events_newest_first_with_their_fields(admin_api: Api, seeded: list[Seeded]) -> None:
    response = admin_api.get("/audit-events", query_string={"limit": 200})
    assert response.status_code == 200
    items = response.json["items"]
    assert response.json["next_cursor"] is None
    seqs = [e["seq"] for e in items]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert all(set(e) == FIELDS for e in items)
    last = next(e for e in items if e["seq"] == seeded[-1].seq)
    assert last == {
        "seq": seeded[-1].seq,
        "occurred_at": "2020-01-01T11:00:00Z",
        "event": "test.beta",
        "outcome": "failure",
        "actor_id": str(ACTOR_B),
        "subject_id": None,
        "client_id": "seeded",
        "ip": None,
        "request_id": None,
        "data": {"n": 11},
    }


def expected(seeded: list[Seeded], keep: Callable[[Seeded], bool]) -> list[int]:
    return sorted((s.seq for s in seeded if keep(s)), reverse=True)


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ({"event": "test.alpha"}, lambda s: s.n % 3 == 0),
        ({"outcome": "failure"}, lambda s: s.n % 2 == 1),
        ({"actor_id": str(ACTOR_A)}, lambda s: s.n < 6),
        ({"subject_id": str(SUBJECT)}, lambda s: s.n % 4 == 0),
        ({"since": at(5), "until": at(9)}, lambda s: 5 <= s.n < 9),
        ({"until": at(3)}, lambda s: s.n < 3),
        (
            {"event": "test.beta", "outcome": "success", "actor_id": str(ACTOR_B)},
            lambda s: s.n % 3 and s.n % 2 == 0 and s.n >= 6,
        ),
        (
            {"event": "test.alpha", "actor_id": str(ACTOR_B), "outcome": "failure"},
            lambda s: s.n == 9,
        ),
        # Each alone matches events; together none.
        ({"event": "test.alpha", "since": at(4), "subject_id": str(SUBJECT)}, lambda s: False),
        ({"event": "test.gamma"}, lambda s: False),
    ],
    ids=[
        "event",
        "outcome",
        "actor",
        "subject",
        "since-until",
        "until",
        "event-outcome-actor",
        "event-actor-outcome",
        "nothing-matches-all",
        "unknown-event",
    ],
)
def test_LOG_01_filters(
    admin_api: Api, seeded: list[Seeded], query: dict[str, str], keep: Callable[[Seeded], bool]
) -> None:
    """Every filter given must match: exactly the matching events, newest first."""
    response = admin_api.get("/audit-events", query_string={**query, "limit": 200})
    assert response.status_code == 200, response.json
    assert [e["seq"] for e in response.json["items"]] == expected(seeded, keep)


def test_since_includes_its_moment_and_what_came_later(
    admin_api: Api, seeded: list[Seeded]
) -> None:
    response = admin_api.get("/audit-events", query_string={"since": at(10), "limit": 200})
    items = response.json["items"]
    assert {e["seq"] for e in items} & {s.seq for s in seeded} == {
        s.seq for s in seeded if s.n >= 10
    }
    assert all(e["occurred_at"] >= "2020-01-01T10:00:00Z" for e in items)
    offset = admin_api.get(
        "/audit-events",
        query_string={"since": "2020-01-01T11:00:00+01:00", "until": at(11), "limit": 200},
    )
    assert [e["seq"] for e in offset.json["items"]] == [seeded[10].seq]


def test_LOG_01_pages_hold_every_event_exactly_once(
    app: Flask, admin_api: Api, seeded: list[Seeded]
) -> None:
    """Cursor pagination by seq: across pages every event appears exactly once, newest
    first, also while new events are written between two pages."""
    from identity import audit
    from identity.extensions import db

    everything = sorted(all_seqs(app), reverse=True)
    seqs, pages = walk(admin_api, limit=3)
    assert seqs == everything
    assert pages == -(-len(everything) // 3)

    first = admin_api.get("/audit-events", query_string={"limit": 4, "outcome": "failure"})
    with app.app_context():
        audit.record(db.session(), "test.alpha", outcome="failure")
        db.session.commit()
    rest, _ = walk(admin_api, limit=4, outcome="failure", cursor=first.json["next_cursor"])
    read = [e["seq"] for e in first.json["items"]] + rest
    assert read == expected(seeded, lambda s: s.n % 2 == 1)


def test_LOG_01_api_changes_are_audited_with_their_request(admin_api: Api) -> None:
    """A change made through the API is in the trail with the id of its request."""
    created = admin_api.post(
        "/clients", json={"name": "Audited", "grant_types": ["client_credentials"], "scope": ""}
    )
    assert created.status_code == 201
    response = admin_api.get("/audit-events", query_string={"event": "client.create", "limit": 1})
    (event,) = response.json["items"]
    assert event["client_id"] == created.json["client_id"]
    assert event["request_id"] == created.headers["X-Request-ID"]
    assert event["data"]["via"] == "api"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "2020-01-01T00:00:00"}, "query.since"),
        ({"until": "yesterday"}, "query.until"),
        ({"actor_id": "not-a-uuid"}, "query.actor_id"),
        ({"subject_id": "42"}, "query.subject_id"),
        ({"limit": "1000"}, "query.limit"),
        ({"seq": "1"}, "query.seq"),
    ],
)
def test_bad_filters_are_422(admin_api: Api, query: dict[str, str], field: str) -> None:
    """Datetimes need an offset; ids are UUIDs; unknown parameters are refused."""
    problem = assert_problem(admin_api.get("/audit-events", query_string=query), 422)
    assert [e["field"] for e in problem["errors"]] == [field]


@pytest.mark.parametrize("cursor", ["%%%", "WyJ4Il0", "WyIxIiwiMiJd"])
def test_bad_cursor_is_400(admin_api: Api, cursor: str) -> None:
    """Not base64 JSON, a key that is no seq, a key of two parts."""
    response = admin_api.get("/audit-events", query_string={"cursor": cursor})
    assert "cursor" in assert_problem(response, 400)["detail"]


def test_AUTHZ_01_no_token_is_401(app: Flask) -> None:
    response = Api(app.test_client(), None).get("/audit-events")
    assert_problem(response, 401)
    assert "items" not in response.json


def test_AUTHZ_02_the_trail_needs_audit_read(
    service_account: Callable[..., Api], seeded: list[Seeded]
) -> None:
    """The auditor reads the trail; a user manager (no audit:read) does not."""
    assert service_account("auditor", name="auditor").get("/audit-events").status_code == 200
    manager = service_account("user-manager", name="manager")
    response = manager.get("/audit-events")
    assert assert_problem(response, 403)["missing"] == "audit:read"
    assert "test.alpha" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/audit-events"),
        ("PUT", "/audit-events"),
        ("PATCH", "/audit-events"),
        ("DELETE", "/audit-events"),
        ("DELETE", "/audit-events/1"),
        ("PATCH", "/audit-events/1"),
    ],
)
def test_LOG_04_the_api_cannot_change_the_trail(
    app: Flask, admin_api: Api, seeded: list[Seeded], method: str, path: str
) -> None:
    """Not even an administrator can change or delete a record through the API: no such
    operation exists; the trail stays whole and verifies."""
    from identity import audit
    from identity.extensions import db

    before = all_seqs(app)
    response = admin_api.call(method, path, json={"event": "forged"})
    assert response.status_code in (404, 405)
    assert all_seqs(app) == before
    with app.app_context():
        assert audit.verify_chain(db.session()).intact
