"""rbac: role permissions and inheritance, groups, client permissions, role assignments

Today's roles move into the model unchanged: every row of user_roles and client_roles
becomes a global assignment of the same role to the same user or client, and no role gains
a power it did not have:

- The admin role (what `identity init` gives the bootstrap administrator) becomes the
  built-in admin. A client that had a role named admin does not keep it: until now that
  was only a claim in its tokens, and the built-in admin now holds every permission, so
  an operator gives it back on purpose (`identity roles assign admin --client ID`).
- The built-in user-manager and auditor are added. A role of the same name that existed
  before keeps its holders under the name NAME-legacy, with no permission, as before.

The downgrade gives user_roles and client_roles back their global assignments; renamed
roles keep their -legacy names.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The built-in roles as this revision knows them (identity.rbac.permissions keeps their
# permissions in code; a migration does not import the application).
BUILTIN = {
    "admin": "Full administrative access.",
    "user-manager": "Manages users, groups and sessions; grants only roles it holds.",
    "auditor": "Reads everything, including the audit trail; changes nothing.",
}

_PRINCIPAL = sa.text("coalesce(user_id, group_id, client_pk)")


def upgrade() -> None:
    now = datetime.now(UTC)
    # Plain ALTERs, not a batch copy: on SQLite a batch would re-create "roles", and
    # dropping the old table would cascade to every row that points at a role.
    op.add_column(
        "roles", sa.Column("builtin", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    roles = sa.table(
        "roles",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("description", sa.String()),
        sa.column("builtin", sa.Boolean()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    existing = set(bind.execute(sa.select(roles.c.name)).scalars())
    for name in BUILTIN.keys() - {"admin"}:
        if name in existing:  # an application's own role: keep it, under another name
            legacy = f"{name}-legacy"
            while legacy in existing:
                legacy += "-"
            op.execute(roles.update().where(roles.c.name == name).values(name=legacy))
            existing = (existing - {name}) | {legacy}
    op.execute(roles.update().where(roles.c.name == "admin").values(builtin=True))
    missing = [
        {
            "id": uuid.uuid4(),
            "name": name,
            "description": description,
            "builtin": True,
            "created_at": now,
        }
        for name, description in BUILTIN.items()
        if name not in existing
    ]
    if missing:
        op.bulk_insert(roles, missing)

    op.create_table(
        "role_permissions",
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.Column("permission", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_role_permissions_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("role_id", "permission", name=op.f("pk_role_permissions")),
    )
    op.create_table(
        "role_parents",
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("role_id <> parent_id", name=op.f("ck_role_parents_not_self")),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["roles.id"],
            name=op.f("fk_role_parents_parent_id_roles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_role_parents_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("role_id", "parent_id", name=op.f("pk_role_parents")),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("parent_id IS NULL OR parent_id <> id", name=op.f("ck_groups_not_self")),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["groups.id"],
            name=op.f("fk_groups_parent_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_groups_name")),
    )
    op.create_index(op.f("ix_groups_parent_id"), "groups", ["parent_id"])
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_group_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "client_permissions",
        sa.Column("client_pk", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("in_token", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["clients.id"],
            name=op.f("fk_client_permissions_client_pk_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_pk", "name", name=op.f("pk_client_permissions")),
    )
    op.create_table(
        "role_assignments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("client_pk", sa.Uuid(), nullable=True),
        sa.Column("scope_client_pk", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(CASE WHEN user_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN group_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN client_pk IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_role_assignments_one_principal"),
        ),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["clients.id"],
            name=op.f("fk_role_assignments_client_pk_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_role_assignments_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_role_assignments_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["scope_client_pk"],
            ["clients.id"],
            name=op.f("fk_role_assignments_scope_client_pk_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_role_assignments_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_assignments")),
    )
    for column in ("role_id", "user_id", "group_id", "client_pk", "scope_client_pk"):
        op.create_index(op.f(f"ix_role_assignments_{column}"), "role_assignments", [column])
    op.create_index(
        "uq_role_assignments_global",
        "role_assignments",
        ["role_id", _PRINCIPAL],
        unique=True,
        sqlite_where=sa.text("scope_client_pk IS NULL"),
        postgresql_where=sa.text("scope_client_pk IS NULL"),
    )
    op.create_index(
        "uq_role_assignments_scoped",
        "role_assignments",
        ["role_id", _PRINCIPAL, "scope_client_pk"],
        unique=True,
        sqlite_where=sa.text("scope_client_pk IS NOT NULL"),
        postgresql_where=sa.text("scope_client_pk IS NOT NULL"),
    )

    assignments = _assignments_table()
    user_roles = sa.table(
        "user_roles", sa.column("user_id", sa.Uuid()), sa.column("role_id", sa.Uuid())
    )
    client_roles = sa.table(
        "client_roles", sa.column("client_pk", sa.Uuid()), sa.column("role_id", sa.Uuid())
    )
    moved = [
        {"id": uuid.uuid4(), "role_id": role_id, "user_id": user_id, "client_pk": None}
        for user_id, role_id in bind.execute(sa.select(user_roles.c.user_id, user_roles.c.role_id))
    ] + [
        {"id": uuid.uuid4(), "role_id": role_id, "user_id": None, "client_pk": client_pk}
        for client_pk, role_id in bind.execute(
            sa.select(client_roles.c.client_pk, client_roles.c.role_id)
            .join(roles, roles.c.id == client_roles.c.role_id)
            .where(roles.c.name != "admin")  # see the module's docstring
        )
    ]
    if moved:
        op.bulk_insert(assignments, [{**row, "created_at": now} for row in moved])
    op.drop_table("user_roles")
    op.drop_table("client_roles")


def _assignments_table() -> sa.TableClause:
    return sa.table(
        "role_assignments",
        sa.column("id", sa.Uuid()),
        sa.column("role_id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("group_id", sa.Uuid()),
        sa.column("client_pk", sa.Uuid()),
        sa.column("scope_client_pk", sa.Uuid()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["role_id"], ["roles.id"], name=op.f("fk_user_roles_role_id_roles"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_roles_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "role_id", name=op.f("pk_user_roles")),
    )
    op.create_table(
        "client_roles",
        sa.Column("client_pk", sa.Uuid(), nullable=False),
        sa.Column("role_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_pk"],
            ["clients.id"],
            name=op.f("fk_client_roles_client_pk_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["roles.id"],
            name=op.f("fk_client_roles_role_id_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_pk", "role_id", name=op.f("pk_client_roles")),
    )
    # Global assignments of users and clients go back; group and per-client assignments
    # have no place in the older schema.
    op.execute(
        sa.text(
            "INSERT INTO user_roles (user_id, role_id) SELECT user_id, role_id "
            "FROM role_assignments WHERE user_id IS NOT NULL AND scope_client_pk IS NULL"
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO client_roles (client_pk, role_id) SELECT client_pk, role_id "
            "FROM role_assignments WHERE client_pk IS NOT NULL AND scope_client_pk IS NULL"
        )
    )
    op.drop_table("role_assignments")
    op.drop_table("client_permissions")
    op.drop_index("ix_group_members_user_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_index(op.f("ix_groups_parent_id"), table_name="groups")
    op.drop_table("groups")
    op.drop_table("role_parents")
    op.drop_table("role_permissions")
    op.drop_column("roles", "builtin")
