"""Role-based access control: roles, the permissions they hold and the roles they inherit,
groups (which nest), the permissions applications declare, and role assignments.

A permission is a string ``resource:action``; a role may hold ``resource:*`` or ``*``.
An assignment gives one role to exactly one principal (a user, a group or a client's
service account), either globally (``scope_client_pk`` NULL) or for one client only.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Table,
    Uuid,
    false,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from identity.models.base import Base, new_uuid, utcnow


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    # admin, user-manager and auditor: their permissions are identity's, kept by code.
    builtin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


role_permissions = Table(
    "role_permissions",
    Base.metadata,
    Column("role_id", Uuid, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("permission", String(128), primary_key=True),
)

# role_id inherits every permission of parent_id (a DAG: the service refuses cycles).
role_parents = Table(
    "role_parents",
    Base.metadata,
    Column("role_id", Uuid, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("parent_id", Uuid, ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    CheckConstraint("role_id <> parent_id", name="not_self"),
)


class Group(Base):
    """Users in a group get the group's roles; a subgroup's members get its parents' too."""

    __tablename__ = "groups"
    __table_args__ = (CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_self"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


group_members = Table(
    "group_members",
    Base.metadata,
    Column("group_id", Uuid, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_group_members_user_id", "user_id"),
)


class ClientPermission(Base):
    """A permission an application (a client) declares for its own resources."""

    __tablename__ = "client_permissions"

    client_pk: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    # Whether tokens for this client carry it in their "permissions" claim: the client
    # chooses, so that tokens stay small.
    in_token: Mapped[bool] = mapped_column(Boolean, default=False)


class RoleAssignment(Base):
    __tablename__ = "role_assignments"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN user_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN group_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN client_pk IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_principal",
        ),
        # One assignment per role, principal and scope. The principal is whichever of the
        # three columns is set; NULLs are never equal in a unique index, hence two partial
        # ones (global, and scoped to a client).
        Index(
            "uq_role_assignments_global",
            "role_id",
            func.coalesce(Column("user_id"), Column("group_id"), Column("client_pk")),
            unique=True,
            sqlite_where=Column("scope_client_pk").is_(None),
            postgresql_where=Column("scope_client_pk").is_(None),
        ),
        Index(
            "uq_role_assignments_scoped",
            "role_id",
            func.coalesce(Column("user_id"), Column("group_id"), Column("client_pk")),
            "scope_client_pk",
            unique=True,
            sqlite_where=Column("scope_client_pk").isnot(None),
            postgresql_where=Column("scope_client_pk").isnot(None),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_uuid)
    role_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("roles.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    # A client's service account (what client credentials tokens act as).
    client_pk: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    scope_client_pk: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("clients.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
