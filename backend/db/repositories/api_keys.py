"""Queries on API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update

from backend.db.models import ApiKey
from backend.db.repositories.base import RowRepository


class ApiKeyRepository(RowRepository[ApiKey]):
    refresh_after_add = True

    async def get(self, key_id: uuid.UUID, *, lock: bool = False) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id, with_for_update=lock)

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        stmt = select(ApiKey).where(ApiKey.prefix == prefix)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(
        self, *, include_revoked: bool, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[ApiKey]:
        """Newest first; ``after`` is the (created_at, id) of the previous page's last key."""
        stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
        if not include_revoked:
            stmt = stmt.where(ApiKey.revoked_at.is_(None))
        if after is not None:
            created_at, key_id = after
            stmt = stmt.where(
                (ApiKey.created_at < created_at)
                | ((ApiKey.created_at == created_at) & (ApiKey.id < key_id))
            )
        return list((await self.session.execute(stmt.limit(limit))).scalars())

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        """Record a use; never moves ``last_used_at`` back (another process may be ahead)."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .where(ApiKey.last_used_at.is_(None) | (ApiKey.last_used_at < at))
            .values(last_used_at=at)
        )
        await self.session.execute(stmt)
