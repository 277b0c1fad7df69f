"""The in-app inbox: items in a per-user sequence, read state, and the live messages that
tell a user's open subscriptions about new items and read-state changes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.channels.in_app import user_channel
from backend.db.raw import driver_connection
from backend.db.repositories.inbox import InboxRepository, NewInboxItem, append_items
from backend.errors import ValidationError
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor

log = logging.getLogger(__name__)
# The managers' live delivery feed (read by backend.realtime in the API).
DELIVERY_UPDATES_CHANNEL = "herald:deliveries"
MAX_IDS = 500


@dataclass(frozen=True, slots=True)
class InboxEntry:
    delivery_id: str
    user_id: str
    seq: int
    event_id: str
    event_type: str
    title: str | None
    body: str | None
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None

    @property
    def cursor(self) -> str:
        return inbox_cursor(self.seq)

    @classmethod
    def from_row(cls, row: Any) -> InboxEntry:
        """From an ORM item, or a driver record (its columns by name)."""
        column = row.__getitem__ if hasattr(row, "keys") else functools.partial(getattr, row)
        values = {name: column(name) for name in _ENTRY_COLUMNS}
        values["data"] = values["data"] or {}
        return cls(**values)

    def to_message(self) -> dict[str, Any]:
        return {
            "type": "notification",
            "delivery_id": self.delivery_id,
            "seq": self.seq,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "title": self.title,
            "body": self.body,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "read_at": self.read_at.isoformat() if self.read_at else None,
        }

    @classmethod
    def from_message(cls, user_id: str, message: dict[str, Any]) -> InboxEntry:
        return cls(
            delivery_id=message["delivery_id"],
            user_id=user_id,
            seq=int(message["seq"]),
            event_id=message["event_id"],
            event_type=message["event_type"],
            title=message.get("title"),
            body=message.get("body"),
            data=message.get("data") or {},
            created_at=datetime.fromisoformat(message["created_at"]),
            read_at=datetime.fromisoformat(message["read_at"]) if message.get("read_at") else None,
        )


_ENTRY_COLUMNS = tuple(f.name for f in fields(InboxEntry))


def inbox_cursor(seq: int) -> str:
    return encode_cursor("inbox", str(seq))


def decode_inbox_cursor(cursor: str | None, *, field: str = "after") -> int | None:
    raw = decode_cursor("inbox", cursor)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValidationError("The cursor is not valid", field=field)
    return int(raw)


class RedisLivePublisher:
    """PUBLISHes on the user's channel; a lost publish is recovered by the subscription's
    replay from the inbox, so failures are logged, not raised."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def publish_delivery_updates(self, updates: Sequence[dict[str, Any]]) -> None:
        """One message for the managers' live feed, with every status change of a batch."""
        if not updates:
            return
        try:
            await self.redis.publish(
                DELIVERY_UPDATES_CHANNEL, orjson.dumps({"type": "deliveries", "items": updates})
            )
        except (RedisError, OSError) as exc:
            log.warning("live delivery feed publish failed: %s", exc)

    async def publish_many(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not messages:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id, message in messages:
                    pipe.publish(user_channel(user_id), orjson.dumps(message))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("live publish failed (%s); subscribers will resync", exc)


async def store_items(engine: AsyncEngine, items: Sequence[NewInboxItem]) -> list[InboxEntry]:
    """Add items to their users' inboxes, in one statement of its own (publish after)."""
    async with driver_connection(engine) as conn:
        rows = await append_items(conn, items)
    return [InboxEntry.from_row(r) for r in rows]


async def list_inbox(
    session: AsyncSession, *, user_id: str, first: int, after: str | None, unread_only: bool
) -> Page[InboxEntry]:
    """The user's inbox, newest first."""
    limit = check_page_size(first)
    before = decode_inbox_cursor(after)
    rows = await InboxRepository(session).page(
        user_id, before_seq=before, limit=limit + 1, unread_only=unread_only
    )
    entries = [InboxEntry.from_row(r) for r in rows[:limit]]
    return Page(items=[(e.cursor, e) for e in entries], has_next_page=len(rows) > limit)


async def missed_items(
    session: AsyncSession,
    *,
    user_id: str,
    after_seq: int,
    limit: int = 500,
    until_seq: int | None = None,
) -> list[InboxEntry]:
    """Items after ``after_seq``, oldest first: what a reconnecting client missed."""
    rows = await InboxRepository(session).after(
        user_id, after_seq=after_seq, limit=limit, until_seq=until_seq
    )
    return [InboxEntry.from_row(r) for r in rows]


async def unread_count(session: AsyncSession, *, user_id: str) -> int:
    return await InboxRepository(session).unread_count(user_id)


def _ids(ids: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(ids))
    if not unique or len(unique) > MAX_IDS:
        raise ValidationError(f"Give 1 to {MAX_IDS} ids", field="ids")
    return unique


async def mark_read(
    session: AsyncSession, *, user_id: str, ids: Sequence[str] | None
) -> tuple[list[str], dict[str, Any] | None]:
    """Mark items read (all when ``ids`` is None). Returns the changed ids and the live
    message for the user's other devices (publish it after the commit)."""
    changed = await InboxRepository(session).mark_read(
        user_id, None if ids is None else _ids(ids), datetime.now(UTC)
    )
    if not changed:
        return [], None
    return changed, {"type": "read", "ids": changed}


async def archive(
    session: AsyncSession, *, user_id: str, ids: Sequence[str]
) -> tuple[list[str], dict[str, Any] | None]:
    changed = await InboxRepository(session).archive(user_id, _ids(ids), datetime.now(UTC))
    if not changed:
        return [], None
    return changed, {"type": "archived", "ids": changed}
