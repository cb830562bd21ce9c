"""/admin/keys: the signing keys and their states; rotating them (a fresh proof asked) and
retiring one (a fresh proof and its key id typed), through the same calls as the admin
API's /api/v1/keys, with the same refusals (the only key of an algorithm that signs cannot
be retired)."""

from __future__ import annotations

from datetime import datetime

from flask import flash, request
from flask.typing import ResponseReturnValue

from identity.admin.console import back, check_sensitive, operator, page, render
from identity.api.keys import KeyOut, max_token_lifetime
from identity.exceptions import Conflict, NotFound
from identity.extensions import db
from identity.models.base import utcnow
from identity.oauth import keys as key_service
from identity.rbac.permissions import Permission
from identity.runtime import runtime


def _age(created_at: datetime, now: datetime) -> str:
    seconds = max(int((now - created_at).total_seconds()), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return "under a minute"


def _show(status: int = 200, errors: dict[str, str] | None = None) -> ResponseReturnValue:
    now = utcnow()
    keys = [
        (KeyOut.model_validate(key_service.summary(row, now)), _age(row.created_at, now))
        for row in key_service.list_keys(db.session())
    ]
    return render(
        "keys/list.html",
        status,
        keys=keys,
        errors=errors or {},
        publish_ahead=runtime().settings.key_rotation_publish_ahead,
        lifetime=max_token_lifetime(),
    )


@page("/keys", Permission.KEYS_READ)
def keys() -> ResponseReturnValue:
    return _show()


@page("/keys/rotate", Permission.KEYS_WRITE, methods=("POST",), endpoint="keys_rotate")
def rotate() -> ResponseReturnValue:
    problem = check_sensitive(request.form.get("reauth"), None, None)
    if problem:
        return _show(400, {"rotate": problem})
    rt = runtime()
    created = key_service.rotate_keys(
        db.session(),
        rt.keys.cipher,
        alg=None,
        default_alg=rt.settings.signing_alg,
        publish_ahead=rt.settings.key_rotation_publish_ahead,
        max_token_lifetime=max_token_lifetime(),
        actor_id=operator().caller.user_id,
    )
    names = ", ".join(f"{k.kid} ({k.alg})" for k in created)
    flash(f"New signing key published: {names}.", "success")
    return back("admin.keys")


@page("/keys/<kid>/retire", Permission.KEYS_WRITE, methods=("POST",), endpoint="keys_retire")
def retire(kid: str) -> ResponseReturnValue:
    problem = check_sensitive(request.form.get("reauth"), request.form.get("confirm"), kid)
    if problem:
        return _show(400, {kid: problem})
    immediately = request.form.get("immediately") == "yes"
    try:
        key_service.retire(
            db.session(),
            kid,
            max_token_lifetime(),
            immediately,
            actor_id=operator().caller.user_id,
        )
    except (Conflict, NotFound) as error:
        flash(f"The key was not retired: {error.message}", "error")
        return back("admin.keys")
    gone = "removed from the JWKS now" if immediately else "published until its tokens expire"
    flash(f"Key {kid} retired: it signs no more and stays {gone}.", "success")
    return back("admin.keys")
