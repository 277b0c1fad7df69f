"""Delivery history resolvers."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.db.history.base import DeliveryFilter as HistoryFilter
from backend.db.history.base import HistoryStore, history_cursor
from backend.resolvers.units import read
from backend.schema.common import Edge, PageInfo
from backend.schema.context import Context
from backend.schema.deliveries import (
    Delivery,
    DeliveryConnection,
    DeliveryFilter,
)
from backend.services.pagination import check_page_size

Info = strawberry.Info[Context, Any]


def history_store(info: Info) -> HistoryStore:
    history: HistoryStore = info.context.services.clients.history
    return history


def _filter(f: DeliveryFilter | None) -> HistoryFilter:
    if f is None:
        return HistoryFilter()
    return HistoryFilter(
        user_id=str(f.user_id) if f.user_id else None,
        event_id=str(f.event_id) if f.event_id else None,
        campaign_id=str(f.campaign_id) if f.campaign_id else None,
        channel=f.channel,
        status=f.status,
        since=f.from_,
        until=f.to,
    )


async def deliveries(
    info: Info, filter: DeliveryFilter | None = None, first: int = 20, after: str | None = None
) -> DeliveryConnection:
    history = history_store(info)

    async def work(_: AsyncSession, __: Principal) -> DeliveryConnection:
        page = await history.find(_filter(filter), first=check_page_size(first), after=after)
        edges = [
            Edge(cursor=history_cursor(record), node=Delivery.from_record(record))
            for record in page.items
        ]
        return DeliveryConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    return await read(info, MANAGE_TEMPLATES, work)


@strawberry.type
class Query:
    deliveries: DeliveryConnection = strawberry.field(
        resolver=deliveries,
        description="Delivery history, newest first, filtered. Managers only.",
    )
