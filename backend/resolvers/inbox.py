"""Resolvers for the inbox and the live streams (graphql-transport-ws subscriptions)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocket, WebSocketState

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.db.repositories.inbox import InboxRepository
from backend.observability import metrics
from backend.realtime import LiveHub, Subscriber
from backend.resolvers.units import mutate, read
from backend.schema.common import PageInfo
from backend.schema.context import Context
from backend.schema.inbox import (
    DeliveryUpdate,
    DeliveryUpdateFilter,
    InboxChange,
    InboxChangeResult,
    InboxUpdate,
    Notification,
    NotificationConnection,
    NotificationEdge,
    ReadStateChange,
)
from backend.services import inbox as inbox_service
from backend.services.inbox import InboxEntry, RedisLivePublisher

Info = strawberry.Info[Context, Any]
log = logging.getLogger(__name__)

# Close codes a client can act on (4000-4999 are the application's).
CLOSE_SLOW_CONSUMER = 4008  # too far behind: reconnect with `since` = the last cursor seen
CLOSE_TOKEN_EXPIRED = 4403  # as for any refused token: get a fresh one, then reconnect
REPLAY_PAGE = 500


async def inbox(
    info: Info, first: int = 20, after: str | None = None, unread_only: bool = False
) -> NotificationConnection:
    async def work(session: AsyncSession, actor: Principal) -> NotificationConnection:
        page = await inbox_service.list_inbox(
            session, user_id=actor.user_id, first=first, after=after, unread_only=unread_only
        )
        return NotificationConnection(
            edges=[
                NotificationEdge(cursor=c, node=Notification.from_entry(e)) for c, e in page.items
            ],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    return await read(info, None, work)


async def unread_count(info: Info) -> int:
    async def work(session: AsyncSession, actor: Principal) -> int:
        return await inbox_service.unread_count(session, user_id=actor.user_id)

    return await read(info, None, work)


async def _change(info: Info, action: str, ids: list[strawberry.ID] | None) -> InboxChangeResult:
    published: list[tuple[str, dict[str, Any]]] = []

    async def work(session: AsyncSession, actor: Principal) -> InboxChange:
        id_list = None if ids is None else [str(i) for i in ids]
        if action == "archive":
            assert id_list is not None
            changed, message = await inbox_service.archive(
                session, user_id=actor.user_id, ids=id_list
            )
        else:
            changed, message = await inbox_service.mark_read(
                session, user_id=actor.user_id, ids=id_list
            )
        if message is not None:
            published.append((actor.user_id, message))
        count = await inbox_service.unread_count(session, user_id=actor.user_id)
        return InboxChange(ids=[strawberry.ID(i) for i in changed], unread_count=count)

    result = await mutate(info, None, work)
    if published:  # only after the commit: other devices must see what is stored
        live = RedisLivePublisher(info.context.services.clients.redis)
        await live.publish_many(published)
    return result  # type: ignore[return-value]


async def mark_read(info: Info, ids: list[strawberry.ID]) -> InboxChangeResult:
    return await _change(info, "read", ids)


async def mark_all_read(info: Info) -> InboxChangeResult:
    return await _change(info, "read", None)


async def archive(info: Info, ids: list[strawberry.ID]) -> InboxChangeResult:
    return await _change(info, "archive", ids)


Closer = Callable[[int, str], Awaitable[None]]


async def close_socket(context: Context, code: int, reason: str) -> None:
    """Close the subscription's WebSocket with an application close code, if still open."""
    socket = context.request
    if isinstance(socket, WebSocket) and socket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):  # already closing
            await socket.close(code=code, reason=reason)


def _seconds_left(principal: Principal) -> float:
    if principal.expires_at is None:
        return 3600.0
    return (principal.expires_at - datetime.now(UTC)).total_seconds()


async def _next_message(
    close: Closer, principal: Principal, subscriber: Subscriber
) -> dict[str, Any] | None:
    """The subscriber's next live message, or None once the socket is closed: when the token
    expires (4403) or when the subscriber fell too far behind (4008, resume with a cursor)."""
    while True:
        left = _seconds_left(principal)
        if left <= 0:
            await close(CLOSE_TOKEN_EXPIRED, "token expired")
            return None
        message = await subscriber.next(left)
        if message is None:
            continue
        if message.get("type") == "overflow":
            await close(CLOSE_SLOW_CONSUMER, "too slow: resume from your last cursor")
            return None
        return message


