"""Live messages: what tells a user's open subscriptions about new inbox items and read-state
changes, and the managers' feed about delivery status changes.

Everything the live path shares lives here: one class per message kind with its wire encoding
(JSON on Redis pub/sub, keys in a fixed order), the Redis channel names, the publisher the
workers and mutations use, and the inbox stream a ``notifications`` subscription reads (the
GraphQL resolver and the WebSocket fast path alike). The API's transport, one Redis pub/sub
connection per process, is backend.realtime.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from backend.auth import Principal
from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.observability import metrics
from backend.services import inbox as inbox_service
from backend.services.inbox import InboxEntry

if TYPE_CHECKING:
    from backend.realtime import LiveHub, Subscriber

log = logging.getLogger(__name__)

# Close codes a client can act on (4000-4999 are the application's).
CLOSE_SLOW_CONSUMER = 4008  # too far behind: reconnect with `since` = the last cursor seen
CLOSE_TOKEN_EXPIRED = 4403  # as for any refused token: get a fresh one, then reconnect
REPLAY_PAGE = 500


def live_channel(user_id: str | None = None) -> str:
    """The Redis pub/sub channel carrying ``user_id``'s live messages; without a user, the
    managers' delivery feed."""
    return "herald:deliveries" if user_id is None else f"herald:user:{user_id}"


class MalformedLiveMessage(ValueError):
    """Bytes on a live channel that are not a message of a known kind."""


@dataclass(frozen=True, slots=True)
class NewNotification:
    """An item just stored in the user's inbox (wire type ``notification``). Its user is the
    channel's, so the wire leaves ``user_id`` out."""

    KIND: ClassVar[str] = "notification"

    entry: InboxEntry

    def to_wire(self) -> dict[str, Any]:
        e = self.entry
        wire = {
            "type": self.KIND,
            "delivery_id": e.delivery_id,
            "seq": e.seq,
            "event_id": e.event_id,
            "event_type": e.event_type,
            "title": e.title,
            "body": e.body,
            "data": e.data,
            "created_at": e.created_at.isoformat(),
            "read_at": e.read_at.isoformat() if e.read_at else None,
        }
        # Only when there are some: an item without actions keeps the bytes it always had,
        # which API processes of the previous release (during a rolling deploy) read.
        if e.actions:
            wire["actions"] = e.actions
        if e.tenant_id is not None:
            wire["tenant_id"] = e.tenant_id
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any], user_id: str) -> NewNotification:
        read_at = wire.get("read_at")
        entry = InboxEntry(
            delivery_id=wire["delivery_id"],
            user_id=user_id,
            seq=int(wire["seq"]),
            event_id=wire["event_id"],
            event_type=wire["event_type"],
            title=wire.get("title"),
            body=wire.get("body"),
            data=wire.get("data") or {},
            created_at=datetime.fromisoformat(wire["created_at"]),
            actions=wire.get("actions") or [],
            read_at=datetime.fromisoformat(read_at) if read_at else None,
            tenant_id=wire.get("tenant_id"),
        )
        return cls(entry)


@dataclass(frozen=True, slots=True)
class ReadChange:
    """Items read or archived on one of the user's devices (wire type ``read`` or
    ``archived``); exactly one of ``read`` and ``archived`` is true. ``tenant_id``: the tenant
    of the caller that changed them, when bound to one (only that tenant's subscribers hear)."""

    READ: ClassVar[str] = "read"
    ARCHIVED: ClassVar[str] = "archived"

    ids: list[str]
    read: bool
    archived: bool
    tenant_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.READ if self.read else self.ARCHIVED, "ids": self.ids}
        if self.tenant_id is not None:
            wire["tenant_id"] = self.tenant_id
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> ReadChange:
        kind = wire["type"]
        return cls(
            [str(i) for i in wire["ids"]],
            kind == cls.READ,
            kind == cls.ARCHIVED,
            wire.get("tenant_id"),
        )


