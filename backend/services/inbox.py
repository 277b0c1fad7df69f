"""The in-app inbox: items in a per-user sequence and their read state. The live messages that
tell a user's open subscriptions about them are backend.services.live's."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.db.raw import driver_connection
from backend.db.repositories.inbox import InboxRepository, NewInboxItem, append_items
from backend.errors import ValidationError
from backend.services.pagination import Page, check_page_size, decode_cursor, encode_cursor

MAX_IDS = 500


@dataclass(frozen=True, slots=True)
class InboxEntry(NewInboxItem):
    """An item as stored: numbered in its user's inbox, read or not, archived or not. A new
    item is neither; one replayed to a reconnecting client carries its state as stored, so an
    item archived while the client was away is not shown to it as new."""

    seq: int
    read_at: datetime | None
    archived_at: datetime | None = None

    @property
    def cursor(self) -> str:
        return inbox_cursor(self.seq)

    @classmethod
    def appended(cls, item: NewInboxItem, seq: int) -> InboxEntry:
        """An item just inserted with the number ``seq``: as given, neither read nor archived."""
        return cls(**{name: getattr(item, name) for name in _ITEM_FIELDS}, seq=seq, read_at=None)

    @classmethod
    def from_row(cls, row: Any) -> InboxEntry:
        """From an ORM item, or a driver record (its columns by name)."""
        column = row.__getitem__ if hasattr(row, "keys") else functools.partial(getattr, row)
        values = {name: column(name) for name in _ENTRY_COLUMNS}
        values["data"] = values["data"] or {}
        values["actions"] = values["actions"] or []
        return cls(**values)


_ENTRY_COLUMNS = tuple(f.name for f in fields(InboxEntry))
_ITEM_FIELDS = tuple(f.name for f in fields(NewInboxItem))


def inbox_cursor(seq: int) -> str:
    return encode_cursor("inbox", str(seq))


def decode_inbox_cursor(cursor: str | None, *, field: str = "after") -> int | None:
    raw = decode_cursor("inbox", cursor)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValidationError("The cursor is not valid", field=field)
    return int(raw)


async def store_items(engine: AsyncEngine, items: Sequence[NewInboxItem]) -> list[InboxEntry]:
    """Add items to their users' inboxes, in one statement of its own (publish after)."""
    async with driver_connection(engine) as conn:
        appended = await append_items(conn, items)
    existing = {r["delivery_id"]: InboxEntry.from_row(r) for r in appended.existing}
    entries: list[InboxEntry] = []
    for item in appended.items:
        seq = appended.numbers.get(item.delivery_id)
        if seq is not None:
            entries.append(InboxEntry.appended(item, seq))
        elif item.delivery_id in existing:
            entries.append(existing[item.delivery_id])
    return entries


async def list_inbox(
    session: AsyncSession,
    *,
    user_id: str,
    first: int,
    after: str | None,
    unread_only: bool,
    archived: bool = False,
    tenant_id: str | None = None,
) -> Page[InboxEntry]:
    """The user's inbox, newest first: unarchived items, or with ``archived`` archived ones.
    ``tenant_id``: that tenant's items only (a caller bound to a tenant)."""
    limit = check_page_size(first)
    before = decode_inbox_cursor(after)
    rows = await InboxRepository(session).page(
        user_id,
        before_seq=before,
        limit=limit + 1,
        unread_only=unread_only,
        archived=archived,
        tenant_id=tenant_id,
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
    tenant_id: str | None = None,
) -> list[InboxEntry]:
    """Items after ``after_seq``, oldest first: what a reconnecting client missed."""
    rows = await InboxRepository(session).after(
        user_id, after_seq=after_seq, limit=limit, until_seq=until_seq, tenant_id=tenant_id
    )
    return [InboxEntry.from_row(r) for r in rows]


async def last_seqs(session: AsyncSession, *, user_ids: Sequence[str]) -> dict[str, int]:
    """Each user's newest sequence number (0 for a user without items)."""
    return await InboxRepository(session).last_seqs(user_ids)


async def inbox_position(session: AsyncSession, *, user_id: str) -> str:
    """The cursor of the user's newest item, archived ones included (of position 0 when the
    inbox is empty): a subscription from it gets every item stored after this read."""
    seqs = await InboxRepository(session).last_seqs([user_id])
    return inbox_cursor(seqs[user_id])


async def unread_count(session: AsyncSession, *, user_id: str, tenant_id: str | None = None) -> int:
    return await InboxRepository(session).unread_count(user_id, tenant_id)


def _ids(ids: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(ids))
    if not unique or len(unique) > MAX_IDS:
        raise ValidationError(f"Give 1 to {MAX_IDS} ids", field="ids")
    return unique


async def mark_read(
    session: AsyncSession,
    *,
    user_id: str,
    ids: Sequence[str] | None,
    tenant_id: str | None = None,
) -> list[str]:
    """Mark items read (all when ``ids`` is None). Returns the ids that changed."""
    return await InboxRepository(session).mark_read(
        user_id, None if ids is None else _ids(ids), datetime.now(UTC), tenant_id
    )


async def archive(
    session: AsyncSession, *, user_id: str, ids: Sequence[str], tenant_id: str | None = None
) -> list[str]:
    """Archive items. Returns the ids that changed."""
    return await InboxRepository(session).archive(user_id, _ids(ids), datetime.now(UTC), tenant_id)
