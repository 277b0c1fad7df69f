"""Queries on user preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import (
    UserPreferences,
)


class PreferenceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: str, *, for_update: bool = False) -> UserPreferences | None:
        return await self.session.get(UserPreferences, user_id, with_for_update=for_update)

    async def upsert(
        self,
        user_id: str,
        *,
        disabled_channels: list[str],
        disabled_event_types: list[str],
        **extra: Any,
    ) -> UserPreferences:
        """Replace the opt-outs; ``extra`` sets other columns (quiet hours, time zone)."""
        values = {
            "disabled_channels": disabled_channels,
            "disabled_event_types": disabled_event_types,
            **extra,
        }
        stmt = (
            insert(UserPreferences)
            .values(user_id=user_id, **values)
            .on_conflict_do_update(
                index_elements=[UserPreferences.user_id],
                set_={**values, "updated_at": datetime.now().astimezone()},
            )
            .returning(UserPreferences)
        )
        row = (await self.session.execute(stmt)).scalar_one()
        await self.session.refresh(row)
        return row
