"""GraphQL types for status webhooks (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend.db.history.base import DeliveryStatus, EngagementKind
from backend.db.models import WebhookDelivery as WebhookDeliveryModel
from backend.db.models import WebhookEndpoint as WebhookEndpointModel
from backend.schema.common import Connection
from backend.schema.errors import (
    AccessErrors,
    NotFoundError,
    ValidationError,
)


@strawberry.type(description="An endpoint that receives delivery status changes, signed.")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    secret: str = strawberry.field(
        description=(
            "The signing secret, `whsec_<base64 key>` as the Standard Webhooks libraries take "
            "it (see the README). Admins only."
        )
    )
    description: str
    event_types: list[str] = strawberry.field(
        description="Only changes of these event types; empty means all."
    )
    statuses: list[DeliveryStatus] = strawberry.field(
        description="Only changes to these statuses; empty means all."
    )
    engagements: list[EngagementKind] = strawberry.field(
        description=(
            "The email opens and clicks it also gets, as `delivery.engaged` messages; empty "
            "means none."
        )
    )
    active: bool
    legacy_signature: bool = strawberry.field(
        description=(
            "Also send the deprecated `Herald-Signature` and `Herald-Webhook-Id` headers "
            "(same key; see the README for until when)."
        )
    )
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, row: WebhookEndpointModel) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(str(row.id)),
            url=row.url,
            secret=row.secret,
            description=row.description,
            event_types=list(row.event_types),
            statuses=[DeliveryStatus(s) for s in row.statuses],
            engagements=[EngagementKind(k) for k in row.engagements],
            active=row.active,
            legacy_signature=row.legacy_signature,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.input(description="A new webhook endpoint.")
class WebhookEndpointInput:
    url: str = strawberry.field(description="Where to POST (https; http outside production).")
    secret: str | None = strawberry.field(
        default=None,
        description=(
            "`whsec_<base64 of a 24-64 byte key>`, or any 16-200 characters (keyed with their "
            "UTF-8 bytes and shown as `whsec_<base64>`); made for you if left out."
        ),
    )
    description: str = ""
    event_types: list[str] = strawberry.field(
        default_factory=list, description="Only changes of these event types; empty means all."
    )
    statuses: list[DeliveryStatus] = strawberry.field(
        default_factory=list, description="Only changes to these statuses; empty means all."
    )
    engagements: list[EngagementKind] = strawberry.field(
        default_factory=list,
        description=(
            "Also the email opens and clicks of these kinds, as `delivery.engaged` messages "
            "(of the event types above); empty means none."
        ),
    )
    active: bool = True
    legacy_signature: bool = strawberry.field(
        default=False,
        description=(
            "Also send the deprecated `Herald-Signature` and `Herald-Webhook-Id` headers "
            "(same key; see the README for until when)."
        ),
    )


@strawberry.input(description="Changes to a webhook endpoint: fields left out stay as they are.")
class WebhookEndpointPatch:
    url: str | None = None
    secret: str | None = None
    description: str | None = None
    event_types: list[str] | None = None
    statuses: list[DeliveryStatus] | None = None
    engagements: list[EngagementKind] | None = None
    active: bool | None = None
    legacy_signature: bool | None = None


@strawberry.type(
    description="One attempt to POST a batch of status changes (or of opens and clicks) to an "
    "endpoint."
)
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    message_id: str = strawberry.field(
        description="The `webhook-id` header: the same on every retry of a message."
    )
    attempt: int
    succeeded: bool
    response_status: int | None = strawberry.field(
        description="The endpoint's HTTP status, if it answered."
    )
    error: str | None
    duration_ms: int
    update_count: int = strawberry.field(
        description="Status changes (or opens and clicks) in the message."
    )
    next_retry_at: datetime | None = strawberry.field(
        description="When the next attempt is due; null after a success or the last attempt."
    )
    attempted_at: datetime

    @classmethod
    def from_model(cls, row: WebhookDeliveryModel) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(str(row.id)),
            endpoint_id=strawberry.ID(str(row.endpoint_id)),
            message_id=row.message_id,
            attempt=row.attempt,
            succeeded=row.succeeded,
            response_status=row.response_status,
            error=row.error,
            duration_ms=row.duration_ms,
            update_count=row.update_count,
            next_retry_at=row.next_retry_at,
            attempted_at=row.created_at,
        )


@strawberry.type(description="An endpoint's delivery attempts, newest first.")
class WebhookDeliveryConnection(Connection[WebhookDelivery]):
    pass


@strawberry.type(description="The endpoint was deleted, with its delivery log.")
class WebhookEndpointDeleted:
    id: strawberry.ID


WebhookEndpointResult = Annotated[
    WebhookEndpoint | ValidationError | NotFoundError | AccessErrors,
    strawberry.union("WebhookEndpointResult"),
]

DeleteWebhookEndpointResult = Annotated[
    WebhookEndpointDeleted | NotFoundError | AccessErrors,
    strawberry.union("DeleteWebhookEndpointResult"),
]
