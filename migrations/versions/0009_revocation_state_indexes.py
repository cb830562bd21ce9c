"""Indexes for the catch-up reads of each worker's revocation state

Every worker reads, every heartbeat, the revocations and erasures made in the last
seconds, and at start the disabled users (identity.revocation_state): without these, each
read scans its whole table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DISABLED = sa.text("disabled_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(op.f("ix_token_revocations_revoked_at"), "token_revocations", ["revoked_at"])
    op.create_index(op.f("ix_erasure_ledger_erased_at"), "erasure_ledger", ["erased_at"])
    # Only the few disabled accounts: a partial index stays small among millions of users.
    op.create_index(
        op.f("ix_users_disabled_at"),
        "users",
        ["disabled_at"],
        postgresql_where=DISABLED,
        sqlite_where=DISABLED,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_users_disabled_at"), table_name="users")
    op.drop_index(op.f("ix_erasure_ledger_erased_at"), table_name="erasure_ledger")
    op.drop_index(op.f("ix_token_revocations_revoked_at"), table_name="token_revocations")
