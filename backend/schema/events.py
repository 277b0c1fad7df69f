"""GraphQL types for events, event types, deliveries, dead letters and preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus
from backend.db.models import DeadLetter as DeadLetterModel
from backend.db.models import EventType as EventTypeModel
from backend.schema.common import PageInfo
from backend.schema.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)


@strawberry.input(description="An event from a service: who, what, and optional overrides.")
class EventInput:
    type: str = strawberry.field(description="Event type, e.g. `user_registered`.")
    user_ids: list[strawberry.ID] = strawberry.field(description="Recipients (auth-service ids).")
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
    EventType
    | ValidationError
    | NotFoundError
    | ConflictError
    | UnauthenticatedError
    | ForbiddenError
    | UnavailableError,
    strawberry.union("EventTypeResult"),
]


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


@strawberry.type(description="One message to one user on one channel, with its history.")
class Delivery:
    id: strawberry.ID
    event_id: strawberry.ID
    event_type: str
    campaign_id: strawberry.ID | None
    user_id: strawberry.ID
    channel: Channel
    status: DeliveryStatus
    template_slug: str | None
    locale: str | None
    subject: str | None
    title: str | None
    timeline: list[StatusChange]
    attempts: list[DeliveryAttempt]
    provider_message_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, r: DeliveryRecord) -> Delivery:
        return cls(
            id=strawberry.ID(r.id),
            event_id=strawberry.ID(r.event_id),
            event_type=r.event_type,
            campaign_id=strawberry.ID(r.campaign_id) if r.campaign_id else None,
            user_id=strawberry.ID(r.user_id),
            channel=r.channel,
            status=r.status,
            template_slug=r.template_slug,
            locale=r.locale,
            subject=r.subject,
            title=r.title,
            timeline=[StatusChange(status=t.status, at=t.at, reason=t.reason) for t in r.timeline],
            attempts=[
                DeliveryAttempt(number=a.number, at=a.at, provider=a.provider, error=a.error)
                for a in r.attempts
            ],
            provider_message_id=r.provider_message_id,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


@strawberry.type
class DeliveryEdge:
    cursor: str
    node: Delivery


@strawberry.type(description="Deliveries, newest first.")
class DeliveryConnection:
    edges: list[DeliveryEdge]
    page_info: PageInfo


@strawberry.input(description="Every field given must match.")
class DeliveryFilter:
    user_id: strawberry.ID | None = None
    event_id: strawberry.ID | None = None
    campaign_id: strawberry.ID | None = None
    channel: Channel | None = None
    status: DeliveryStatus | None = None
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Created at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Created before.")


@strawberry.type(description="An event and what became of it.")
class Event:
    id: strawberry.ID
    type: str | None = strawberry.field(description="Null until the event is dispatched.")
    deliveries: list[Delivery]


@strawberry.type(description="A delivery that failed for good; replay it with retryDeadLetters.")
class DeadLetter:
    delivery_id: strawberry.ID
    event_id: strawberry.ID
    event_type: str
    user_id: strawberry.ID
    channel: Channel
    error: str
    attempts: int
    dead_at: datetime

    @classmethod
    def from_model(cls, row: DeadLetterModel) -> DeadLetter:
        return cls(
            delivery_id=strawberry.ID(row.delivery_id),
            event_id=strawberry.ID(row.event_id),
            event_type=row.event_type,
            user_id=strawberry.ID(row.user_id),
            channel=Channel(row.channel),
            error=row.error,
            attempts=row.attempts,
            dead_at=row.created_at,
        )


@strawberry.type
class DeadLetterEdge:
    cursor: str
    node: DeadLetter


@strawberry.type
class DeadLetterConnection:
    edges: list[DeadLetterEdge]
    page_info: PageInfo


@strawberry.type
class DeadLettersRetried:
    retried: list[strawberry.ID]
    not_found: list[strawberry.ID] = strawberry.field(
        description="Ids that are not dead letters (never were, or already replayed)."
    )


RetryDeadLettersResult = Annotated[
    DeadLettersRetried | ValidationError | UnauthenticatedError | ForbiddenError | UnavailableError,
    strawberry.union("RetryDeadLettersResult"),
]


@strawberry.type(description="How often a digested event type reaches you.")
class DigestCadence:
    event_type: str
    cadence: str = strawberry.field(description="instant, hourly, daily (09:00) or weekly.")


@strawberry.input
class DigestCadenceInput:
    event_type: str
    cadence: str = strawberry.field(description="instant, hourly, daily (09:00) or weekly.")


@strawberry.type(description="A daily window when non-critical messages wait until it ends.")
class QuietHours:
    start: str = strawberry.field(description="HH:MM in the user's time zone.")
    end: str = strawberry.field(description="HH:MM; before `start` means the next day.")


@strawberry.input
class QuietHoursInput:
    start: str = strawberry.field(description="HH:MM, e.g. 22:00.")
    end: str = strawberry.field(description="HH:MM, e.g. 07:30.")


@strawberry.type(description="A user's opt-outs and quiet hours. Critical event types ignore them.")
class Preferences:
    user_id: strawberry.ID
    disabled_channels: list[Channel]
    disabled_event_types: list[str]
    quiet_hours: QuietHours | None
    timezone: str | None = strawberry.field(description="IANA zone for quiet hours; UTC if null.")
    digest_cadence: list[DigestCadence] = strawberry.field(
        description="Your own digest cadence per digested event type."
    )


@strawberry.input
class PreferencesInput:
    user_id: strawberry.ID | None = strawberry.field(
        default=None, description="Someone else's (admins only); yours when left out."
    )
    disabled_channels: list[Channel] = strawberry.field(default_factory=list)
    disabled_event_types: list[str] = strawberry.field(default_factory=list)
    quiet_hours: QuietHoursInput | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: unchanged; null: no quiet hours."
    )
    timezone: str | None = strawberry.field(
        default=strawberry.UNSET, description="Left out: unchanged; null: UTC."
    )
    digest_cadence: list[DigestCadenceInput] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Left out: unchanged; given: replaces the list (an empty list clears it).",
    )


PreferencesResult = Annotated[
    Preferences | ValidationError | UnauthenticatedError | ForbiddenError | UnavailableError,
    strawberry.union("PreferencesResult"),
]


@strawberry.input(description="The browser's PushSubscription keys.")
class PushKeysInput:
    p256dh: str
    auth: str


@strawberry.input(description="A browser's PushSubscription.toJSON().")
class PushSubscriptionInput:
    endpoint: str
    keys: PushKeysInput


@strawberry.type
class PushSubscriptionSaved:
    endpoint: str


PushSubscriptionResult = Annotated[
    PushSubscriptionSaved
    | ValidationError
    | UnauthenticatedError
    | ForbiddenError
    | UnavailableError,
    strawberry.union("PushSubscriptionResult"),
]


@strawberry.type(
    description=(
        "At most `maxDeliveries` non-critical deliveries per user on `channel` every "
        "`windowSeconds`, all event types and campaigns together; the rest are skipped."
    )
)
class DeliveryBudget:
    channel: Channel
    max_deliveries: int
    window_seconds: int
    updated_by: str | None
    updated_at: datetime


@strawberry.input
class DeliveryBudgetInput:
    channel: Channel
    max_deliveries: int
    window_seconds: int


DeliveryBudgetResult = Annotated[
    DeliveryBudget | ValidationError | UnauthenticatedError | ForbiddenError | UnavailableError,
    strawberry.union("DeliveryBudgetResult"),
]


@strawberry.type
class DeliveryBudgetRemoved:
    channel: Channel
    removed: bool = strawberry.field(description="False when the channel had no budget.")


RemoveDeliveryBudgetResult = Annotated[
    DeliveryBudgetRemoved | UnauthenticatedError | ForbiddenError | UnavailableError,
    strawberry.union("RemoveDeliveryBudgetResult"),
]
