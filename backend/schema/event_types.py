"""GraphQL types and inputs for event types and their rules (throttles, digests)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.db.models import EventType as EventTypeModel
from backend.schema.errors import (
    AccessErrors,
    ConflictError,
    NotFoundError,
    ValidationError,
)


@strawberry.type(description="At most `limit` messages per user every `windowSeconds`.")
class Throttle:
    limit: int
    window_seconds: int


@strawberry.input(description="At most `limit` messages per user every `windowSeconds`.")
class ThrottleInput:
    limit: int
    window_seconds: int


@strawberry.type(description="Events of the type are collected and sent as one message.")
class Digest:
    every_seconds: int | None = strawberry.field(description="Fixed windows of N seconds.")
    cron: str | None = strawberry.field(description="A schedule, in each user's time zone.")
    key: str | None = strawberry.field(description="A payload path: one digest per value.")
    template_slug: str | None = strawberry.field(
        description="What the digest renders with (it sees `payload.events`, `payload.count`)."
    )


@strawberry.input(
    description=(
        "Collect events per user (and key) and send one message per window: `everySeconds` "
        "(at least 60) or `cron` (e.g. `0 9 * * *`: 09:00 in each user's time zone)."
    )
)
class DigestInput:
    every_seconds: int | None = None
    cron: str | None = None
    key: str | None = None
    template_slug: str | None = None


@strawberry.type(description="An event type and its rule.")
class EventType:
    name: str
    description: str
    payload_schema: JSON | None
    template_slug: str | None
    channels: list[Channel]
    critical: bool = strawberry.field(
        description="Critical types ignore opt-outs, quiet hours, throttles and budgets."
    )
    builtin: bool
    throttle: Throttle | None = strawberry.field(
        description="Extra messages of this type to a user within the window are skipped."
    )
    digest: Digest | None = strawberry.field(
        description="Non-critical events of this type are collected into digests."
    )

    @classmethod
    def from_model(cls, row: EventTypeModel) -> EventType:
        return cls(
            name=row.name,
            description=row.description,
            payload_schema=row.payload_schema,  # type: ignore[arg-type]
            template_slug=row.template_slug,
            channels=[Channel(c) for c in row.channels],
            critical=row.critical,
            builtin=row.builtin,
            throttle=Throttle(limit=row.throttle_limit, window_seconds=row.throttle_window_seconds)
            if row.throttle_limit and row.throttle_window_seconds
            else None,
            digest=Digest(
                every_seconds=row.digest.get("every_seconds"),
                cron=row.digest.get("cron"),
                key=row.digest.get("key"),
                template_slug=row.digest.get("template_slug"),
            )
            if row.digest
            else None,
        )


@strawberry.input
class RegisterEventTypeInput:
    name: str
    description: str = ""
    payload_schema: JSON | None = strawberry.field(
        default=None, description="A JSON Schema (2020-12) payloads must satisfy."
    )
    template_slug: str
    channels: list[Channel]
    critical: bool = False
    throttle: ThrottleInput | None = None
    digest: DigestInput | None = None


EventTypeResult = Annotated[
    EventType | ValidationError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("EventTypeResult"),
]
