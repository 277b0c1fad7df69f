"""Delivery statistics and queue depths for the admin overview (managers)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.resolvers.units import read
from backend.schema.context import Context
from backend.schema.stats import DeliveryStats, QueueStat, QueueStats
from backend.services import stats as stats_service
from backend.services.stats import StatsBucket, StatsDimension

Info = strawberry.Info[Context, Any]


@strawberry.field(
    description=(
        "Deliveries created in [from, to) counted per `bucket` (aligned on `from`; none "
        "for totals) and per value of each `groupBy` dimension. At most 92 days and 2,016 "
        "buckets. Managers only."
    )
)
async def delivery_stats(
    info: Info,
    from_: Annotated[datetime, strawberry.argument(name="from")],
    to: datetime,
    bucket: StatsBucket | None = None,
    group_by: list[StatsDimension] | None = None,
) -> DeliveryStats:
    history = info.context.services.clients.history

    async def work(_: AsyncSession, __: Principal) -> DeliveryStats:
        counts = await stats_service.count_deliveries(
            history, since=from_, until=to, bucket=bucket, group_by=group_by or ()
        )
        return DeliveryStats.from_counts(counts)

    return await read(info, MANAGE_TEMPLATES, work)


@strawberry.field(description="Messages and consumers of each RabbitMQ work queue. Managers only.")
async def queue_stats(info: Info) -> QueueStats:
    broker = info.context.services.clients.broker

    async def work(session: AsyncSession, _: Principal) -> QueueStats:
        depths = await stats_service.queue_depths(broker.connection)
        waiting = await stats_service.count_dead_letters(session)
        return QueueStats(
            queues=[QueueStat.from_depth(d) for d in depths], dead_letters_waiting=waiting
        )

    return await read(info, MANAGE_TEMPLATES, work)


Query = create_type("Query", [delivery_stats, queue_stats])
