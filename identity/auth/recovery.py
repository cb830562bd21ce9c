"""Recovery codes: ten single-use codes, shown once, for when the authenticator app is lost.

Only a keyed hash of each is stored (HMAC-SHA256 under a key derived from the server
secret): the codes have 50 bits of entropy, too few for a plain hash to resist someone who
got a copy of the database alone. Generating a new set voids the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from identity.database import rowcount
from identity.models.base import utcnow
from identity.models.mfa import RecoveryCode
from identity.models.user import User

COUNT = 10
# Lower-case letters and digits without the ones people confuse (0/o, 1/l/i).
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
GROUP = 5  # two groups of five: "abcde-23456", about 50 bits


def normalise(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


class RecoveryCodes:
    def __init__(self, secret_key: str) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"identity recovery codes v1"
        ).derive(secret_key.encode())

    def _hash(self, code: str) -> str:
        return hmac.new(self._key, normalise(code).encode(), hashlib.sha256).hexdigest()

    def generate(self, session: Session, user: User) -> list[str]:
        """A new set, replacing any earlier one; the codes are shown once and not kept."""
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        codes = []
        for _ in range(COUNT):
            raw = "".join(secrets.choice(ALPHABET) for _ in range(2 * GROUP))
            code = f"{raw[:GROUP]}-{raw[GROUP:]}"
            codes.append(code)
            session.add(RecoveryCode(user_id=user.id, code_hash=self._hash(code)))
        session.flush()
        return codes

    def remaining(self, session: Session, user: User) -> int:
        return session.execute(
            select(func.count()).where(
                RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
            )
        ).scalar_one()

    def use(self, session: Session, user: User, code: str) -> bool:
        """Spend ``code`` if it is one of the user's unused codes. The conditional UPDATE
        makes a code good once even when two requests race with it."""
        if len(normalise(code)) != 2 * GROUP:
            return False
        spent = session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == self._hash(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        return rowcount(spent) == 1

    def remove(self, session: Session, user: User) -> None:
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
