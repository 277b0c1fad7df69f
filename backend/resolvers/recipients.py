"""Recipient resolvers: profiles and addresses Herald keeps, and the sync from the auth service."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import strawberry
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import Principal
from backend.config import Environment
from backend.errors import HeraldError, ValidationError
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.errors import Error, error_type_for
from backend.schema.recipients import (
    AddressInput,
    AddressRemoved,
    IdentifyRecipientInput,
    IdentifyRecipientResult,
    Recipient,
    RecipientAddress,
    RecipientConnection,
    RecipientSync,
    RegisterAddressResult,
    RemoveAddressResult,
    SyncRecipientsResult,
)
from backend.services import recipients as recipient_service
from backend.services.users import evict_cached_profiles

Info = strawberry.Info[Context, Any]
log = logging.getLogger(__name__)


def _address(value: AddressInput, *, allow_http: bool) -> recipient_service.AddressInput:
    if value.web_push:
        push = value.web_push
        return recipient_service.web_push_address(
            endpoint=push.endpoint,
            p256dh=push.keys.p256dh,
            auth=push.keys.auth,
            allow_http=allow_http,
            field_prefix="webPush.",
        )
    if value.mobile_push:
        return recipient_service.mobile_push_address(
            platform=value.mobile_push.platform.value, token=value.mobile_push.token
        )
    if value.webhook:
        return recipient_service.webhook_address(url=value.webhook.url, allow_http=allow_http)
    assert value.chat  # one_of: exactly one field is given
    return recipient_service.chat_address(provider=value.chat.provider, chat_id=value.chat.chat_id)


def _custom(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("custom is a JSON object", field="custom")
    return value


def _allow_http(info: Info) -> bool:
    return info.context.settings.environment is not Environment.PRODUCTION


@strawberry.field(
    description="What Herald keeps of a user (admins and managers: anyone; users: themselves)."
)
async def recipient(info: Info, user_id: strawberry.ID) -> Recipient | None:
    async def work(session: AsyncSession, actor: Principal) -> Recipient | None:
        view = await recipient_service.get_recipient(session, actor=actor, user_id=str(user_id))
        return Recipient.from_view(view) if view is not None else None

    return await read(info, None, work)


@strawberry.field(
    description="Recipients by user id; `search` matches the id, email or name. "
    "Admins and managers."
)
async def recipients(
    info: Info, search: str | None = None, first: int = 20, after: str | None = None
) -> RecipientConnection:
    async def work(session: AsyncSession, _: Principal) -> RecipientConnection:
        page = await recipient_service.list_recipients(
            session, search=search, first=first, after=after
        )
        return RecipientConnection.from_page(page, Recipient.from_view)

    return await read(info, recipient_service.READERS, work)


@strawberry.field(description="A recipient sync job and its progress. Admins, managers, services.")
async def recipient_sync(info: Info, id: strawberry.ID) -> RecipientSync | None:
    async def work(session: AsyncSession, _: Principal) -> RecipientSync | None:
        row = await recipient_service.get_sync(session, str(id))
        if row is None:
            return None
        return RecipientSync.from_model(
            row, stall_seconds=info.context.settings.recipient_sync_stall_seconds
        )

    return await read(info, recipient_service.READERS | recipient_service.WRITERS, work)


@strawberry.mutation(
    description="Create or update a recipient: the given fields change, the others stay; "
    "addresses given are added. Services and admins."
)
async def identify_recipient(info: Info, input: IdentifyRecipientInput) -> IdentifyRecipientResult:
    allow_http = _allow_http(info)

    async def work(session: AsyncSession, _: Principal) -> Recipient:
        profile = recipient_service.ProfileInput(
            email=input.email,
            first_name=input.first_name,
            last_name=input.last_name,
            phone=input.phone,
            locale=input.locale,
            timezone=input.timezone,
            custom=_custom(input.custom),
        )
        view = await recipient_service.identify_recipient(
            session,
            user_id=str(input.user_id),
            profile=profile,
            addresses=[_address(a, allow_http=allow_http) for a in input.addresses],
        )
        return Recipient.from_view(view)

    result = await mutate(info, recipient_service.WRITERS, work)
    if isinstance(result, Recipient):
        # After the commit: a profile cached before it would hide the change until its TTL.
        try:
            await evict_cached_profiles(info.context.services.clients.redis, [str(input.user_id)])
        except RedisError as exc:
            log.warning("identifyRecipient: the cached profile stays until its TTL (%s)", exc)
    return result  # type: ignore[return-value]


@strawberry.mutation(
    description="Register an address (a browser's push subscription, a device token, a chat) "
    "for the caller, the user of the token."
)
async def register_address(info: Info, input: AddressInput) -> RegisterAddressResult:
    allow_http = _allow_http(info)

    async def work(session: AsyncSession, actor: Principal) -> RecipientAddress:
        row = await recipient_service.register_address(
            session, actor=actor, address=_address(input, allow_http=allow_http)
        )
        return RecipientAddress.from_model(row)

    return await mutate(info, None, work)  # type: ignore[return-value]


@strawberry.mutation(description="Remove one of the caller's addresses.")
async def remove_address(info: Info, id: strawberry.ID) -> RemoveAddressResult:
    async def work(session: AsyncSession, actor: Principal) -> AddressRemoved:
        await recipient_service.remove_address(session, actor=actor, address_id=str(id))
        return AddressRemoved(id=id)

    return await mutate(info, None, work)  # type: ignore[return-value]


@strawberry.mutation(
    description="Start importing the auth service's user list into recipients, in the "
    "background; poll `recipientSync(id)` for its progress. A job that stalled (its worker "
    "died: no page committed for `HERALD_RECIPIENT_SYNC_STALL_SECONDS`) is resumed from its "
    "last committed page and returned instead of starting a new one. Services and admins."
)
async def sync_recipients(info: Info) -> SyncRecipientsResult:
    async def work(session: AsyncSession, actor: Principal) -> RecipientSync:
        row = await recipient_service.request_sync(
            session,
            actor=actor,
            stall_seconds=info.context.settings.recipient_sync_stall_seconds,
        )
        return RecipientSync.from_model(
            row, stall_seconds=info.context.settings.recipient_sync_stall_seconds
        )

    result = await mutate(info, recipient_service.WRITERS, work)
    if isinstance(result, Error):
        return result  # type: ignore[return-value]
    services = info.context.services
    sync_id = uuid.UUID(str(result.id))
    try:
        await recipient_service.queue_sync(services.clients.broker, sync_id)
    except HeraldError as exc:
        log.warning("a recipient sync could not be queued: %s", exc)
        async with services.sessionmaker() as session:
            await recipient_service.fail_sync(session, sync_id=sync_id, error=exc.message)
            await session.commit()
        return error_type_for(exc)  # type: ignore[return-value]
    return result


Query = create_type("Query", [recipient, recipients, recipient_sync])
Mutation = create_type(
    "Mutation", [identify_recipient, register_address, remove_address, sync_recipients]
)
