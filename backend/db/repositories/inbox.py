"""Queries on the in-app inbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import InboxCounter, InboxItem
from backend.db.raw import Statement
from backend.db.repositories.base import Repository


@dataclass(frozen=True, slots=True)
class NewInboxItem:
    delivery_id: str
    user_id: str
    event_id: str
    event_type: str
    title: str | None
    body: str | None
    data: dict[str, Any]
    created_at: datetime
    # The template's rendered in-app actions: [{label, url} | {label, name}], at most two.
    actions: list[dict[str, str]] = field(default_factory=list, kw_only=True)
    # The event's tenant (backend.services.tenants): a caller bound to a tenant sees only its.
    tenant_id: str | None = field(default=None, kw_only=True)


# A batch of items is one statement on the driver connection (the delivery hot path, see
# backend.db.raw), with one array parameter per column: the SQL text is the same for every
# batch size, so it is prepared once per connection. (A multi-row VALUES list is compiled anew
# for every batch: at campaign volumes that compilation was a quarter of a worker's CPU.) The
# counters are taken in user-id order, so two batches for overlapping users lock them in the
# same order and cannot deadlock; each item is numbered within its user's block, all in the
# statement's own transaction. An item that was already there (a retried delivery) keeps its
# first number and leaves an unused one behind: a hole that readers skip, never a reordering.
_APPEND = Statement(
    "WITH n AS ("
    " SELECT * FROM unnest("
    "  CAST(:ids AS text[]), CAST(:users AS text[]), CAST(:events AS text[]),"
    "  CAST(:types AS text[]), CAST(:titles AS text[]), CAST(:bodies AS text[]),"
    "  CAST(:data AS text[]), CAST(:created AS timestamptz[]), CAST(:actions AS text[]),"
    "  CAST(:tenants AS text[])"
    " ) WITH ORDINALITY AS n(i, u, e, t, ti, b, d, c, a, tn, o)"
    "), counts AS ("
    " INSERT INTO inbox_counters (user_id, seq)"
    " SELECT u, count(*) FROM n GROUP BY u ORDER BY u"
    " ON CONFLICT (user_id) DO UPDATE SET seq = inbox_counters.seq + excluded.seq"
    " RETURNING user_id, seq"
    "), numbered AS ("
    " SELECT n.*, counts.seq - count(*) OVER (PARTITION BY n.u)"
    "  + row_number() OVER (PARTITION BY n.u ORDER BY n.o) AS s"
    " FROM n JOIN counts ON counts.user_id = n.u"
    ") "
    "INSERT INTO inbox_items "
    "(delivery_id, user_id, seq, event_id, event_type, title, body, data, created_at, actions,"
    " tenant_id) "
    "SELECT i, u, s, e, t, ti, b, CAST(d AS jsonb), c, CAST(a AS jsonb), tn FROM numbered "
    "ORDER BY o "
    "ON CONFLICT (delivery_id) DO NOTHING "
    # Only the numbers: the rest of an inserted row is the item as given, and decoding two
    # jsonb columns per row that were encoded a moment ago cost a campaign's worker ~3% of
    # its CPU.
    "RETURNING delivery_id, seq"
)
_EXISTING = Statement(
    "SELECT delivery_id, user_id, seq, event_id, event_type, title, body, data, created_at, "
    "actions, read_at, archived_at, tenant_id FROM inbox_items "
    "WHERE delivery_id = ANY(CAST(:ids AS text[]))"
)


@dataclass(frozen=True, slots=True)
class Appended:
    """What ``append_items`` did: the items it was given, one per delivery id (the last given
    of an id, in the place of its first), the numbers of those it inserted, and the rows of
    those that were in the inbox already (a retried delivery), as stored."""

    items: list[NewInboxItem]
    numbers: dict[str, int]  # delivery id -> seq
    existing: list[Any]


async def append_items(conn: asyncpg.Connection, items: Sequence[NewInboxItem]) -> Appended:
    """Insert new items with the next sequence numbers of their users; items already in the
    inbox keep their first number and are read back as they are."""
    unique = list({i.delivery_id: i for i in items}.values())
    if not unique:
        return Appended([], {}, [])
    rows = await _APPEND.fetch(
        conn,
        {
            "ids": [i.delivery_id for i in unique],
            "users": [i.user_id for i in unique],
            "events": [i.event_id for i in unique],
            "types": [i.event_type for i in unique],
            "titles": [i.title for i in unique],
            "bodies": [i.body for i in unique],
            "data": [orjson.dumps(i.data).decode() for i in unique],
            "created": [i.created_at for i in unique],
            "actions": [orjson.dumps(i.actions).decode() for i in unique],
            "tenants": [i.tenant_id for i in unique],
        },
    )
    numbers = {r["delivery_id"]: r["seq"] for r in rows}
    missing = [i.delivery_id for i in unique if i.delivery_id not in numbers]
    existing = await _EXISTING.fetch(conn, {"ids": missing}) if missing else []
    return Appended(unique, numbers, existing)


def _mine(user_id: str, tenant_id: str | None) -> list[ColumnElement[bool]]:
    """A user's items; with ``tenant_id`` (a caller bound to a tenant), that tenant's only."""
    conditions = [InboxItem.user_id == user_id]
    if tenant_id is not None:
        conditions.append(InboxItem.tenant_id == tenant_id)
    return conditions


class InboxRepository(Repository):
    """Every method takes the user and, for a caller bound to a tenant, the tenant: the two
    together keep users (and tenants) apart."""

    async def page(
        self,
        user_id: str,
        *,
        before_seq: int | None,
        limit: int,
        unread_only: bool,
        archived: bool = False,
        tenant_id: str | None = None,
    ) -> list[InboxItem]:
        """Newest first: the unarchived items, or with ``archived`` the archived ones only."""
        shelf = InboxItem.archived_at.is_not(None) if archived else InboxItem.archived_at.is_(None)
        conditions = [*_mine(user_id, tenant_id), shelf]
        if before_seq is not None:
            conditions.append(InboxItem.seq < before_seq)
        if unread_only:
            conditions.append(InboxItem.read_at.is_(None))
        stmt = (
            select(InboxItem).where(and_(*conditions)).order_by(InboxItem.seq.desc()).limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def after(
        self,
        user_id: str,
        *,
        after_seq: int,
        limit: int,
        until_seq: int | None = None,
        tenant_id: str | None = None,
    ) -> list[InboxItem]:
        """Oldest first: what a client that saw ``after_seq`` has missed (archived included, so
        the stream's sequence has no holes from the client's point of view)."""
        conditions = [*_mine(user_id, tenant_id), InboxItem.seq > after_seq]
        if until_seq is not None:
            conditions.append(InboxItem.seq < until_seq)
        stmt = select(InboxItem).where(and_(*conditions)).order_by(InboxItem.seq).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def last_seqs(self, user_ids: Sequence[str]) -> dict[str, int]:
        """Each user's newest sequence number (0 for a user without items), in one query."""
        stmt = select(InboxCounter.user_id, InboxCounter.seq).where(
            InboxCounter.user_id.in_(user_ids)
        )
        found = {user_id: int(seq) for user_id, seq in await self.session.execute(stmt)}
        return {user_id: found.get(user_id, 0) for user_id in user_ids}

    async def unread_count(self, user_id: str, tenant_id: str | None = None) -> int:
        stmt = (
            select(func.count())
            .select_from(InboxItem)
            .where(
                *_mine(user_id, tenant_id),
                InboxItem.read_at.is_(None),
                InboxItem.archived_at.is_(None),
            )
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def mark_read(
        self,
        user_id: str,
        ids: Sequence[str] | None,
        at: datetime,
        tenant_id: str | None = None,
    ) -> list[str]:
        """Mark the user's items read (all unread ones when ``ids`` is None); returns the ids
        that changed. The user id in the condition is what keeps users apart."""
        stmt = (
            update(InboxItem)
            .where(*_mine(user_id, tenant_id), InboxItem.read_at.is_(None))
            .values(read_at=at)
            .returning(InboxItem.delivery_id)
        )
        if ids is not None:
            stmt = stmt.where(InboxItem.delivery_id.in_(ids))
        return list((await self.session.execute(stmt)).scalars())

    async def archive(
        self, user_id: str, ids: Sequence[str], at: datetime, tenant_id: str | None = None
    ) -> list[str]:
        stmt = (
            update(InboxItem)
            .where(
                *_mine(user_id, tenant_id),
                InboxItem.delivery_id.in_(ids),
                InboxItem.archived_at.is_(None),
            )
            .values(archived_at=at)
            .returning(InboxItem.delivery_id)
        )
        return list((await self.session.execute(stmt)).scalars())


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Delete the user's inbox (items and sequence counter); returns how many items went."""
    await session.execute(delete(InboxCounter).where(InboxCounter.user_id == user_id))
    result = await session.execute(delete(InboxItem).where(InboxItem.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_older_than(session: AsyncSession, cutoff: datetime, *, batch_size: int) -> int:
    """Delete at most ``batch_size`` inbox items created before ``cutoff`` (retention), read
    off the ``created_at`` index; returns how many. The caller commits each batch."""
    doomed = (
        select(InboxItem.delivery_id)
        .where(InboxItem.created_at < cutoff)
        .limit(batch_size)
        .scalar_subquery()
    )
    result = await session.execute(delete(InboxItem).where(InboxItem.delivery_id.in_(doomed)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
