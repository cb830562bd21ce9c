"""Signing keys: their states, rotation and retirement; never key material.

The rules live in identity.oauth.keys, which `identity keys` uses too: a new key is
published ahead of signing, a retired key stays published until its tokens expire (unless
retired immediately, for a compromised key), and the only key of an algorithm that signs
cannot be retired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from identity.api import bp
from identity.api.auth import Caller
from identity.api.common import Input, Output
from identity.api.operations import operation
from identity.extensions import db
from identity.models.base import utcnow
from identity.oauth import keys as key_service
from identity.rbac.permissions import Permission
from identity.runtime import runtime

KeyStatus = Literal["next", "active", "retired", "unpublished"]


class KeyOut(Output):
    kid: str
    alg: str
    status: KeyStatus = Field(
        description="next: published, signs from active_from; active: signs (the newest "
        "active key of an algorithm); retired: signs no more, still verifies; unpublished: "
        "gone from the JWKS."
    )
    created_at: datetime
    active_from: datetime
    retired_at: datetime | None = None
    unpublish_at: datetime | None = Field(None, description="Leaves the JWKS at this moment.")


class KeyList(Output):
    items: list[KeyOut]


class KeyRotate(Input):
    alg: Literal["ES256", "RS256", "EdDSA"] | None = Field(
        None, description="Rotate only this algorithm's key; default: every algorithm in use."
    )


class KeyRotated(Output):
    items: list[KeyOut] = Field(description="The new keys, one per algorithm rotated.")


class KeyRetire(Input):
    immediately: bool = Field(
        False,
        description="Also remove it from the JWKS at once (a compromised key): the tokens "
        "it signed stop verifying.",
    )


def max_token_lifetime() -> int:
    """How long a retired key stays published, from the settings."""
    settings = runtime().settings
    return key_service.longest_token_lifetime(
        settings.access_token_lifetime, settings.id_token_lifetime
    )


@operation(
    bp,
    "GET",
    "/keys",
    summary="List signing keys",
    tag="Keys",
    permission=Permission.KEYS_READ,
    response=KeyList,
)
def list_keys(caller: Caller) -> KeyList:
    """Oldest first, with each key's state now."""
    now = utcnow()
    rows = key_service.list_keys(db.session())
    return KeyList(items=[KeyOut.model_validate(key_service.summary(k, now)) for k in rows])


@operation(
    bp,
    "POST",
    "/keys/rotate",
    summary="Rotate signing keys",
    tag="Keys",
    permission=Permission.KEYS_WRITE,
    body=KeyRotate,
    response=KeyRotated,
    status=201,
)
def rotate_keys(caller: Caller, body: KeyRotate) -> KeyRotated:
    """Publish a new key now; it signs after IDENTITY_KEY_ROTATION_PUBLISH_AHEAD seconds,
    and the key it replaces stays published until the tokens it signed have expired."""
    rt = runtime()
    session = db.session()
    created = key_service.rotate_keys(
        session,
        rt.keys.cipher,
        alg=body.alg,
        default_alg=rt.settings.signing_alg,
        publish_ahead=rt.settings.key_rotation_publish_ahead,
        max_token_lifetime=max_token_lifetime(),
        actor_id=caller.user_id,
    )
    now = utcnow()
    return KeyRotated(items=[KeyOut.model_validate(key_service.summary(k, now)) for k in created])


@operation(
    bp,
    "POST",
    "/keys/<kid>/retire",
    summary="Retire a signing key",
    tag="Keys",
    permission=Permission.KEYS_WRITE,
    body=KeyRetire,
    response=KeyOut,
    errors=(409,),
)
def retire_key(caller: Caller, kid: str, body: KeyRetire) -> KeyOut:
    """Stop signing with a key. Refused (409) for the only key of its algorithm that signs:
    rotate first."""
    row = key_service.retire(
        db.session(),
        kid,
        max_token_lifetime(),
        body.immediately,
        actor_id=caller.user_id,
    )
    return KeyOut.model_validate(key_service.summary(row, utcnow()))
