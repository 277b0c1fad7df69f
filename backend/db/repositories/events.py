"""Queries on scheduled events. Dead letters, push subscriptions and the bulk preference read
stay here while the delivery path imports them from this module; they belong in
dead_letters.py and preferences.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.db.models import (
    DeadLetter,
    PushSubscriptionRow,
    ScheduledEvent,
    UserPreferences,
)
from backend.db.raw import Statement, driver_connection

_PREFERENCES_OF = Statement(
    "SELECT user_id, disabled_channels, disabled_event_types, quiet_start, quiet_end, timezone, "
    "digest_cadence, updated_at FROM user_preferences WHERE user_id = ANY(CAST(:ids AS text[]))"
)


async def preferences_of(
    engine: AsyncEngine, user_ids: Sequence[str]
) -> dict[str, UserPreferences]:
    """The preferences of those users who have any (most have none), read for every event on
    the driver connection (see backend.db.raw); detached rows, for reading only."""
    if not user_ids:
        return {}
    async with driver_connection(engine) as conn:
        rows = await _PREFERENCES_OF.fetch(conn, {"ids": list(user_ids)})
    return {row["user_id"]: UserPreferences(**dict(row)) for row in rows}


class PushSubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_users(self, user_ids: Sequence[str]) -> list[PushSubscriptionRow]:
        if not user_ids:
            return []
        stmt = select(PushSubscriptionRow).where(PushSubscriptionRow.user_id.in_(user_ids))
        return list((await self.session.execute(stmt)).scalars())

    async def upsert(self, *, user_id: str, endpoint: str, p256dh: str, auth: str) -> None:
        stmt = (
            insert(PushSubscriptionRow)
            .values(user_id=user_id, endpoint=endpoint, p256dh=p256dh, auth=auth)
            .on_conflict_do_update(
                index_elements=[PushSubscriptionRow.endpoint],
                set_={"user_id": user_id, "p256dh": p256dh, "auth": auth},
            )
        )
        await self.session.execute(stmt)

    async def delete(self, *, endpoints: Sequence[str], user_id: str | None = None) -> int:
        stmt = delete(PushSubscriptionRow).where(PushSubscriptionRow.endpoint.in_(endpoints))
        if user_id is not None:
            stmt = stmt.where(PushSubscriptionRow.user_id == user_id)
        result = await self.session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


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


class DeadLetterRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        rows = [
            {
                "delivery_id": d.delivery_id,
                "event_id": d.event_id,
                "event_type": d.event_type,
                "user_id": d.user_id,
                "channel": d.channel,
                "envelope": d.envelope,
                "error": d.error,
                "attempts": d.attempts,
            }
            for d in letters
        ]
        stmt = insert(DeadLetter).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=[DeadLetter.delivery_id],
            set_={
                "error": stmt.excluded.error,
                "attempts": stmt.excluded.attempts,
                "envelope": stmt.excluded.envelope,
                "created_at": datetime.now().astimezone(),
            },
        )
        await self.session.execute(stmt)

    async def page(self, *, after: tuple[datetime, str] | None, limit: int) -> list[DeadLetter]:
        stmt = (
            select(DeadLetter)
            .order_by(DeadLetter.created_at.desc(), DeadLetter.delivery_id.desc())
            .limit(limit)
        )
        if after is not None:
            at, delivery_id = after
            stmt = stmt.where(
                (DeadLetter.created_at < at)
                | ((DeadLetter.created_at == at) & (DeadLetter.delivery_id < delivery_id))
            )
        return list((await self.session.execute(stmt)).scalars())

    async def take(self, delivery_ids: Sequence[str]) -> list[DeadLetter]:
        stmt = (
            select(DeadLetter)
            .where(DeadLetter.delivery_id.in_(delivery_ids))
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, delivery_ids: Sequence[str]) -> None:
        if delivery_ids:
            await self.session.execute(
                delete(DeadLetter).where(DeadLetter.delivery_id.in_(delivery_ids))
            )
