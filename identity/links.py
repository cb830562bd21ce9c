"""Signed, expiring, single-use links (email verification, password reset).

A link carries the user id and a fingerprint of the state it is meant to change; once that
state changes (the email is verified, the password is replaced, a newer reset link is issued)
the fingerprint no longer matches and the link is dead. Links are built from the configured
issuer, never from the Host header (AUTH-17).
"""

from __future__ import annotations

import hashlib
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from identity.errors import InvalidInput


class LinkError(InvalidInput):
    message = "This link is invalid or has expired. Please request a new one."


class LinkSigner:
    def __init__(self, secret_key: str) -> None:
        self._secret_key = secret_key

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret_key, salt=f"identity.link.{purpose}")

    def sign(self, purpose: str, user_id: str, state: tuple[Any, ...]) -> str:
        return self._serializer(purpose).dumps({"uid": user_id, "fp": fingerprint(state)})

    def load(self, purpose: str, token: str, max_age: int) -> tuple[str, str]:
        """The (user id, fingerprint) a link carries; LinkError when forged or expired."""
        if len(token) > 1000:
            raise LinkError()
        try:
            payload = self._serializer(purpose).loads(token, max_age=max_age)
        except (SignatureExpired, BadSignature):
            raise LinkError() from None
        if not isinstance(payload, dict) or not {"uid", "fp"} <= payload.keys():
            raise LinkError()
        return str(payload["uid"]), str(payload["fp"])


def fingerprint(state: tuple[Any, ...]) -> str:
    return hashlib.sha256(repr(state).encode()).hexdigest()[:32]
