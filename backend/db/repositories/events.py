"""Queries on scheduled events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import ScheduledEvent
from backend.db.repositories.base import RowRepository


class ScheduledEventRepository(RowRepository[ScheduledEvent]):
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


# The envelope's recipients without one user (see Envelope.to_wire), order kept.
_USERS_WITHOUT = (
    "(SELECT COALESCE(jsonb_agg(u ORDER BY n), '[]'::jsonb) "
    "FROM jsonb_array_elements(envelope->'user_ids') WITH ORDINALITY AS x(u, n) "
    "WHERE u <> to_jsonb(CAST(:user_id AS text)))"
)
_LISTS_USER = "envelope->'user_ids' @> jsonb_build_array(CAST(:user_id AS text))"


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Take the user out of the scheduled events still waiting: an event for them alone is
    deleted, others lose them from their recipients. Returns how many events changed."""
    deleted = await session.execute(
        text(
            f"DELETE FROM scheduled_events WHERE {_LISTS_USER} "  # noqa: S608 (constants)
            f"AND jsonb_array_length({_USERS_WITHOUT}) = 0"
        ),
        {"user_id": user_id},
    )
    updated = await session.execute(
        text(
            "UPDATE scheduled_events SET envelope = "  # noqa: S608 (constants)
            f"jsonb_set(envelope, '{{user_ids}}', {_USERS_WITHOUT}) WHERE {_LISTS_USER}"
        ),
        {"user_id": user_id},
    )
    return int(deleted.rowcount or 0) + int(updated.rowcount or 0)  # type: ignore[attr-defined]
