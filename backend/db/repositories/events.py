"""Queries on scheduled events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import ScheduledEvent


class ScheduledEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, event: ScheduledEvent) -> None:
        self.session.add(event)
        await self.session.flush()

    async def add_many(self, events: Sequence[ScheduledEvent]) -> None:
        """Store events; ones whose id is already stored are left as they are."""
        if not events:
            return
        stmt = (
            insert(ScheduledEvent)
            .values([{"id": e.id, "due_at": e.due_at, "envelope": e.envelope} for e in events])
            .on_conflict_do_nothing(index_elements=[ScheduledEvent.id])
        )
        await self.session.execute(stmt)

    async def take_due(self, now: datetime, limit: int) -> list[ScheduledEvent]:
        """Lock due events; concurrent releasers skip each other's rows."""
        stmt = (
            select(ScheduledEvent)
            .where(ScheduledEvent.due_at <= now)
            .order_by(ScheduledEvent.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, events: Sequence[ScheduledEvent]) -> None:
        ids = [e.id for e in events]
        if ids:
            await self.session.execute(delete(ScheduledEvent).where(ScheduledEvent.id.in_(ids)))
