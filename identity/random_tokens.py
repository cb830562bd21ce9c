"""Random secrets and their stored form."""

from __future__ import annotations

import hashlib
import secrets


def new_token(nbytes: int = 32) -> str:
    """A URL-safe token from the CSPRNG (256 bits by default, CRYPTO-01)."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """SHA-256 hex: high-entropy tokens need no slow hash, only one that is not reversible."""
    return hashlib.sha256(token.encode()).hexdigest()
