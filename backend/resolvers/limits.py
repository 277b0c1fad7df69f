"""Delivery budget resolvers (admins)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import ADMINS, MANAGE_TEMPLATES, Principal
from backend.channels import Channel
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.limits import (
    DeliveryBudget,
    DeliveryBudgetInput,
    DeliveryBudgetRemoved,
    DeliveryBudgetResult,
    RemoveDeliveryBudgetResult,
)
from backend.services import limits as limit_service

Info = strawberry.Info[Context, Any]


def _budget(row: Any) -> DeliveryBudget:
    return DeliveryBudget(
        channel=Channel(row.channel),
        max_deliveries=row.max_deliveries,
        window_seconds=row.window_seconds,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


@strawberry.field(description="Per-user delivery budgets by channel. Managers.")
async def delivery_budgets(info: Info) -> list[DeliveryBudget]:
    async def work(session: AsyncSession, _: Principal) -> list[DeliveryBudget]:
        return [_budget(r) for r in await limit_service.list_budgets(session)]

    return await read(info, MANAGE_TEMPLATES, work)


@strawberry.mutation(
    description=(
        "Cap non-critical deliveries per user on a channel per window, across every event "
        "type and campaign. Admins."
    )
)
async def set_delivery_budget(info: Info, input: DeliveryBudgetInput) -> DeliveryBudgetResult:
    async def work(session: AsyncSession, actor: Principal) -> DeliveryBudget:
        row = await limit_service.set_budget(
            session,
            actor=actor,
            channel=input.channel,
            max_deliveries=input.max_deliveries,
            window_seconds=input.window_seconds,
        )
        return _budget(row)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


@strawberry.mutation(description="Lift a channel's budget. Admins.")
async def remove_delivery_budget(info: Info, channel: Channel) -> RemoveDeliveryBudgetResult:
    async def work(session: AsyncSession, _: Principal) -> DeliveryBudgetRemoved:
        removed = await limit_service.remove_budget(session, channel=channel)
        return DeliveryBudgetRemoved(channel=channel, removed=removed)

    return await mutate(info, ADMINS, work)  # type: ignore[return-value]


Query = create_type("Query", [delivery_budgets])
Mutation = create_type("Mutation", [set_delivery_budget, remove_delivery_budget])
