"""Queries on dead letters: deliveries that failed for good."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import DeadLetter
from backend.db.repositories.base import Repository


class DeadLetterRepository(Repository):
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

    async def count(self) -> int:
        """How many dead letters wait for a replay."""
        return int(await self.session.scalar(select(func.count()).select_from(DeadLetter)) or 0)


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Delete the user's dead letters (their envelopes carry the payload); returns how many."""
    result = await session.execute(delete(DeadLetter).where(DeadLetter.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