class SequenceReader:
    """Users' newest inbox sequence numbers, read for many subscriptions at once.

    Each ``notifications`` subscription reads its user's newest sequence number as it opens.
    One query each, thousands of sockets subscribing together (clients reconnecting, a
    benchmark) queued for the database: on two cores 3,000 subscriptions took seconds longer
    to open than their sockets, and those still opening when a broadcast was stored started
    after it and never saw it. Reads asked for in the same moment share one query (up to
    ``BATCH`` users); one batch is read at a time, and the next one gathers meanwhile.
    """

    BATCH = 1000

    def __init__(self) -> None:
        # By session factory (tests give subscriptions their own), then by user.
        self._waiting: dict[Any, dict[str, list[asyncio.Future[int]]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def last_seq(self, sessionmaker: Any, user_id: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(sessionmaker, {}).setdefault(user_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read())
        return await future

    async def _read(self) -> None:
        await asyncio.sleep(0)  # let the other subscriptions of this moment join the batch
        while self._waiting:
            sessionmaker, users = next(iter(self._waiting.items()))
            batch = dict(itertools.islice(users.items(), self.BATCH))
            for user_id in batch:
                del users[user_id]
            if not users:
                del self._waiting[sessionmaker]
            try:
                async with sessionmaker() as session:
                    seqs = await InboxRepository(session).last_seqs(list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for user_id, futures in batch.items():
                for future in futures:
                    if not future.done():  # not cancelled (the socket went away)
                        future.set_result(seqs[user_id])


@dataclass(eq=False, slots=True)
class ReadChange:
    """Items read or archived on one of the user's devices."""

    ids: list[str]
    read: bool
    archived: bool


@dataclass(eq=False, slots=True)
class InboxStream:
    """One user's live notifications, opened: the caller is checked, the starting point known
    and the user's channel subscribed, so that everything that can be refused has been.

    ``updates()`` yields the stored items missed since the starting point, in order, then the
    live ones, with nothing lost or doubled at the seam. Both the GraphQL resolver and the
    WebSocket fast path (backend/live_socket.py) read it.
    """

    hub: LiveHub
    sessionmaker: Any
    principal: Principal
    subscriber: Subscriber
    last: int
    # Whether items may have been stored after ``last`` before the subscription was in place
    # (always with ``since``): the stream reads them first.
    replay: bool = True
    closed: bool = False

    @classmethod
    async def open(cls, context: Context, since: str | None) -> InboxStream:
        principal = context.principal()
        hub: LiveHub = context.services.clients.live_hub
        sessionmaker = context.services.sessionmaker
        after = inbox_service.decode_inbox_cursor(since, field="since")
        sequences: SequenceReader = context.services.clients.inbox_sequences
        if after is None:
            # Without `since` the stream starts after the newest item stored now. Read before
            # subscribing: an item stored in between is then both replayed and seen live, and
            # the sequence check drops the double; read after, it could be skipped as seen.
            after = await sequences.last_seq(sessionmaker, principal.user_id)
            subscriber = await hub.subscribe_user(principal.user_id)
            # Nothing stored while subscribing (the usual case): nothing to replay.
            try:
                replay = await sequences.last_seq(sessionmaker, principal.user_id) != after
            except BaseException:
                await hub.unsubscribe(subscriber)
                raise
        else:
            # Subscribe before reading what was missed, so an item stored in between is seen
            # live.
            subscriber = await hub.subscribe_user(principal.user_id)
            replay = True
        metrics.subscription_opened()
        return cls(hub, sessionmaker, principal, subscriber, after, replay)

    async def _missed(self, until: int | None = None) -> list[InboxEntry]:
        # A reconnect storm (an API restart, a Redis drop) must queue for the database, not
        # exhaust its pool and fail subscriptions: replays take turns.
        async with self.hub.replay_slots, self.sessionmaker() as session:
            return await inbox_service.missed_items(
                session,
                user_id=self.principal.user_id,
                after_seq=self.last,
                limit=REPLAY_PAGE,
                until_seq=until,
            )

    async def updates(self, close: Closer) -> AsyncGenerator[InboxEntry | ReadChange, None]:
        """Its owner closes the stream (``aclose``) when done with it."""
        while self.replay:  # the replay, page by page
            entries = await self._missed()
            for entry in entries:
                yield entry
                self.last = entry.seq
            if len(entries) < REPLAY_PAGE:
                break
        principal, subscriber = self.principal, self.subscriber
        while (message := await _next_message(close, principal, subscriber)) is not None:
            kind = message.get("type")
            if kind == "resync" or (kind == "notification" and int(message["seq"]) > self.last + 1):
                # After a Redis drop, or a hole before this item: read what is stored.
                until = int(message["seq"]) if kind == "notification" else None
                for entry in await self._missed(until):
                    yield entry
                    self.last = entry.seq
            if kind == "notification":
                if int(message["seq"]) <= self.last:
                    continue  # already sent by the replay
                entry = InboxEntry.from_message(principal.user_id, message)
                yield entry
                self.last = entry.seq
            elif kind in ("read", "archived"):
                yield ReadChange(
                    [str(i) for i in message["ids"]], kind == "read", kind == "archived"
                )

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            metrics.subscription_closed()
            await self.hub.unsubscribe(self.subscriber)


async def notifications(info: Info, since: str | None = None) -> AsyncGenerator[InboxUpdate, None]:
    """The caller's in-app notifications, live. With ``since``, what was missed after that
    cursor comes first, in order, then the live ones, with nothing lost or doubled."""
    stream = await InboxStream.open(info.context, since)
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


def _matches(item: dict[str, Any], f: DeliveryUpdateFilter | None) -> bool:
    if f is None:
        return True
    checks = (
        (f.event_id, item["event_id"]),
        (f.campaign_id, item.get("campaign_id")),
        (f.user_id, item["user_id"]),
        (f.channel.value if f.channel else None, item["channel"]),
        (f.status.value if f.status else None, item["status"]),
    )
    return all(want is None or str(want) == str(got) for want, got in checks)


async def delivery_updates(
    info: Info, filter: DeliveryUpdateFilter | None = None
) -> AsyncGenerator[DeliveryUpdate, None]:
    """Delivery status changes as they happen, for managers."""
    principal = info.context.require(MANAGE_TEMPLATES)
    hub: LiveHub = info.context.services.clients.live_hub
    subscriber: Subscriber = await hub.subscribe_deliveries()
    metrics.subscription_opened()
    try:
        close = functools.partial(close_socket, info.context)
        while (message := await _next_message(close, principal, subscriber)) is not None:
            for item in message.get("items", ()):
                if _matches(item, filter):
                    yield DeliveryUpdate(
                        id=strawberry.ID(item["id"]),
                        event_id=strawberry.ID(item["event_id"]),
                        event_type=item["event_type"],
                        campaign_id=strawberry.ID(item["campaign_id"])
                        if item.get("campaign_id")
                        else None,
                        user_id=strawberry.ID(item["user_id"]),
                        channel=Channel(item["channel"]),
                        status=DeliveryStatus(item["status"]),
                        at=datetime.fromisoformat(item["at"]),
                        reason=item.get("reason"),
                    )
    finally:
        metrics.subscription_closed()
        await hub.unsubscribe(subscriber)


@strawberry.type
class Query:
    inbox: NotificationConnection = strawberry.field(
        resolver=inbox,
        description="Your in-app notifications, newest first (archived ones left out).",
    )
    unread_count: int = strawberry.field(
        resolver=unread_count, description="Your unread, unarchived notifications."
    )


@strawberry.type
class Mutation:
    mark_read: InboxChangeResult = strawberry.field(
        resolver=mark_read,
        description="Mark your notifications read; your other open subscriptions are told.",
    )
    mark_all_read: InboxChangeResult = strawberry.field(
        resolver=mark_all_read, description="Mark all your notifications read."
    )
    archive: InboxChangeResult = strawberry.field(
        resolver=archive, description="Archive your notifications."
    )


@strawberry.type
class Subscription:
    notifications: AsyncGenerator[InboxUpdate, None] = strawberry.subscription(
        resolver=notifications,
        description=(
            "Your in-app notifications, live. With `since` (the cursor of the last item you "
            "saw), missed items come first, in order; then live ones. Read-state changes from "
            "your other devices arrive as ReadStateChange."
        ),
    )
    delivery_updates: AsyncGenerator[DeliveryUpdate, None] = strawberry.subscription(
        resolver=delivery_updates,
        description="Delivery status changes as they happen (managers).",
    )
