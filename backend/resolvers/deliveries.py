"""Delivery history resolvers."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.resolvers.units import read
from backend.schema.context import Context
from backend.schema.deliveries import Delivery, DeliveryConnection, DeliveryFilter
from backend.services import history as history_service

Info = strawberry.Info[Context, Any]


def _filter(f: DeliveryFilter | None, actor: Principal) -> history_service.DeliveryFilter:
    if f is None:
        return history_service.scoped(history_service.DeliveryFilter(), actor)
    return history_service.scoped(
        history_service.DeliveryFilter(
            user_id=str(f.user_id) if f.user_id else None,
            tenant_id=f.tenant_id,
            event_id=str(f.event_id) if f.event_id else None,
            campaign_id=str(f.campaign_id) if f.campaign_id else None,
            channel=f.channel,
            status=f.status,
            since=f.from_,
            until=f.to,
        ),
        actor,
    )


@strawberry.field(
    description=(
        "Delivery history, newest first, filtered. Managers only; a caller bound to a tenant "
        "sees its tenant's deliveries only."
    )
)
async def deliveries(
    info: Info, filter: DeliveryFilter | None = None, first: int = 20, after: str | None = None
) -> DeliveryConnection:
    history = info.context.services.clients.history

    async def work(session: AsyncSession, actor: Principal) -> DeliveryConnection:
        page = await history_service.list_deliveries(
            session, history, filter=_filter(filter, actor), first=first, after=after
        )
        return DeliveryConnection.from_page(page, Delivery.from_record)

    return await read(info, MANAGE_TEMPLATES, work, tenant_scoped=True)


Query = create_type("Query", [deliveries])
