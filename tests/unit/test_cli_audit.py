"""`identity audit verify` and `identity audit export` in-process, against the test database.

verify passes an intact trail and names the first bad record of a tampered one: an edit, a
record deleted in the middle, the newest record deleted. export writes JSON lines
between two moments, to standard output or a file, and refuses a bad date as a usage error.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, update

# When the five test records occurred (UTC), oldest first.
TIMES = [
    datetime(2026, 11, 29, 23, 0, tzinfo=UTC),
    datetime(2026, 11, 30, 9, 59, 59, 500000, tzinfo=UTC),
    datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
    datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
    datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
]
FIELDS = [
    "seq",
    "occurred_at",
    "event",
    "outcome",
    "actor",
    "subject",
    "client_id",
    "request_id",
    "data",
    "personal_digest",
    "details",
    "prev_hash",
    "hash",
]


@pytest.fixture
def cli(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `identity ...` in-process against the test app's database and secret key."""
    from identity.cli import audit_commands  # noqa: F401 - registers the commands
    from identity.cli import cli as command

    settings = app.extensions["identity"].settings
    monkeypatch.setenv("IDENTITY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("IDENTITY_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("IDENTITY_SECRET_KEY", settings.secret_key.get_secret_value())

    def run(*args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(command, list(args))
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    return run


@pytest.fixture
def trail(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Five chained records at TIMES, written through identity.audit.record."""
    from identity import audit
    from identity.extensions import db

    moments = iter(TIMES)
    monkeypatch.setattr(audit, "utcnow", lambda: next(moments))
    with app.app_context():
        for n, event in enumerate(["user.create", "user.sign_in", "user.sign_in"] + ["x.y"] * 2):
            audit.record(db.session, event, client_id="shop", n=n)
        db.session.commit()
    return app


def tamper(app: Any, statement: Any) -> None:
    """Change the trail with SQL, past the audit service."""
    from identity.extensions import db

    with app.app_context(), db.engine.begin() as connection:
        connection.execute(statement)


def audit_table() -> Any:
    from identity.models.audit import AuditEvent

    return AuditEvent.__table__


def test_LOG_04_intact_trail_verifies(trail, cli):
    """An untouched trail: the count of records checked and "intact", exit 0."""
    assert cli("audit", "verify").stdout == "5 records checked: intact\n"
    shown = json.loads(cli("audit", "verify", "--json").stdout)
    assert shown == {
        "intact": True,
        "checked": 5,
        "seq": None,
        "event": None,
        "occurred_at": None,
        "problem": None,
        "detail": None,
    }


def test_an_empty_trail_verifies(app, cli):
    """A new instance has no records yet: nothing is wrong."""
    assert cli("audit", "verify").stdout == "0 records checked: intact\n"


def test_LOG_04_edited_record_fails_verify(trail, cli):
    """An UPDATE of one record's data: exit 1 naming that record and the hash mismatch."""
    table = audit_table()
    tamper(trail, update(table).where(table.c.seq == 3).values(data={"n": 99}))
    result = cli("audit", "verify", code=1)
    assert result.stdout == ""
    assert result.stderr == (
        "Error: the audit trail is broken at seq 3 (user.sign_in, 2026-11-30T10:00:00+00:00): "
        "hash mismatch: its fields do not hash to its stored hash; "
        "2 records before it are intact\n"
    )
    shown = json.loads(cli("audit", "verify", "--json", code=1).stdout)
    assert shown["intact"] is False
    assert (shown["seq"], shown["problem"], shown["checked"]) == (3, "hash_mismatch", 2)
    assert (shown["event"], shown["occurred_at"]) == ("user.sign_in", "2026-11-30T10:00:00+00:00")


def test_LOG_04_deleting_a_middle_record_fails_verify(trail, cli):
    """A deleted record in the middle: the next record is named, at the gap in seq."""
    tamper(trail, delete(audit_table()).where(audit_table().c.seq == 3))
    result = cli("audit", "verify", code=1)
    assert "broken at seq 4 (x.y, 2026-11-30T12:00:00+00:00): gap in seq: seq 3 is missing;" in (
        result.stderr
    )


def test_LOG_04_deleting_the_newest_record_fails_verify(trail, cli):
    """The rest of the chain is intact, but it no longer reaches the tip audit_head holds."""
    tamper(trail, delete(audit_table()).where(audit_table().c.seq == 5))
    result = cli("audit", "verify", code=1)
    assert result.stderr == (
        "Error: the audit trail is broken at seq 5 (missing): truncated: the trail ends at "
        "seq 4, but audit_head records seq 5: the newest records were deleted; "
        "4 records before it are intact\n"
    )
    shown = json.loads(cli("audit", "verify", "--json", code=1).stdout)
    assert (shown["seq"], shown["problem"], shown["event"]) == (5, "truncated", None)


def test_export_writes_every_record_as_a_json_line(trail, cli):
    """One JSON object per line, oldest first, with every field of the record; occurred_at
    in ISO 8601 UTC, as hashed, and the chain's hashes linking each line to the one before."""
    lines = cli("audit", "export").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [list(record) for record in records] == [FIELDS] * 5
    assert [record["seq"] for record in records] == [1, 2, 3, 4, 5]
    assert [record["occurred_at"] for record in records] == [t.isoformat() for t in TIMES]
    first = records[0]
    assert (first["event"], first["outcome"], first["client_id"]) == (
        "user.create",
        "success",
        "shop",
    )
    assert first["data"] == {"n": 0} and first["details"]["actor_id"] is None
    assert first["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))


@pytest.mark.parametrize(
    ("options", "seqs"),
    [
        (["--since", "2026-11-30"], [2, 3, 4, 5]),
        (["--until", "2026-11-30T10:00:00Z"], [1, 2]),
        (["--since", "2026-11-30", "--until", "2026-11-30T10:00:00Z"], [2]),
        (["--since", "2026-11-30T12:00:00+02:00"], [3, 4, 5]),  # 10:00 UTC
        (["--since", "2026-11-30T10:00:00", "--until", "2026-12-01"], [3, 4]),  # UTC
        (["--since", "2027-01-01"], []),
    ],
)
def test_export_since_includes_and_until_excludes(trail, cli, options, seqs):
    """--since keeps records at that moment or later, --until those before it; a date alone
    is its midnight, a time without an offset is UTC."""
    lines = cli("audit", "export", *options).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == seqs


def test_export_to_a_file(trail, cli, tmp_path: Path):
    """--output writes the lines to a file readable by its owner only and says how many."""
    target = tmp_path / "audit.jsonl"
    result = cli("audit", "export", "--since", "2026-11-30", "--output", str(target))
    assert result.stdout == f"exported 4 records to {target}\n"
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [2, 3, 4, 5]
    assert target.stat().st_mode & 0o077 == 0
    assert [path.name for path in tmp_path.iterdir()] == ["audit.jsonl"]  # no temporary left
    missing = cli("audit", "export", "--output", str(tmp_path / "no" / "x.jsonl"), code=1)
    assert "Error: cannot write" in missing.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "yesterday"], "Invalid value for '--since': 'yesterday' is not an ISO 8601"),
        (["--until", "2026-13-01"], "Invalid value for '--until': '2026-13-01' is not an ISO 8601"),
        (["--since", "2026-12-01", "--until", "2026-11-30"], "must be later than --since"),
    ],
)
def test_export_refuses_a_bad_date(trail, cli, options, message):
    """A date that is no ISO 8601 date, or an empty interval, is a usage error (exit 2)."""
    result = cli("audit", "export", *options, code=2)
    assert message in result.stderr and result.stdout == ""
