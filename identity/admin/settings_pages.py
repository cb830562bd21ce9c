"""/admin/settings: the configuration in effect, read-only, each setting with its
description (the same text as docs/configuration.md, from identity.settings) and never a
secret: secret values are masked, and so is the password of any URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask.typing import ResponseReturnValue
from pydantic import SecretStr

from identity.admin.console import CONSOLE, page, render
from identity.runtime import runtime
from identity.settings import ENV_PREFIX, Settings

MASK = "••••••••"
# A string setting whose name has one of these words holds a secret (numbers and switches
# such as access_token_lifetime never do).
SECRET_WORDS = frozenset({"secret", "password", "passwd", "token", "key", "dsn", "credentials"})
# Groups by name prefix, the first that matches; the rest are "General".
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Database", ("database_",)),
    ("Rate limits", ("ratelimit_",)),
    ("Mail", ("mail_", "smtp_")),
    ("Passwords", ("argon2_", "password_")),
    ("Sign-in and sessions", ("session_", "login_", "registration", "invitation_", "reset_")),
    ("Second factors", ("mfa_", "admin_mfa_")),
    (
        "Tokens and grants",
        (
            "access_token_",
            "id_token_",
            "authorization_code_",
            "refresh_token_",
            "require_pkce",
            "device_code_",
            "par_",
            "dcr_",
        ),
    ),
    ("Signing keys", ("signing_alg", "key_rotation_")),
    ("Privacy and retention", ("gdpr_", "retention_")),
)
GENERAL = "General"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Shown:
    name: str
    variable: str
    value: str
    masked: bool
    changed: bool  # differs from the default
    description: list[tuple[str, bool]]


def _secret_name(name: str) -> bool:
    return bool(SECRET_WORDS & set(name.lower().split("_")))


def mask_url(value: str) -> str:
    """A URL with its password (and any secret-named query parameter) masked.

    Read by hand, not with urlsplit: SQLAlchemy takes a password holding ``/``, ``?`` or
    ``#`` unescaped (``postgresql://identity:s3cr/et@db/identity``), where urlsplit would
    end the host at the ``/`` and show the rest as the path. Everything after the
    scheme's ``://`` up to the last ``@`` is the user and password; the password is what
    follows the user's first ``:``. A URL with an ``@`` in its query is masked too much,
    never too little.
    """
    scheme = _SCHEME.match(value)
    if scheme is None:
        return value
    shown, rest = scheme.group(), value[scheme.end() :]
    userinfo, at, after = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        shown += f"{user}:{MASK}@" if colon else f"{userinfo}@"
    end = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    shown += after[:end]  # the host and port
    address, hash_, fragment = after[end:].partition("#")
    path, question, query = address.partition("?")
    if question:
        query = "&".join(
            f"{name}={MASK}" if _secret_name(name) or "pass" in name.lower() else pair
            for pair in query.split("&")
            for name in [pair.partition("=")[0]]
        )
    return f"{shown}{path}{question}{query}{hash_}{fragment}"


def shown_value(name: str, value: Any) -> tuple[str, bool]:
    """How a setting's value is shown, and whether it was masked."""
    if isinstance(value, SecretStr):
        return (MASK, True) if value.get_secret_value() else ("(empty)", False)
    if value is None:
        return "(none)", False
    if isinstance(value, bool):
        return ("true" if value else "false"), False
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        if value and _secret_name(name):
            return MASK, True
        masked = mask_url(value)
        return (masked or "(empty)"), masked != value
    return str(value), False


def _described(text: str | None) -> list[tuple[str, bool]]:
    """The description in parts: (text, whether it is a `code` span), for the template to
    show code as code (and escape everything)."""
    parts = re.split(r"`([^`]+)`", text or "")
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


def _group(name: str) -> str:
    for label, prefixes in GROUPS:
        if name.startswith(prefixes):
            return label
    return GENERAL


def grouped(settings: Settings) -> list[tuple[str, list[Shown]]]:
    """Every setting in effect, in groups (General first), each in the order it is declared."""
    groups: dict[str, list[Shown]] = {GENERAL: []}
    for label, _ in GROUPS:
        groups[label] = []
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        text, masked = shown_value(name, value)
        default = info.default
        current = value.get_secret_value() if isinstance(value, SecretStr) else value
        groups[_group(name)].append(
            Shown(
                name=name,
                variable=f"{ENV_PREFIX}{name.upper()}",
                value=text,
                masked=masked,
                changed=current != default and not (default is None and current in ("", None)),
                description=_described(info.description),
            )
        )
    return [(label, items) for label, items in groups.items() if items]


@page("/settings", CONSOLE)
def settings() -> ResponseReturnValue:
    return render("settings/list.html", groups=grouped(runtime().settings))
