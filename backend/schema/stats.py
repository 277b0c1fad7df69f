"""GraphQL types for delivery statistics and queue depths (the admin overview)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus, StatsDimension, StatsRow
from backend.services.stats import DeliveryCounts, QueueDepth, StatsBucket

strawberry.enum(StatsBucket, name="StatsBucket", description="The size of a time bucket.")
strawberry.enum(
    StatsDimension,
    name="StatsDimension",
    description=(
        "What delivery counts are grouped by. STATUS is a delivery's current status; "
        "PROVIDER the provider of its last attempt (null before any attempt)."
    ),
)


@strawberry.type(description="The count of one group; fields not grouped by are null.")
class DeliveryStatsRow:
    bucket_start: datetime | None = strawberry.field(
        description="The start of the row's bucket; null when counted without buckets."
    )
    channel: Channel | None
    status: DeliveryStatus | None
    provider: str | None
    event_type: str | None
    campaign_id: strawberry.ID | None
    count: int

    @classmethod
    def from_row(cls, row: StatsRow, group_by: tuple[StatsDimension, ...]) -> DeliveryStatsRow:
        keys = dict(zip(group_by, row.keys, strict=True))
        channel = keys.get(StatsDimension.CHANNEL)
        status = keys.get(StatsDimension.STATUS)
        campaign_id = keys.get(StatsDimension.CAMPAIGN)
        return cls(
            bucket_start=row.bucket_start,
            channel=Channel(channel) if channel else None,
            status=DeliveryStatus(status) if status else None,
            provider=keys.get(StatsDimension.PROVIDER),
            event_type=keys.get(StatsDimension.EVENT_TYPE),
            campaign_id=strawberry.ID(campaign_id) if campaign_id else None,
            count=row.count,
        )


@strawberry.type(description="Deliveries created in a window, counted per bucket and group.")
class DeliveryStats:
    from_: datetime = strawberry.field(name="from")
    to: datetime
    bucket: StatsBucket | None
    group_by: list[StatsDimension]
    total: int
    rows: list[DeliveryStatsRow] = strawberry.field(
        description="Non-empty groups only: by bucket, then the largest count first."
    )

    @classmethod
    def from_counts(cls, counts: DeliveryCounts) -> DeliveryStats:
        return cls(
            from_=counts.since,
            to=counts.until,
            bucket=counts.bucket,
            group_by=list(counts.group_by),
            total=counts.total,
            rows=[DeliveryStatsRow.from_row(row, counts.group_by) for row in counts.rows],
        )


@strawberry.type(description="A RabbitMQ queue's backlog.")
class QueueStat:
    name: str
    messages: int = strawberry.field(
        description="Messages ready for a consumer (not those delivered and not yet acked)."
    )
    consumers: int
    dead_letter: bool = strawberry.field(
        description="The dead-letter queue: messages workers rejected (undecodable, unknown)."
    )

    @classmethod
    def from_depth(cls, depth: QueueDepth) -> QueueStat:
        return cls(
            name=depth.name,
            messages=depth.messages,
            consumers=depth.consumers,
            dead_letter=depth.dead_letter,
        )


@strawberry.type(description="The work queues' backlogs and the dead letters waiting.")
class QueueStats:
    queues: list[QueueStat]
    dead_letters_waiting: int = strawberry.field(
        description="Deliveries that failed for good and wait for a replay (`deadLetters`)."
    )
