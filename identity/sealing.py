"""Encryption at rest of what the database must hold but nobody may read from it.

AES-256-GCM under a key derived (HKDF-SHA256) from the server secret, one key per purpose,
so a value sealed for one purpose never opens as another. Used for the private parts of
signing keys and for queued mail (which carries verification and reset links).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "v1."


class SealError(Exception):
    """The value was sealed under another secret key, or was altered."""


class Sealer:
    def __init__(self, secret_key: str, info: bytes, aad: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)
        self._aad = aad

    def seal(self, plain: bytes, context: bytes = b"") -> str:
        """``context`` (say, the row's id) must be given again to open: a sealed value
        moved to another row does not open there."""
        nonce = os.urandom(12)
        return PREFIX + base64.urlsafe_b64encode(
            nonce + self._aead.encrypt(nonce, plain, self._aad + context)
        ).decode("ascii")

    def open(self, sealed: str, context: bytes = b"") -> bytes:
        if not sealed.startswith(PREFIX):
            raise SealError("unknown encryption format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], self._aad + context)
        except (InvalidTag, ValueError):
            raise SealError("cannot be decrypted with this secret key") from None
