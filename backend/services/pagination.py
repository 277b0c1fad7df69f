"""Opaque cursors for cursor connections."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from backend.errors import ValidationError

T = TypeVar("T")
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.items[-1][0] if self.items else None


def encode_cursor(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("The cursor is not valid", field="after") from exc
    prefix, sep, value = raw.partition(":")
    if prefix != kind or not sep:
        raise ValidationError("The cursor is not valid", field="after")
    return value


def encode_time_cursor(kind: str, at: datetime, ident: uuid.UUID | str) -> str:
    """A cursor for rows ordered by (a time, an id or another unique key), newest first."""
    return encode_cursor(kind, f"{at.isoformat()}|{ident}")


def decode_time_key_cursor(kind: str, cursor: str | None) -> tuple[datetime, str] | None:
    """The (time, key) a cursor from :func:`encode_time_cursor` stands for, the key as text."""
    raw = decode_cursor(kind, cursor)
    if raw is None:
        return None
    stamp, _, key = raw.partition("|")
    try:
        return datetime.fromisoformat(stamp), key
    except ValueError as exc:
        raise ValidationError("The cursor is not valid", field="after") from exc


def decode_time_cursor(kind: str, cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (time, id) a cursor from :func:`encode_time_cursor` stands for."""
    position = decode_time_key_cursor(kind, cursor)
    if position is None:
        return None
    try:
        return position[0], uuid.UUID(position[1])
    except ValueError as exc:
        raise ValidationError("The cursor is not valid", field="after") from exc


def check_page_size(first: int) -> int:
    if first < 1 or first > MAX_PAGE_SIZE:
        raise ValidationError(f"'first' must be between 1 and {MAX_PAGE_SIZE}", field="first")
    return first
