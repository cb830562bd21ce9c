"""Password hashing (argon2id) and the NIST SP 800-63B password policy. Pure functions."""

from __future__ import annotations

import gzip
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# A password is too close to a word from the user's context (the email, the name) when it
# holds a word of at least CONTEXT_WORD_LENGTH characters and fewer than CONTEXT_EXTRA others.
CONTEXT_WORD_LENGTH = 4
CONTEXT_EXTRA = 4
MIN_DISTINCT_CHARACTERS = 3


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 8
    max_length: int = 256

    def problems(self, password: str, context: tuple[str, ...] = ()) -> list[str]:
        """What is wrong with a new password; empty when it is acceptable.

        No composition rules (ASVS 6.2.5): only length, the shipped list of common and
        breached passwords, and words from the user's own context such as the email.
        """
        length = len(unicodedata.normalize("NFC", password))
        if length < self.min_length:
            return [f"Use at least {self.min_length} characters."]
        if length > self.max_length:
            return [f"Use at most {self.max_length} characters."]
        lowered = password.strip().lower()
        if lowered in common_passwords():
            return ["This password is too common or has appeared in a data breach."]
        for given in context:
            word = given.strip().lower()
            if (
                len(word) >= CONTEXT_WORD_LENGTH
                and word in lowered
                and len(lowered) - len(word) < CONTEXT_EXTRA
            ):
                return ["The password is too similar to your email address or name."]
        if len(set(lowered)) < MIN_DISTINCT_CHARACTERS:
            return ["Use more than two different characters."]
        return []


@cache
def common_passwords() -> frozenset[str]:
    """20k+ common and breached passwords (Django's and zxcvbn's lists), loaded once."""
    data = resources.files("identity.data").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


@cache
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    """One dummy hash per parameter set and process: building an app (tests build hundreds)
    need not pay a full argon2 hash each time."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher.hash("identity-dummy-password")


class Hasher:
    """argon2id with the configured parameters; argon2-cffi does the cryptography."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism
        )
        # Verifying against this when the account does not exist costs the same time as a
        # real verification, so timing does not reveal which emails have accounts (AUTH-12).
        self._dummy = _dummy_hash(time_cost, memory_cost, parallelism)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def burn(self, password: str) -> None:
        self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
