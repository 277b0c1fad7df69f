"""Delivery statistics for the admin overview: counts from the history store, queue depths
from RabbitMQ, and the dead letters waiting for a replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import aio_pika
from aio_pika.abc import AbstractConnection
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.history.base import HistoryStore, StatsQuery, StatsRow
from backend.db.history.base import StatsDimension as StatsDimension  # for the resolvers
from backend.db.history.records import as_utc
from backend.db.repositories.dead_letters import DeadLetterRepository
from backend.errors import UnavailableError, ValidationError
from backend.queues import DEAD_LETTER_QUEUE, WORK_QUEUES

# A week of 5-minute buckets is 2,016 points: more than a chart can show, and the cap keeps
# one query from asking for millions of groups.
MAX_BUCKETS = 2_016
MAX_WINDOW = timedelta(days=92)


class StatsBucket(Enum):
    """The bucket sizes a series can be counted in."""

    MINUTE = timedelta(minutes=1)
    FIVE_MINUTES = timedelta(minutes=5)
    FIFTEEN_MINUTES = timedelta(minutes=15)
    HOUR = timedelta(hours=1)
    SIX_HOURS = timedelta(hours=6)
    DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    since: datetime
    until: datetime
    bucket: StatsBucket | None
    group_by: tuple[StatsDimension, ...]
    rows: list[StatsRow]  # by bucket, then the largest count first

    @property
    def total(self) -> int:
        return sum(row.count for row in self.rows)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    messages: int  # ready for a consumer; those delivered and not yet acked are not counted
    consumers: int
    dead_letter: bool


async def count_deliveries(
    history: HistoryStore,
    *,
    since: datetime,
    until: datetime,
    bucket: StatsBucket | None = None,
    group_by: Sequence[StatsDimension] = (),
) -> DeliveryCounts:
    """Deliveries created in ``[since, until)`` counted per bucket (aligned on ``since``) and
    per value of each ``group_by`` dimension. Raises ValidationError on an empty or too long
    window, or one of too many buckets."""
    since, until = as_utc(since), as_utc(until)
    if until <= since:
        raise ValidationError("`to` must be after `from`", field="to")
    if until - since > MAX_WINDOW:
        raise ValidationError(f"The window is at most {MAX_WINDOW.days} days", field="from")
    if bucket is not None and (until - since) / bucket.value > MAX_BUCKETS:
        raise ValidationError(f"At most {MAX_BUCKETS} buckets; choose larger ones", field="bucket")
    dimensions = tuple(dict.fromkeys(group_by))

    def order(row: StatsRow) -> tuple[datetime, int, list[tuple[bool, str]]]:
        keys = [(key is None, key or "") for key in row.keys]  # None after every value
        return (row.bucket_start or since, -row.count, keys)

    rows = await history.delivery_stats(
        StatsQuery(
            since=since,
            until=until,
            bucket=None if bucket is None else bucket.value,
            group_by=dimensions,
        )
    )
    return DeliveryCounts(
        since=since,
        until=until,
        bucket=bucket,
        group_by=dimensions,
        rows=sorted(rows, key=order),
    )


async def queue_depths(connection: AbstractConnection | None) -> list[QueueDepth]:
    """Messages waiting and consumers attached for each work queue and the dead-letter queue,
    from passive declares (the management API is not needed). A queue not declared in the
    virtual host yet is left out. Raises UnavailableError when RabbitMQ cannot be reached."""
    if connection is None or connection.is_closed:
        raise UnavailableError("The message broker is unavailable")
    depths: list[QueueDepth] = []
    try:
        channel = await connection.channel()
        try:
            for name in (*WORK_QUEUES, DEAD_LETTER_QUEUE):
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    # RabbitMQ closes a channel on a passive declare of a missing queue.
                    channel = await connection.channel()
                    continue
                declared = queue.declaration_result
                depths.append(
                    QueueDepth(
                        name=name,
                        messages=declared.message_count or 0,
                        consumers=declared.consumer_count or 0,
                        dead_letter=name == DEAD_LETTER_QUEUE,
                    )
                )
        finally:
            if not channel.is_closed:
                await channel.close()
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        raise UnavailableError("The message broker did not answer") from exc
    return depths


async def count_dead_letters(session: AsyncSession) -> int:
    """How many deliveries failed for good and wait for a replay."""
    return await DeadLetterRepository(session).count()
