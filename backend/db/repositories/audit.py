"""Queries on the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import AuditEntry


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, entry: AuditEntry) -> None:
        self.session.add(entry)
        await self.session.flush()

    async def page(
        self,
        *,
        actor: str | None,
        operation: str | None,
        since: datetime | None,
        until: datetime | None,
        before_id: int | None,
        limit: int,
    ) -> list[AuditEntry]:
        """Newest first (by id, which follows commit order closely enough for paging)."""
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if actor is not None:
            stmt = stmt.where(AuditEntry.actor == actor)
        if operation is not None:
            stmt = stmt.where(AuditEntry.operation == operation)
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
        if until is not None:
            stmt = stmt.where(AuditEntry.at < until)
        if before_id is not None:
            stmt = stmt.where(AuditEntry.id < before_id)
        return list((await self.session.execute(stmt)).scalars())