@dataclass(frozen=True, slots=True)
class DeliveryChange:
    """One delivery's status change, read from the managers' feed."""

    id: str
    event_id: str
    event_type: str
    campaign_id: str | None
    user_id: str
    channel: Channel
    status: DeliveryStatus
    at: datetime
    reason: str | None
    sequence: int | None
    tenant_id: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> DeliveryChange:
        return cls(
            id=item["id"],
            event_id=item["event_id"],
            event_type=item["event_type"],
            campaign_id=item.get("campaign_id") or None,
            user_id=item["user_id"],
            channel=Channel(item["channel"]),
            status=DeliveryStatus(item["status"]),
            at=datetime.fromisoformat(item["at"]),
            reason=item.get("reason"),
            sequence=item.get("sequence"),
            tenant_id=item.get("tenant_id"),
        )


@dataclass(frozen=True, slots=True)
class DeliveryUpdates:
    """Status changes of a batch of deliveries, for the managers' feed (wire type
    ``deliveries``); each item as backend.services.deliveries.records announces it."""

    KIND: ClassVar[str] = "deliveries"

    items: Sequence[dict[str, Any]]

    def changes(self) -> list[DeliveryChange]:
        return [DeliveryChange.from_item(item) for item in self.items]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.KIND, "items": self.items}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> DeliveryUpdates:
        return cls(list(wire.get("items") or ()))


@dataclass(frozen=True, slots=True)
class _Signal:
    """A message the hub gives its subscribers itself; nothing publishes one."""

    KIND: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.KIND}


@dataclass(frozen=True, slots=True)
class Resync(_Signal):
    """The hub's subscription to Redis was (re)made: what was published meanwhile may be lost,
    so the subscriber reads what it missed from the inbox."""

    KIND: ClassVar[str] = "resync"


@dataclass(frozen=True, slots=True)
class Overflow(_Signal):
    """The subscriber fell too far behind; its messages were dropped and its socket is closed
    (the client resumes from its cursor)."""

    KIND: ClassVar[str] = "overflow"


LiveMessage = NewNotification | ReadChange | DeliveryUpdates | Resync | Overflow
RESYNC = Resync()
OVERFLOW = Overflow()

# How each kind but the notification (it needs its channel's user) is read.
_READERS: dict[str, Callable[[dict[str, Any]], LiveMessage]] = {
    ReadChange.READ: ReadChange.from_wire,
    ReadChange.ARCHIVED: ReadChange.from_wire,
    DeliveryUpdates.KIND: DeliveryUpdates.from_wire,
    Resync.KIND: lambda _wire: RESYNC,
    Overflow.KIND: lambda _wire: OVERFLOW,
}


def encode(message: LiveMessage) -> bytes:
    """The message as published on Redis."""
    return orjson.dumps(message.to_wire())


def decode(data: bytes | str, *, user_id: str | None = None) -> LiveMessage:
    """A message read from ``user_id``'s channel (None: the delivery feed);
    ``MalformedLiveMessage`` when it is none of the kinds that channel carries."""
    try:
        wire = orjson.loads(data)
        kind = wire["type"]
        if kind == NewNotification.KIND:
            if user_id is None:
                raise ValueError("a notification outside a user's channel")
            return NewNotification.from_wire(wire, user_id)
        return _READERS[kind](wire)
    except (orjson.JSONDecodeError, LookupError, TypeError, ValueError) as exc:
        raise MalformedLiveMessage(f"not a live message: {exc!r}") from exc


# A batch's messages in one EVALSHA: a pipeline of PUBLISHes cost the worker about 12 µs of
# CPU per message, most of it reading one reply each (500 messages: 6-7 ms against 1.1-1.5 ms).
_PUBLISH_ALL = (
    "for i = 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end return #ARGV / 2"
)
SCRIPT_BATCH = 1000  # messages per script call: no call holds Redis for long


