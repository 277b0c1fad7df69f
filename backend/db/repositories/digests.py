"""Queries on digest items waiting for their window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import (
    DigestItem,
)
from backend.db.repositories.base import Repository


class DigestRepository(Repository):
    async def add(self, items: Sequence[DigestItem]) -> None:
        """Store items; an (event, user) already collected is left as it is."""
        if not items:
            return
        stmt = (
            insert(DigestItem)
            .values(
                [
                    {
                        "event_type": i.event_type,
                        "user_id": i.user_id,
                        "digest_key": i.digest_key,
                        "due_at": i.due_at,
                        "event_id": i.event_id,
                        "envelope": i.envelope,
                        "payload": i.payload,
                        "created_at": i.created_at,
                    }
                    for i in items
                ]
            )
            .on_conflict_do_nothing(constraint="uq_digest_items_event_user")
        )
        await self.session.execute(stmt)

    async def take_due(self, now: datetime, limit: int) -> list[DigestItem]:
        """Lock due items; concurrent releasers skip each other's rows."""
        stmt = (
            select(DigestItem)
            .where(DigestItem.due_at <= now)
            .order_by(DigestItem.due_at, DigestItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, ids: Sequence[int]) -> None:
        if ids:
            await self.session.execute(delete(DigestItem).where(DigestItem.id.in_(ids)))


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Cancel the user's waiting digests: delete their items; returns how many."""
    result = await session.execute(delete(DigestItem).where(DigestItem.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
