"""Queries on user preferences."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.db.models import UserPreferences
from backend.db.raw import Statement, driver_connection

_PREFERENCES_OF = Statement(
    "SELECT user_id, disabled_channels, disabled_event_types, disabled_topics, quiet_start, "
    "quiet_end, timezone, digest_cadence, updated_at FROM user_preferences "
    "WHERE user_id = ANY(CAST(:ids AS text[]))"
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


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Delete the user's preferences; returns 1 when they had any, else 0."""
    stmt = delete(UserPreferences).where(UserPreferences.user_id == user_id)
    return int((await session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]
