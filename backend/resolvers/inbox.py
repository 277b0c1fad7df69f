"""Resolvers for the inbox and the live streams (graphql-transport-ws subscriptions)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocket, WebSocketState
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.resolvers.units import mutate, read
from backend.schema.context import Context
from backend.schema.inbox import (
    DeliveryUpdate,
    DeliveryUpdateFilter,
    InboxChange,
    InboxChangeResult,
    InboxUpdate,
    Notification,
    NotificationConnection,
    ReadStateChange,
)
from backend.services import inbox as inbox_service
from backend.services.inbox import InboxEntry
from backend.services.live import (
    DeliveryChange,
    InboxStream,
    ReadChange,
    delivery_changes,
)

Info = strawberry.Info[Context, Any]


@strawberry.field(
    description=(
        "Your in-app notifications, newest first: the unarchived ones, or with `archived` "
        "the archived ones only."
    )
)
async def inbox(
    info: Info,
    first: int = 20,
    after: str | None = None,
    unread_only: bool = False,
    archived: bool = False,
) -> NotificationConnection:
    async def work(session: AsyncSession, actor: Principal) -> NotificationConnection:
        # The position first: an item stored between the two reads is then after it (and
        # replayed from it) even if the page leaves it out.
        position = await inbox_service.inbox_position(session, user_id=actor.user_id)
        page = await inbox_service.list_inbox(
            session,
            user_id=actor.user_id,
            first=first,
            after=after,
            unread_only=unread_only,
            archived=archived,
            tenant_id=actor.tenant_id,
        )
        return NotificationConnection.from_page(page, Notification.from_entry, position=position)

    return await read(info, None, work)


@strawberry.field(description="Your unread, unarchived notifications.")
async def unread_count(info: Info) -> int:
    async def work(session: AsyncSession, actor: Principal) -> int:
        return await inbox_service.unread_count(
            session, user_id=actor.user_id, tenant_id=actor.tenant_id
        )

    return await read(info, None, work)


async def _change(
    info: Info, ids: list[strawberry.ID] | None, *, archive: bool = False
) -> InboxChangeResult:
    published: list[tuple[str, ReadChange]] = []

    async def work(session: AsyncSession, actor: Principal) -> InboxChange:
        id_list = None if ids is None else [str(i) for i in ids]
        user_id, tenant_id = actor.user_id, actor.tenant_id
        if archive:
            assert id_list is not None
            changed = await inbox_service.archive(
                session, user_id=user_id, ids=id_list, tenant_id=tenant_id
            )
        else:
            changed = await inbox_service.mark_read(
                session, user_id=user_id, ids=id_list, tenant_id=tenant_id
            )
        if changed:
            published.append(
                (actor.user_id, ReadChange(changed, not archive, archive, actor.tenant_id))
            )
        count = await inbox_service.unread_count(session, user_id=user_id, tenant_id=tenant_id)
        return InboxChange(ids=[strawberry.ID(i) for i in changed], unread_count=count)

    result = await mutate(info, None, work)
    if published:  # only after the commit: other devices must see what is stored
        await info.context.services.clients.live.publish_many(published)
    return result  # type: ignore[return-value]


@strawberry.mutation(
    description="Mark your notifications read; your other open subscriptions are told."
)
async def mark_read(info: Info, ids: list[strawberry.ID]) -> InboxChangeResult:
    return await _change(info, ids)


@strawberry.mutation(description="Mark all your notifications read.")
async def mark_all_read(info: Info) -> InboxChangeResult:
    return await _change(info, None)


@strawberry.mutation(description="Archive your notifications.")
async def archive(info: Info, ids: list[strawberry.ID]) -> InboxChangeResult:
    return await _change(info, ids, archive=True)


async def close_socket(context: Context, code: int, reason: str) -> None:
    """Close the subscription's WebSocket with an application close code, if still open."""
    socket = context.request
    if isinstance(socket, WebSocket) and socket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):  # already closing
            await socket.close(code=code, reason=reason)


async def open_inbox_stream(context: Context, since: str | None) -> InboxStream:
    """The caller's inbox stream from ``since``, opened (see ``InboxStream.open``)."""
    services = context.services
    return await InboxStream.open(
        services.clients.live_hub,
        sessionmaker=services.sessionmaker,
        sequences=services.clients.inbox_sequences,
        principal=context.principal(),
        since=since,
    )


@strawberry.subscription(
    description=(
        "Your in-app notifications, live. With `since` (the cursor of the last item you "
        "saw), missed items come first, in order; then live ones. Read-state changes from "
        "your other devices arrive as ReadStateChange."
    )
)
async def notifications(info: Info, since: str | None = None) -> AsyncGenerator[InboxUpdate, None]:
    """The caller's in-app notifications, live. With ``since``, what was missed after that
    cursor comes first, in order, then the live ones, with nothing lost or doubled."""
    stream = await open_inbox_stream(info.context, since)
    try:
        async for update in stream.updates(functools.partial(close_socket, info.context)):
            if isinstance(update, InboxEntry):
                yield Notification.from_entry(update)
            else:
                yield ReadStateChange(
                    ids=[strawberry.ID(i) for i in update.ids],
                    read=update.read,
                    archived=update.archived,
                )
    finally:
        await stream.aclose()


def _matches(change: DeliveryChange, f: DeliveryUpdateFilter | None) -> bool:
    if f is None:
        return True
    checks = (
        (f.event_id, change.event_id),
        (f.campaign_id, change.campaign_id),
        (f.user_id, change.user_id),
        (f.channel, change.channel),
        (f.status, change.status),
    )
    return all(want is None or str(want) == str(got) for want, got in checks)


@strawberry.subscription(description="Delivery status changes as they happen (managers).")
async def delivery_updates(
    info: Info, filter: DeliveryUpdateFilter | None = None
) -> AsyncGenerator[DeliveryUpdate, None]:
    """Delivery status changes as they happen, for managers."""
    principal = info.context.require(MANAGE_TEMPLATES, tenant_scoped=True)
    changes = delivery_changes(
        info.context.services.clients.live_hub,
        principal,
        functools.partial(close_socket, info.context),
        wanted=functools.partial(_matches, f=filter),
    )
    async with contextlib.aclosing(changes):
        async for change in changes:
            yield DeliveryUpdate.from_change(change)


Query = create_type("Query", [inbox, unread_count])
Mutation = create_type("Mutation", [mark_read, mark_all_read, archive])
Subscription = create_type("Subscription", [notifications, delivery_updates])
