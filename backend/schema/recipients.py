"""GraphQL types and inputs for recipients, their addresses and sync jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Annotated

import strawberry

from backend.db.models import RecipientAddress as AddressRow
from backend.db.models import RecipientSync as SyncRow
from backend.schema.common import JSON, Connection
from backend.schema.errors import AccessErrors, NotFoundError, ValidationError
from backend.schema.preferences import PushSubscriptionInput
from backend.services import recipients as recipient_service

# The services' enums, published as they are (strawberry.enum marks the class itself).
AddressKind = recipient_service.AddressKind
RecipientSyncStatus = recipient_service.SyncStatus
strawberry.enum(AddressKind, description="What an address reaches.")
strawberry.enum(
    RecipientSyncStatus, name="RecipientSyncStatus", description="Where a recipient sync job is."
)


@strawberry.enum(description="Whether sends use an address.")
class AddressState(Enum):
    ACTIVE = "ACTIVE"
    DISABLED = strawberry.enum_value(
        "DISABLED", description="The provider said it is gone (e.g. a 410 from a push service)."
    )


@strawberry.enum(description="A mobile device's platform.")
class MobilePlatform(Enum):
    IOS = "ios"
    ANDROID = "android"


@strawberry.type(description="A channel address Herald keeps for a user.")
class RecipientAddress:
    id: strawberry.ID
    kind: AddressKind
    platform: str | None = strawberry.field(description="ios or android, for MOBILE_PUSH.")
    provider: str | None = strawberry.field(description="The chat service, for CHAT.")
    display_value: str = strawberry.field(
        description="What may be shown of the address: never a push endpoint's path or a "
        "whole device token."
    )
    state: AddressState
    disabled_reason: str | None = strawberry.field(description="What the provider answered.")
    disabled_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_model(cls, row: AddressRow) -> RecipientAddress:
        mobile = row.kind == AddressKind.MOBILE_PUSH.value
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=AddressKind(row.kind),
            platform=row.provider if mobile else None,
            provider=row.provider if row.kind == AddressKind.CHAT.value else None,
            display_value=recipient_service.display_value(row),
            state=AddressState(row.state),
            disabled_reason=row.disabled_reason,
            disabled_at=row.disabled_at,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
        )


@strawberry.type(description="What Herald keeps of a user: profile fields and addresses.")
class Recipient:
    user_id: strawberry.ID
    email: str | None
    first_name: str
    last_name: str
    phone: str | None
    locale: str | None
    timezone: str | None
    source: str = strawberry.field(
        description="auth (the auth service), identify (a service) or address (only an "
        "address is known yet; the profile is fetched on first use)."
    )
    refreshed_at: datetime | None = strawberry.field(
        description="When the profile last came from its source; null: not yet."
    )
    updated_at: datetime
    addresses: list[RecipientAddress]

    @classmethod
    def from_view(cls, view: recipient_service.RecipientView) -> Recipient:
        row = view.row
        return cls(
            user_id=strawberry.ID(row.user_id),
            email=row.email,
            first_name=row.first_name,
            last_name=row.last_name,
            phone=row.phone,
            locale=row.locale,
            timezone=row.timezone,
            source=row.source,
            refreshed_at=row.refreshed_at,
            updated_at=row.updated_at,
            addresses=[RecipientAddress.from_model(a) for a in view.addresses],
        )


@strawberry.type(description="A page of recipients, ordered by user id.")
class RecipientConnection(Connection[Recipient]):
    pass


@strawberry.type(description="An import of the auth service's user list into recipients.")
class RecipientSync:
    id: strawberry.ID
    status: RecipientSyncStatus
    pages_done: int
    recipients_synced: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = strawberry.field(
        description="When the job's runner last committed a page (or took the job)."
    )
    resumes: int = strawberry.field(
        description="How many times the job was taken over from a runner that died or stalled, "
        "going on from its last committed page."
    )
    stalled: bool = strawberry.field(
        description="RUNNING, but no page committed for `HERALD_RECIPIENT_SYNC_STALL_SECONDS`: "
        "its worker died or hangs. `syncRecipients` resumes it."
    )

    @classmethod
    def from_model(cls, row: SyncRow, *, stall_seconds: float) -> RecipientSync:
        return cls(
            id=strawberry.ID(str(row.id)),
            status=RecipientSyncStatus(row.status),
            pages_done=row.pages_done,
            recipients_synced=row.recipients_synced,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            heartbeat_at=row.heartbeat_at,
            resumes=row.resumes,
            stalled=recipient_service.is_stalled(
                row, now=datetime.now(UTC), stall_seconds=stall_seconds
            ),
        )


@strawberry.input(description="A mobile device's push token.")
class MobilePushInput:
    platform: MobilePlatform
    token: str


@strawberry.input(description="A chat the user is reached in.")
class ChatAddressInput:
    provider: str = strawberry.field(description="slack, telegram, teams, discord or mattermost.")
    chat_id: str


@strawberry.input(description="A URL the webhook channel posts the user's messages to, signed.")
class WebhookAddressInput:
    url: str


@strawberry.input(description="One address: exactly one of the fields.", one_of=True)
class AddressInput:
    web_push: PushSubscriptionInput | None = strawberry.UNSET
    mobile_push: MobilePushInput | None = strawberry.UNSET
    chat: ChatAddressInput | None = strawberry.UNSET
    webhook: WebhookAddressInput | None = strawberry.UNSET


@strawberry.input(description="Profile fields to set; those left out stay as they are.")
class IdentifyRecipientInput:
    user_id: strawberry.ID
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = strawberry.field(default=None, description="E.164, e.g. +4915112345678.")
    locale: str | None = None
    timezone: str | None = strawberry.field(default=None, description="IANA, e.g. Europe/Berlin.")
    custom: JSON | None = strawberry.field(default=None, description="Replaces the custom data.")
    addresses: list[AddressInput] = strawberry.field(
        default_factory=list, description="Addresses to add for the user."
    )


@strawberry.type
class AddressRemoved:
    id: strawberry.ID


IdentifyRecipientResult = Annotated[
    Recipient | ValidationError | AccessErrors, strawberry.union("IdentifyRecipientResult")
]
RegisterAddressResult = Annotated[
    RecipientAddress | ValidationError | AccessErrors, strawberry.union("RegisterAddressResult")
]
RemoveAddressResult = Annotated[
    AddressRemoved | NotFoundError | ValidationError | AccessErrors,
    strawberry.union("RemoveAddressResult"),
]
SyncRecipientsResult = Annotated[
    RecipientSync | AccessErrors, strawberry.union("SyncRecipientsResult")
]
