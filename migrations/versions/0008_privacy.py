"""GDPR: export and erasure jobs, the erasure ledger, mail sent, security events to deliver

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    parent = target.split(".", maxsplit=1)[0]
    return sa.ForeignKeyConstraint(
        [column], [target], name=op.f(f"fk_{table}_{column}_{parent}"), ondelete=ondelete
    )


def upgrade() -> None:
    # Plain ALTER TABLE on both databases: a batch rebuild of users on SQLite would drop
    # the table, and with it (ON DELETE CASCADE) every row that refers to an account.
    op.add_column("users", sa.Column("inactivity_warned_at", sa.DateTime(timezone=True)))
    op.create_table(
        "privacy_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("by_operator", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("disabled_account", sa.Boolean(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("download_hash", sa.String(length=64), nullable=True),
        sa.Column("download_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        _fk("privacy_jobs", "user_id", "users.id", "CASCADE"),
        _fk("privacy_jobs", "requested_by", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_jobs")),
        sa.UniqueConstraint("download_hash", name=op.f("uq_privacy_jobs_download_hash")),
    )
    op.create_index(op.f("ix_privacy_jobs_user_id"), "privacy_jobs", ["user_id"])
    op.create_index(op.f("ix_privacy_jobs_run_after"), "privacy_jobs", ["run_after"])
    op.create_table(
        "erasure_ledger",
        sa.Column("receipt_id", sa.String(length=32), nullable=False),
        sa.Column("subject_hash", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("receipt_id", name=op.f("pk_erasure_ledger")),
        sa.UniqueConstraint("subject_hash", name=op.f("uq_erasure_ledger_subject_hash")),
    )
    op.create_table(
        "sent_mails",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        _fk("sent_mails", "user_id", "users.id", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sent_mails")),
    )
    op.create_index(op.f("ix_sent_mails_user_id"), "sent_mails", ["user_id"])
    op.create_index(op.f("ix_sent_mails_sent_at"), "sent_mails", ["sent_at"])
    op.create_table(
        "security_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_pk", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        _fk("security_events", "client_pk", "clients.id", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
    )
    op.create_index(op.f("ix_security_events_client_pk"), "security_events", ["client_pk"])
    op.create_index(
        op.f("ix_security_events_next_attempt_at"), "security_events", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("security_events")
    op.drop_table("sent_mails")
    op.drop_table("erasure_ledger")
    op.drop_table("privacy_jobs")
    op.execute("ALTER TABLE users DROP COLUMN inactivity_warned_at")  # SQLite 3.35+