class RedisLivePublisher:
    """PUBLISHes on the user's channel; a lost publish is recovered by the subscription's
    replay from the inbox, so failures are logged, not raised."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._publish_all = redis.register_script(_PUBLISH_ALL)
        self.scripts = True  # False once Redis refused the script: pipelines from then on

    async def publish_delivery_updates(self, updates: Sequence[dict[str, Any]]) -> None:
        """One message for the managers' live feed, with every status change of a batch."""
        if not updates:
            return
        try:
            await self.redis.publish(live_channel(), encode(DeliveryUpdates(updates)))
        except (RedisError, OSError) as exc:
            log.warning("live delivery feed publish failed: %s", exc)

    async def publish_many(self, messages: Sequence[tuple[str, LiveMessage]]) -> None:
        """Each (user id, message) on the user's channel, in order: by a script that
        publishes a whole batch, or, where Redis runs no scripts (ACLs, some managed
        services), in one pipeline."""
        if not messages:
            return
        done = 0
        try:
            while self.scripts and done < len(messages):
                chunk = messages[done : done + SCRIPT_BATCH]
                args: list[str | bytes] = []
                for user_id, message in chunk:
                    args.append(live_channel(user_id))
                    args.append(encode(message))
                try:
                    await self._publish_all(args=args)
                except ResponseError as exc:
                    log.warning("Redis refused the publish script (%s); pipelining instead", exc)
                    self.scripts = False
                    break
                done += len(chunk)
            if done < len(messages):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for user_id, message in messages[done:]:
                        pipe.publish(live_channel(user_id), encode(message))
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("live publish failed (%s); subscribers will resync", exc)


Closer = Callable[[int, str], Awaitable[None]]


def _seconds_left(principal: Principal) -> float:
    if principal.expires_at is None:
        return 3600.0
    return (principal.expires_at - datetime.now(UTC)).total_seconds()


async def next_message(
    close: Closer, principal: Principal, subscriber: Subscriber
) -> LiveMessage | None:
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
        if isinstance(message, Overflow):
            await close(CLOSE_SLOW_CONSUMER, "too slow: resume from your last cursor")
            return None
        return message


async def delivery_changes(
    hub: LiveHub,
    principal: Principal,
    close: Closer,
    *,
    wanted: Callable[[DeliveryChange], bool],
) -> AsyncGenerator[DeliveryChange, None]:
    """The managers' feed: each delivery status change ``wanted`` keeps, as it happens, until
    the socket closes (see :func:`next_message`). Its owner closes it (``aclose``) when done."""
    subscriber = await hub.subscribe_deliveries()
    metrics.subscription_opened()
    try:
        while (message := await next_message(close, principal, subscriber)) is not None:
            if not isinstance(message, DeliveryUpdates):
                continue  # a resync: the feed has nothing to catch up
            for change in message.changes():
                # A manager bound to a tenant hears of its tenant's deliveries only.
                if principal.tenant_id is not None and change.tenant_id != principal.tenant_id:
                    continue
                if wanted(change):
                    yield change
    finally:
        metrics.subscription_closed()
        await hub.unsubscribe(subscriber)


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
                    seqs = await inbox_service.last_seqs(session, user_ids=list(batch))
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
    async def open(
        cls,
        hub: LiveHub,
        *,
        sessionmaker: Any,
        sequences: SequenceReader,
        principal: Principal,
        since: str | None,
    ) -> InboxStream:
        after = inbox_service.decode_inbox_cursor(since, field="since")
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
                tenant_id=self.principal.tenant_id,
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
        tenant_id = principal.tenant_id
        while (message := await next_message(close, principal, subscriber)) is not None:
            item = message.entry if isinstance(message, NewNotification) else None
            if isinstance(message, Resync) or (item is not None and item.seq > self.last + 1):
                # After a Redis drop, or a hole before this item: read what is stored.
                for entry in await self._missed(item.seq if item is not None else None):
                    yield entry
                    self.last = entry.seq
            if item is not None:
                if item.seq <= self.last:
                    continue  # already sent by the replay
                if tenant_id is None or item.tenant_id == tenant_id:
                    yield item
                # Another tenant's item (the same user id there) is never sent, but it is
                # seen: the sequence moves on, so it is not taken for a hole.
                self.last = item.seq
            elif isinstance(message, ReadChange) and (
                tenant_id is None or message.tenant_id == tenant_id
            ):
                yield message

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            metrics.subscription_closed()
            await self.hub.unsubscribe(self.subscriber)
