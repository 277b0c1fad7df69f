"""GraphQL types and inputs for a user's preferences and push subscriptions."""

from __future__ import annotations

from typing import Annotated

import strawberry

from backend.channels import Channel
from backend.schema.errors import (
    AccessErrors,
    NotFoundError,
    ValidationError,
)


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
    disabled_topics: list[str] = strawberry.field(
        description=(
            "Topics you opted out of: what reaches you only through them is skipped "
            "(messages sent to you by id still arrive)."
        )
    )
    tenant_id: str | None = strawberry.field(
        description=(
            "Null: your own preferences, everywhere. A tenant: the opt-outs (channels, event "
            "types, topics) you made within it, honoured for its events on top of your own; "
            "quiet hours, time zone and digest cadence are always your own."
        )
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
    disabled_topics: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="Topic keys to opt out of. Left out: unchanged; given: replaces the list.",
    )
    tenant_id: str | None = strawberry.field(
        default=None,
        description=(
            "The opt-outs within this tenant (a caller bound to a tenant: always its own); "
            "your own, everywhere, when left out."
        ),
    )


PreferencesResult = Annotated[
    Preferences | ValidationError | NotFoundError | AccessErrors,
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
    PushSubscriptionSaved | ValidationError | AccessErrors,
    strawberry.union("PushSubscriptionResult"),
]
