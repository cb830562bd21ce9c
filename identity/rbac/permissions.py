"""Permission names: identity's own, declared once here, and the rules every name follows.

A permission is ``resource:action`` (``users:read``, ``invoices:approve``). A role may
also hold ``resource:*`` (every action on one resource) or ``*`` (everything). Applications
declare their own permissions per client (``identity.models.rbac.ClientPermission``);
they follow the same rules.
"""

from __future__ import annotations

import re
from enum import StrEnum

from identity.exceptions import InvalidInput

WILDCARD = "*"
MAX_LENGTH = 128
_PART = r"[a-z][a-z0-9_.-]{0,62}"
_NAME = re.compile(rf"^{_PART}:{_PART}$")
_GRANTABLE = re.compile(rf"^(\*|{_PART}:(\*|{_PART}))$")


class Permission(StrEnum):
    """What identity's own API and pages check (docs/rbac.md lists them)."""

    USERS_READ = "users:read"
    USERS_WRITE = "users:write"  # create, update, disable, enable, delete, end sessions
    GROUPS_READ = "groups:read"
    GROUPS_WRITE = "groups:write"  # groups and their members
    ROLES_READ = "roles:read"
    ROLES_WRITE = "roles:write"  # define roles, their permissions and parents
    ROLES_ASSIGN = "roles:assign"  # give and take roles (only what one holds oneself)
    PERMISSIONS_READ = "permissions:read"
    CLIENTS_READ = "clients:read"
    CLIENTS_WRITE = "clients:write"  # and the permissions an application declares
    SESSIONS_READ = "sessions:read"
    SESSIONS_REVOKE = "sessions:revoke"
    AUDIT_READ = "audit:read"
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"
    AUTHZ_CHECK = "authz:check"


# The resources identity's own permissions name: an application cannot declare a
# permission on them, so that its roles never reach into identity by a shared name.
IDENTITY_RESOURCES = frozenset(p.split(":", 1)[0] for p in Permission)

DESCRIPTIONS: dict[Permission, str] = {
    Permission.USERS_READ: "See users and search them.",
    Permission.USERS_WRITE: "Create, change, disable, enable and delete users.",
    Permission.GROUPS_READ: "See groups and their members.",
    Permission.GROUPS_WRITE: "Create, change and delete groups; add and remove members.",
    Permission.ROLES_READ: "See roles, their permissions and who holds them.",
    Permission.ROLES_WRITE: "Create, change and delete roles.",
    Permission.ROLES_ASSIGN: "Give roles to and take them from users, groups and clients.",
    Permission.PERMISSIONS_READ: "See the permissions identity and applications declare.",
    Permission.CLIENTS_READ: "See clients (applications).",
    Permission.CLIENTS_WRITE: "Register, change and delete clients; rotate their secrets.",
    Permission.SESSIONS_READ: "See users' login sessions.",
    Permission.SESSIONS_REVOKE: "End users' login sessions.",
    Permission.AUDIT_READ: "Read the audit trail.",
    Permission.KEYS_READ: "See signing keys.",
    Permission.KEYS_WRITE: "Rotate and retire signing keys.",
    Permission.AUTHZ_CHECK: "Ask the decision API whether someone holds a permission.",
}

READ_ONLY = frozenset(p for p in Permission if p.endswith(":read")) | {
    Permission.AUTHZ_CHECK,
}

# Built-in roles: their permissions live here, not in the database, so an upgrade of
# identity brings new permissions with it. Migration 0005 and `identity init` create them.
BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "admin": ("Full administrative access.", frozenset({WILDCARD})),
    "user-manager": (
        "Manages users, groups and sessions; grants only roles it holds.",
        frozenset(
            {
                "users:*",
                "groups:*",
                "sessions:*",
                Permission.ROLES_READ,
                Permission.ROLES_ASSIGN,
                Permission.PERMISSIONS_READ,
                Permission.CLIENTS_READ,
                Permission.AUTHZ_CHECK,
            }
        ),
    ),
    "auditor": (
        "Reads everything, including the audit trail; changes nothing.",
        READ_ONLY,
    ),
}
ADMIN_ROLE = "admin"


def check_name(name: str) -> str:
    """A permission an application declares or a check asks about: ``resource:action``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"not a permission name: {name!r} (expected resource:action, lower case,"
            " e.g. invoices:approve)"
        )
    return name


def check_grantable(name: str) -> str:
    """What a role may hold: a permission name, ``resource:*`` or ``*``."""
    if not isinstance(name, str) or not _GRANTABLE.match(name):
        raise InvalidInput(
            f"not a permission a role can hold: {name!r} (expected resource:action,"
            " resource:* or *)"
        )
    return name


def covering(permission: str) -> tuple[str, ...]:
    """The grants that cover ``permission``, most specific first. ``users:*`` is covered by
    itself and ``*``; ``*`` only by itself."""
    if permission == WILDCARD:
        return (WILDCARD,)
    resource = permission.split(":", 1)[0]
    wildcard = f"{resource}:*"
    if permission == wildcard:
        return (wildcard, WILDCARD)
    return (permission, wildcard, WILDCARD)
