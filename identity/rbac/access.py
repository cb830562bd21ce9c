"""Who each route serves, declared where the route is: a test fails for a route that has
no declaration (tests/api/test_route_permissions.py).

Admin API operations declare the RBAC permission they need (identity.api.operations).
Every other blueprint declares its audience here, with the reason:

- ``public``: reveals no personal data (discovery, keys, health).
- ``self``: the signed-in user's own data only (account pages, connected apps); no id in a
  URL reaches another user's data.
- ``protocol``: OAuth and OpenID Connect endpoints; each authenticates the client or the
  token and reveals only what that client or token may see.
- ``operator``: the people who run the server (``/metrics``): loopback clients or a caller
  with the operator's token from the settings; anyone else gets 404.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint

Audience = Literal["public", "self", "protocol", "console", "operator"]
AUDIENCES: dict[str, tuple[Audience, str]] = {}


def serves(bp: Blueprint, audience: Audience, why: str) -> Blueprint:
    AUDIENCES[bp.name] = (audience, why)
    return bp
