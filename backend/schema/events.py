"""GraphQL types and inputs for events: sending them and what became of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.frameworks.strawberry_internals import compiled_input
from backend.schema.deliveries import Delivery
from backend.schema.errors import (
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)


# Built by a plan made once: sendEvents converts up to 500 of these per request.
@compiled_input
@strawberry.input(description="An event from a service: who, what, and optional overrides.")
class EventInput:
    type: str = strawberry.field(description="Event type, e.g. `user_registered`.")
    user_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list,
        description="Recipients (auth-service ids). Give these, `topics`, or both.",
    )
    topics: list[str] = strawberry.field(
        default_factory=list,
        description=(
            "Send to the members of these topics too (one delivery per user, however many "
            "of the topics and `userIds` they are in)."
        ),
    )
    payload: JSON | None = strawberry.field(
        default=None, description="Template variables; checked against the type's JSON Schema."
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Same key within 24 h: the first eventId comes back with `duplicate: true`.",
    )
    template_slug: str | None = strawberry.field(
        default=None, description="Override the type's template (required for unregistered types)."
    )
    channels: list[Channel] | None = strawberry.field(
        default=None, description="Override the type's channels (required for unregistered types)."
    )
    send_at: datetime | None = strawberry.field(
        default=None, description="Deliver later, at this time (ISO 8601; UTC if no offset)."
    )
    locale: str | None = strawberry.field(
        default=None, description="Force a locale; otherwise each user's own, then `en`."
    )
    cancel_key: str | None = strawberry.field(
        default=None,
        description=(
            "Names the event's workflow runs for `cancelWorkflowRuns` (and for events of types "
            "whose workflow cancels this one's), 1-200 characters."
        ),
    )
    tenant_id: str | None = strawberry.field(
        default=None,
        description=(
            "The tenant the event is for: its templates override the shared ones, and its "
            "deliveries and inbox items carry it. A caller bound to a tenant sends for its own."
        ),
    )


@strawberry.type(description="The broker confirmed the event (or it is stored for `sendAt`).")
class EventAccepted:
    event_id: strawberry.ID
    duplicate: bool = strawberry.field(description="True when the idempotency key was seen.")
    scheduled_for: datetime | None = strawberry.field(
        description="When a delayed event will be dispatched."
    )


SendEventResult = Annotated[
    EventAccepted
    | ValidationError
    | NotFoundError
    | UnavailableError
    | UnauthenticatedError
    | ForbiddenError
    | RateLimitedError,
    strawberry.union("SendEventResult"),
]


@strawberry.type(description="One result per input, in input order.")
class EventBatch:
    results: list[SendEventResult]
    accepted: int = strawberry.field(description="How many were accepted (duplicates included).")


SendEventsResult = Annotated[
    EventBatch
    | ValidationError
    | UnauthenticatedError
    | ForbiddenError
    | UnavailableError
    | RateLimitedError,
    strawberry.union("SendEventsResult"),
]


@strawberry.type(description="An event and what became of it.")
class Event:
    id: strawberry.ID
    type: str | None = strawberry.field(description="Null until the event is dispatched.")
    deliveries: list[Delivery]
