"""Queries on user preferences."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.db.models import UserPreferences
from backend.db.raw import Statement, driver_connection
from backend.db.repositories.base import Repository

_PREFERENCES_OF = Statement(
    "SELECT user_id, tenant_id, disabled_channels, disabled_event_types, disabled_topics, "
    "quiet_start, quiet_end, timezone, digest_cadence, updated_at FROM user_preferences "
    "WHERE user_id = ANY(CAST(:ids AS text[])) AND tenant_id IN ('', :tenant)"
)
# The opt-outs a user makes within a tenant, added to their own for that tenant's events.
TENANT_OPT_OUTS = ("disabled_channels", "disabled_event_types", "disabled_topics")


def _union(*lists: Sequence[str] | None) -> list[str]:
    return list(dict.fromkeys(item for values in lists for item in values or ()))


async def preferences_of(
    engine: AsyncEngine, user_ids: Sequence[str], tenant_id: str | None = None
) -> dict[str, UserPreferences]:
    """The preferences of those users who have any (most have none), for an event of
    ``tenant_id`` (the user's own, with the opt-outs they made within that tenant added), read
    for every event on the driver connection (see backend.db.raw); detached rows, for reading
    only."""
    if not user_ids:
        return {}
    async with driver_connection(engine) as conn:
        rows = await _PREFERENCES_OF.fetch(conn, {"ids": list(user_ids), "tenant": tenant_id or ""})
    own = {row["user_id"]: dict(row) for row in rows if row["tenant_id"] == ""}
    for row in rows:
        if row["tenant_id"] == "":
            continue
        merged = own.setdefault(
            row["user_id"],
            {"user_id": row["user_id"], "digest_cadence": {}, "updated_at": row["updated_at"]},
        )
        for name in TENANT_OPT_OUTS:
            merged[name] = _union(merged.get(name), row[name])
    return {user_id: UserPreferences(**values) for user_id, values in own.items()}


class PreferenceRepository(Repository):
    async def get(
        self, user_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> UserPreferences | None:
        """The user's own preferences, or with ``tenant_id`` those they made within it."""
        return await self.session.get(
            UserPreferences, (user_id, tenant_id or ""), with_for_update=for_update
        )

    async def all_of(self, user_id: str, *, for_update: bool = False) -> list[UserPreferences]:
        """The user's own preferences and those made within each tenant."""
        stmt = select(UserPreferences).where(UserPreferences.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        return list((await self.session.execute(stmt)).scalars())

    async def upsert(
        self,
        user_id: str,
        tenant_id: str | None = None,
        /,
        *,
        disabled_channels: list[str],
        disabled_event_types: list[str],
        **extra: Any,
    ) -> UserPreferences:
        """Replace the opt-outs (the user's own, or with ``tenant_id`` those made within it);
        ``extra`` sets other columns (quiet hours, time zone)."""
        values = {
            "disabled_channels": disabled_channels,
            "disabled_event_types": disabled_event_types,
            **extra,
        }
        stmt = (
            insert(UserPreferences)
            .values(user_id=user_id, tenant_id=tenant_id or "", **values)
            .on_conflict_do_update(
                index_elements=[UserPreferences.user_id, UserPreferences.tenant_id],
                set_={**values, "updated_at": datetime.now().astimezone()},
            )
            .returning(UserPreferences)
        )
        row = (await self.session.execute(stmt)).scalar_one()
        await self.session.refresh(row)
        return row


async def forget_user(session: AsyncSession, user_id: str) -> int:
    """Delete the user's preferences (their own and those within tenants); returns how many
    rows there were."""
    stmt = delete(UserPreferences).where(UserPreferences.user_id == user_id)
    return int((await session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]
