"""Queries on the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import AuditEntry
from backend.db.repositories.base import RowRepository


class AuditRepository(RowRepository[AuditEntry]):
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


_SCRUB_USER = text(
    "UPDATE audit_log SET "
    "actor = CASE WHEN actor = :user_id THEN :hashed_id ELSE actor END, "
    "arguments = CAST(replace(CAST(arguments AS text), :needle, :hashed_id) AS jsonb) "
    "WHERE actor = :user_id OR strpos(CAST(arguments AS text), :needle) > 0"
)


async def scrub_user(session: AsyncSession, user_id: str, hashed_id: str, *, needle: str) -> int:
    """Replace a forgotten user's id by ``hashed_id`` in the audit log: as the actor, and
    wherever ``needle`` (the id as JSON text escapes it) appears in the arguments. The log is
    scanned: forgetting is rare, and an admin's arguments may name a user anywhere. Returns
    how many entries changed."""
    result = await session.execute(
        _SCRUB_USER, {"user_id": user_id, "hashed_id": hashed_id, "needle": needle}
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
