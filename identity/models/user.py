"""Accounts and invitations."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from identity.exceptions import InvalidInput
from identity.models.base import Base, new_uuid, utcnow
from identity.models.rbac import Role, RoleAssignment


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        # The disabled accounts, which each worker loads (identity.revocation_state).
        Index(
            "ix_users_disabled_at",
            "disabled_at",
            postgresql_where=text("disabled_at IS NOT NULL"),
            sqlite_where=text("disabled_at IS NOT NULL"),
        ),
    )

    # The id is the OIDC ``sub``: random, never reused, never derived from the email.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    email_verified_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the profile (the claims) last changed: the OIDC ``updated_at`` claim. Set
    # explicitly, so that sign-ins and password changes do not count.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Issuing a reset link stamps this, so the newest link invalidates older ones.
    reset_requested_at: Mapped[datetime | None]
    # Last verification mail (a new account's, or a new address's when the email changes):
    # resends cannot bomb a mailbox, and a newer email-change link kills the older ones.
    verification_sent_at: Mapped[datetime | None]
    last_sign_in_at: Mapped[datetime | None]
    # Retention of inactive accounts: when the owner was warned that it will be erased.
    inactivity_warned_at: Mapped[datetime | None]

    # The roles given to the user directly and globally (not through a group, nor for one
    # client only): what `identity users list` shows. Effective roles come from identity.rbac.
    roles: Mapped[list[Role]] = relationship(
        secondary=RoleAssignment.__table__,
        primaryjoin=lambda: User.id == RoleAssignment.user_id,
        secondaryjoin=lambda: (
            (Role.id == RoleAssignment.role_id) & RoleAssignment.scope_client_pk.is_(None)
        ),
        viewonly=True,
        order_by=lambda: Role.name,
    )

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def role_names(self) -> list[str]:
        return sorted(role.name for role in self.roles)


class Invitation(Base):
    """A single-use invitation to register, bound to an optional email and role."""

    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    # SHA-256 of the token in the invitation link; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    role_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("roles.id", ondelete="CASCADE")
    )
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )

    role: Mapped[Role | None] = relationship(lazy="joined")


def user_by_email(session: Session, email: str) -> User | None:
    """The account of an address in canonical form (identity.accounts.emails), or None."""
    return session.execute(select(User).where(User.email == email)).scalar_one_or_none()


def roles_by_names(session: Session, names: Iterable[str]) -> list[Role]:
    """The roles of these names, in their order; an unknown name is InvalidInput."""
    wanted = list(dict.fromkeys(names))
    found = {
        role.name: role
        for role in session.execute(select(Role).where(Role.name.in_(wanted))).scalars()
    }
    for name in wanted:
        if name not in found:
            raise InvalidInput(f"unknown role: {name}")
    return [found[name] for name in wanted]
