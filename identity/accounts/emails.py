"""The canonical form of an email address, apart from the account services so that the
`identity users ...` commands that only look an account up do not load them."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from identity.exceptions import InvalidInput

# The longest address SMTP carries: 64 characters, the @ and a 255-character domain.
MAX_EMAIL_LENGTH = 320


class InvalidEmail(InvalidInput):
    message = "Enter a valid email address."


def normalize_email(raw: str) -> str:
    """One canonical form per mailbox (INPUT-11): IDNA domain, NFC, lower case."""
    # NFKC first: fullwidth and other compatibility forms of "alice@example.org" (U+FF41...)
    # would otherwise register a second, confusable account next to it.
    raw = unicodedata.normalize("NFKC", raw or "").strip()
    if not raw or len(raw) > MAX_EMAIL_LENGTH:
        raise InvalidEmail()
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidEmail() from None
    return unicodedata.normalize("NFC", result.normalized).lower()
