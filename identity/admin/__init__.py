"""The admin console: server-rendered pages under /admin over the services the admin API
and the `identity` command use (docs/admin-console.md).

Each page module declares its routes with ``identity.admin.console.page``, which checks the
page's RBAC permission. Importing this package registers every page on ``bp``.
"""

from __future__ import annotations

from identity.admin import (  # noqa: F401  (each module registers its pages on bp)
    audit_pages,
    client_pages,
    dashboard,
    explorer_pages,
    group_pages,
    key_pages,
    rbac_pages,
    session_pages,
    settings_pages,
    user_actions,
    user_pages,
)
from identity.admin.console import bp

__all__ = ["bp"]
