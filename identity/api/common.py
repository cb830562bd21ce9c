"""Schemas and helpers every resource shares: strict input models, pages, cursors."""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from identity.exceptions import InvalidInput, NotFound

T = TypeVar("T")
_ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _iso_8601(value: Any) -> Any:
    # pydantic would also read "0.5" as a Unix time; the document promises RFC 3339.
    if isinstance(value, str) and not _ISO_8601.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-11-30T10:00:00Z")
    return value


# A moment in a query or body: RFC 3339 with its offset (Z or +01:00), nothing looser.
Moment = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]
MAX_PAGE = 200


class Input(BaseModel):
    """A request model: unknown fields are refused (no mass assignment, AUTHZ-04)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageQuery(Input):
    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Items per page (1 to 200).")
    cursor: str | None = Field(
        None, max_length=500, description="The next_cursor of the previous page."
    )


class Page(Output, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as cursor for the next page; absent on the last page."
    )


def encode_cursor(*key: Any) -> str:
    raw = json.dumps([str(k) for k in key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, parts: int) -> list[str] | None:
    """The key a cursor carries, or None for the first page; a bad one is a 400.

    The request's NUL guard sees only the base64: a NUL character escaped in the JSON
    (``"\\u0000"``) is refused here, before PostgreSQL refuses it in a text parameter."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("The cursor is not valid: pass next_cursor as it came.") from None
    if (
        not isinstance(key, list)
        or len(key) != parts
        or not all(isinstance(k, str) and "\x00" not in k for k in key)
    ):
        raise InvalidInput("The cursor is not valid: pass next_cursor as it came.")
    return key


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"no {what} with id {value!r}") from None
