"""Signed, expiring, single-use links (email verification, password reset, email change).

A link carries the user id and a fingerprint of the state it is meant to change; once that
state changes (the email is verified, the password is replaced, a newer reset link is issued)
the fingerprint no longer matches and the link is dead. A link may also carry one value the
change needs (the new address of an email change): signed, not encrypted, so only a value
the link's recipient may read. Links are built from the configured issuer, never from the
Host header (AUTH-17).
"""

from __future__ import annotations

import hashlib
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from identity.errors import InvalidInput

MAX_TOKEN_LENGTH = 1000  # far longer than any link this server signs


class LinkError(InvalidInput):
    message = "This link is invalid or has expired. Please request a new one."


class LinkSigner:
    def __init__(self, secret_key: str) -> None:
        self._secret_key = secret_key

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret_key, salt=f"identity.link.{purpose}")

    def sign(
        self, purpose: str, user_id: str, state: tuple[Any, ...], value: str | None = None
    ) -> str:
        payload = {"uid": user_id, "fp": fingerprint(state)}
        if value is not None:
            payload["v"] = value
        return self._serializer(purpose).dumps(payload)

    def load(self, purpose: str, token: str, max_age: int) -> tuple[str, str]:
        """The (user id, fingerprint) a link carries; LinkError when forged or expired."""
        user_id, fp, _ = self.load_with_value(purpose, token, max_age)
        return user_id, fp

    def load_with_value(
        self, purpose: str, token: str, max_age: int
    ) -> tuple[str, str, str | None]:
        """The (user id, fingerprint, value) a link carries; LinkError when forged or
        expired."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise LinkError()
        try:
            payload = self._serializer(purpose).loads(token, max_age=max_age)
        except (SignatureExpired, BadSignature):
            raise LinkError() from None
        if not isinstance(payload, dict) or not {"uid", "fp"} <= payload.keys():
            raise LinkError()
        value = payload.get("v")
        return str(payload["uid"]), str(payload["fp"]), None if value is None else str(value)


def fingerprint(state: tuple[Any, ...]) -> str:
    return hashlib.sha256(repr(state).encode()).hexdigest()[:32]
