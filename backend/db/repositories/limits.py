"""Queries on per-channel delivery budgets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from backend.db.models import (
    DeliveryBudget,
)
from backend.db.repositories.base import Repository


class BudgetRepository(Repository):
    async def all(self) -> list[DeliveryBudget]:
        stmt = select(DeliveryBudget).order_by(DeliveryBudget.channel)
        return list((await self.session.execute(stmt)).scalars())

    async def upsert(
        self,
        *,
        channel: str,
        max_deliveries: int,
        window_seconds: int,
        updated_by: str,
        at: datetime,
    ) -> DeliveryBudget:
        values = {
            "max_deliveries": max_deliveries,
            "window_seconds": window_seconds,
            "updated_by": updated_by,
            "updated_at": at,
        }
        stmt = (
            insert(DeliveryBudget)
            .values(channel=channel, **values)
            .on_conflict_do_update(index_elements=[DeliveryBudget.channel], set_=values)
            .returning(DeliveryBudget)
        )
        row = (await self.session.execute(stmt)).scalar_one()
        await self.session.refresh(row)
        return row

    async def delete(self, channel: str) -> bool:
        result = await self.session.execute(
            delete(DeliveryBudget).where(DeliveryBudget.channel == channel)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
