"""Queries on event types and their rules."""

from __future__ import annotations

from sqlalchemy import select

from backend.db.models import (
    EventType,
)
from backend.db.repositories.base import Repository


class EventTypeRepository(Repository):
    async def get(self, name: str) -> EventType | None:
        return await self.session.get(EventType, name)

    async def all(self) -> list[EventType]:
        stmt = select(EventType).order_by(EventType.name)
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, event_type: EventType) -> None:
        self.session.add(event_type)
        await self.session.flush()
