"""GraphQL types for deliveries and their history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus, EngagementKind
from backend.schema.common import Connection
from backend.services.live import DeliveryChange


@strawberry.type
class StatusChange:
    status: DeliveryStatus
    at: datetime
    reason: str | None


@strawberry.type
class DeliveryAttempt:
    number: int
    at: datetime
    provider: str | None
    error: str | None = strawberry.field(description="Null when the attempt succeeded.")


strawberry.enum(
    EngagementKind,
    name="EngagementKind",
    description="What a recipient did with an email (open and click tracking).",
)


@strawberry.type(
    description=(
        "An open or a click of an email, recorded by its tracking pixel or a tracked link: an "
        "event next to the status timeline, never a status change."
    )
)
class DeliveryEngagement:
    kind: EngagementKind
    at: datetime
    url: str | None = strawberry.field(description="The link followed (clicks only).")


@strawberry.type
class DeliveryFields:
    """The fields every view of a delivery starts with; not a type of the schema itself."""

    id: strawberry.ID
    event_id: strawberry.ID
    event_type: str
    campaign_id: strawberry.ID | None
    user_id: strawberry.ID
    channel: Channel
    status: DeliveryStatus

    @staticmethod
    def of(r: DeliveryRecord | DeliveryChange) -> dict[str, Any]:
        """Those fields' values for a stored delivery or a live status change."""
        return {
            "id": strawberry.ID(r.id),
            "event_id": strawberry.ID(r.event_id),
            "event_type": r.event_type,
            "campaign_id": strawberry.ID(r.campaign_id) if r.campaign_id else None,
            "user_id": strawberry.ID(r.user_id),
            "channel": r.channel,
            "status": r.status,
        }


@strawberry.type(description="One message to one user on one channel, with its history.")
class Delivery(DeliveryFields):
    template_slug: str | None
    locale: str | None
    subject: str | None
    title: str | None
    timeline: list[StatusChange]
    attempts: list[DeliveryAttempt]
    engagements: list[DeliveryEngagement] = strawberry.field(
        description=(
            "Opens and clicks of an email, oldest first (empty unless tracking is on; at most "
            "100 are kept)."
        )
    )
    provider_message_id: str | None
    created_at: datetime
    updated_at: datetime
    tenant_id: str | None = strawberry.field(
        default=None, description="The tenant of the event; null without one."
    )

    @classmethod
    def from_record(cls, r: DeliveryRecord) -> Delivery:
        return cls(
            **DeliveryFields.of(r),
            template_slug=r.template_slug,
            locale=r.locale,
            subject=r.subject,
            title=r.title,
            timeline=[StatusChange(status=t.status, at=t.at, reason=t.reason) for t in r.timeline],
            attempts=[
                DeliveryAttempt(number=a.number, at=a.at, provider=a.provider, error=a.error)
                for a in r.attempts
            ],
            engagements=[
                DeliveryEngagement(kind=e.kind, at=e.at, url=e.url) for e in r.engagements
            ],
            provider_message_id=r.provider_message_id,
            created_at=r.created_at,
            updated_at=r.updated_at,
            tenant_id=r.tenant_id,
        )


@strawberry.type(description="Deliveries, newest first.")
class DeliveryConnection(Connection[Delivery]):
    pass


@strawberry.input(description="Every field given must match.")
class DeliveryFilter:
    user_id: strawberry.ID | None = None
    tenant_id: str | None = strawberry.field(
        default=None,
        description="One tenant's deliveries (a caller bound to a tenant sees only its own).",
    )
    event_id: strawberry.ID | None = None
    campaign_id: strawberry.ID | None = None
    channel: Channel | None = None
    status: DeliveryStatus | None = None
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Created at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Created before.")
