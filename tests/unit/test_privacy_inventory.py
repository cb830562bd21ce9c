"""The data inventory (GDPR-11): every column of every table is classified, and
docs/privacy.md (the records of processing) is generated from it and current."""

from __future__ import annotations

from pathlib import Path

from identity.models.base import Base
from identity.privacy import records
from identity.privacy.inventory import (
    DELETE,
    INVENTORY,
    KEEP,
    NOT_PERSONAL,
    PSEUDONYMISE,
    exported_columns,
    exported_tables,
    personal_columns,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"


def test_GDPR_11_every_column_of_every_table_is_in_the_inventory() -> None:
    """A new table or column fails here until it is classified."""
    import identity.models  # noqa: F401 - registers every table

    declared = {t.name: {c.name for c in t.columns} for t in Base.metadata.sorted_tables}
    listed = {name: set(table.columns) for name, table in INVENTORY.items()}
    missing = {
        name: sorted(columns - listed.get(name, set()))
        for name, columns in declared.items()
        if columns - listed.get(name, set())
    }
    stale = {
        name: sorted(columns - declared.get(name, set()))
        for name, columns in listed.items()
        if columns - declared.get(name, set())
    }
    assert not missing, f"classify these columns in identity/privacy/inventory.py: {missing}"
    assert not stale, f"the inventory names columns the models do not have: {stale}"


def test_GDPR_11_each_table_says_what_erasure_does_and_whose_rows_it_holds() -> None:
    for name, table in INVENTORY.items():
        assert table.purpose and table.retention, name
        assert table.erasure in (DELETE, PSEUDONYMISE, KEEP, NOT_PERSONAL), name
        if table.erasure == NOT_PERSONAL:
            assert not personal_columns(name), f"{name} is said to hold no personal data"
        if table.erasure == KEEP:
            assert table.note, f"{name}: a table kept at erasure says why"
        if table.owner is not None:
            assert table.owner in table.columns, name
        if exported_columns(name):
            assert table.owner, f"{name} exports columns but names no owner column"
        for column, entry in table.columns.items():
            assert not (entry.export and entry.category is None), f"{name}.{column}"


def test_GDPR_11_the_export_includes_the_account_and_what_hangs_off_it() -> None:
    tables = set(exported_tables())
    assert {"users", "login_sessions", "consents", "refresh_tokens", "sent_mails"} <= tables
    assert {"totp_credentials", "webauthn_credentials", "audit_events", "invitations"} <= tables
    secrets = [
        (t, c)
        for t, table in INVENTORY.items()
        for c, column in table.columns.items()
        if column.export and ("hash" in c or "secret" in c or "sealed" in c or c == "bundle")
    ]
    assert not secrets, "no hash, secret or sealed value is ever exported (GDPR-02)"


def test_GDPR_11_docs_privacy_holds_the_generated_inventory() -> None:
    """docs/privacy.md is current: regenerate it with `identity gdpr inventory --markdown`."""
    document = DOC.read_text()
    assert records.replace_block(document) == document
