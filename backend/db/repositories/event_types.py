"""Queries on event types and their rules."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import (
    EventType,
)


class EventTypeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str) -> EventType | None:
        return await self.session.get(EventType, name)

    async def all(self) -> list[EventType]:
        stmt = select(EventType).order_by(EventType.name)
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, event_type: EventType) -> None:
        self.session.add(event_type)
        await self.session.flush()
