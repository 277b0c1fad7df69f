"""The in-app sender and live publish against the real PostgreSQL and Redis, and the registry
that wires the provider senders."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from backend.channels import Channel
from backend.channels.base import ChannelSender, OutgoingMessage, TransientChannelError
from backend.channels.email import SmtpEmailSender
from backend.channels.in_app import InAppSender
from backend.channels.push import WebPushSender, generate_vapid_keys
from backend.channels.registry import build_senders
from backend.channels.sms import HttpSmsSender
from backend.db.repositories.inbox import NewInboxItem
from backend.services import inbox as inbox_service
from backend.services.deliveries.in_app import StoredInbox
from backend.services.inbox import InboxEntry
from backend.services.live import (
    SCRIPT_BATCH,
    NewNotification,
    RedisLivePublisher,
    decode,
    live_channel,
)
from backend.services.users import UserProfile
from tests.channels.conftest import channel_settings, closed_port, running


async def next_message(pubsub: Any, timeout: float = 2.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is not None:
                return dict(message)


def entry(user_id: str, **fields: Any) -> InboxEntry:
    values: dict[str, Any] = {
        "delivery_id": "d-5",
        "user_id": user_id,
        "seq": 7,
        "event_id": "e-5",
        "event_type": "movie_added",
        "title": "New film",
        "body": "Dune is out",
        "data": {"movie_id": 7},
        "created_at": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        "read_at": None,
    }
    values.update(fields)
    return InboxEntry(**values)


async def test_subscriber_on_the_user_channel_receives_the_inbox_item(
    redis: redis_async.Redis,
) -> None:
    # A user id of its own: other test runs share this Redis.
    user_id = f"user-{uuid.uuid4()}"
    channel = live_channel(user_id)
    assert channel == f"herald:user:{user_id}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    item = entry(user_id)
    try:
        await RedisLivePublisher(redis).publish_many([(user_id, NewNotification(item))])
        received = await next_message(pubsub)
    finally:
        await pubsub.aclose()

    assert received["channel"].decode() == channel
    message = json.loads(received["data"])
    assert message == {
        "type": "notification",
        "delivery_id": "d-5",
        "seq": 7,
        "event_id": "e-5",
        "event_type": "movie_added",
        "title": "New film",
        "body": "Dune is out",
        "data": {"movie_id": 7},
        "created_at": "2026-11-26T12:00:00+00:00",
        "read_at": None,
    }
    # What a subscription reads back is the item that was stored.
    assert NewNotification.from_wire(message, user_id).entry == item


async def test_other_users_do_not_receive_it(redis: redis_async.Redis) -> None:
    watcher = f"user-{uuid.uuid4()}"
    other = f"user-{uuid.uuid4()}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel(watcher))
    try:
        await RedisLivePublisher(redis).publish_many([(other, NewNotification(entry(other)))])
        with pytest.raises(TimeoutError):
            await next_message(pubsub, timeout=0.3)
    finally:
        await pubsub.aclose()


async def received_on(pubsub: Any, count: int) -> list[tuple[str, int]]:
    """(user id, seq) of the next ``count`` notifications ``pubsub`` receives."""
    got = []
    for _ in range(count):
        message = await next_message(pubsub)
        user_id = message["channel"].decode().removeprefix("herald:user:")
        got.append((user_id, json.loads(message["data"])["seq"]))
    return got


async def test_a_batch_larger_than_one_script_call_arrives_whole_and_in_order(
    redis: redis_async.Redis,
) -> None:
    users = [f"user-{uuid.uuid4()}" for _ in range(3)]
    batch = [
        (users[n % 3], NewNotification(entry(users[n % 3], seq=n)))
        for n in range(2 * SCRIPT_BATCH + 5)
    ]
    pubsub = redis.pubsub()
    await pubsub.subscribe(*(live_channel(u) for u in users))
    publisher = RedisLivePublisher(redis)
    try:
        await publisher.publish_many(batch)
        got = await received_on(pubsub, len(batch))
    finally:
        await pubsub.aclose()
    assert got == [(u, m.entry.seq) for u, m in batch]
    assert publisher.scripts  # three script calls, no pipeline


async def test_a_redis_that_refuses_scripts_gets_the_batch_pipelined(
    redis: redis_async.Redis,
) -> None:
    """Where an ACL (or a managed service) forbids scripts, the first refusal switches the
    publisher to pipelines, and the batch still arrives whole."""
    name, password = f"herald-no-scripts-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-@scripting"],
    )
    limited = redis_async.Redis(
        host=redis.connection_pool.connection_kwargs["host"],
        port=redis.connection_pool.connection_kwargs["port"],
        username=name,
        password=password,
    )
    user_id = f"user-{uuid.uuid4()}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel(user_id))
    publisher = RedisLivePublisher(limited)
    try:
        await publisher.publish_many([(user_id, NewNotification(entry(user_id, seq=1)))])
        assert not publisher.scripts
        await publisher.publish_many([(user_id, NewNotification(entry(user_id, seq=2)))])
        got = await received_on(pubsub, 2)
    finally:
        await pubsub.aclose()
        await limited.aclose()
        await redis.acl_deluser(name)
    assert got == [(user_id, 1), (user_id, 2)]


async def test_redis_down_does_not_fail_the_delivery() -> None:
    """The inbox already holds the item; subscribers catch up from it. A lost publish is
    logged, never raised."""
    unreachable = redis_async.Redis(
        host="127.0.0.1", port=closed_port(), socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        await RedisLivePublisher(unreachable).publish_many([("u", NewNotification(entry("u")))])
    finally:
        await unreachable.aclose()


async def test_registry_gives_each_provider_channel_its_sender() -> None:
    settings = channel_settings(vapid_private_key=generate_vapid_keys()[0])
    senders = build_senders(settings)

    # Every channel but in-app (its sender is made per batch); chat channels with no provider
    # configured get a sender that fails saying so.
    assert set(senders) == set(Channel) - {Channel.IN_APP}
    assert isinstance(senders[Channel.EMAIL], SmtpEmailSender)
    assert isinstance(senders[Channel.SMS], HttpSmsSender)
    assert isinstance(senders[Channel.PUSH], WebPushSender)
    for channel, sender in senders.items():
        assert sender.channel is channel
        async with running(sender):
            pass


def outgoing(user_id: str, title: str) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=str(uuid.uuid4()),
        event_id="e-7",
        event_type="movie_added",
        channel=Channel.IN_APP,
        user=UserProfile(id=user_id),
        title=title,
        body="Dune is out",
        data={"movie_id": 7},
    )


async def test_the_in_app_sender_stores_a_batch_then_publishes_it_live(
    engine: AsyncEngine, redis: redis_async.Redis
) -> None:
    user_id = f"user-{uuid.uuid4()}"
    in_app = InAppSender(StoredInbox(engine, RedisLivePublisher(redis)))
    sender: ChannelSender = in_app  # the protocol every channel's sender implements
    assert sender.channel is Channel.IN_APP
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel(user_id))
    batch = [outgoing(user_id, "first"), outgoing(user_id, "second")]
    try:
        async with running(sender):
            results = await in_app.send_many(batch)
            single = await sender.send(outgoing(user_id, "third"))
        received = [decode((await next_message(pubsub))["data"], user_id=user_id) for _ in range(3)]
    finally:
        await pubsub.aclose()

    assert [r.provider for r in [*results, single]] == ["inbox"] * 3
    async with AsyncSession(engine) as session:
        stored = await inbox_service.missed_items(session, user_id=user_id, after_seq=0)
    assert [(e.seq, e.title) for e in stored] == [(1, "first"), (2, "second"), (3, "third")]
    assert received == [NewNotification(e) for e in stored]


async def test_an_unreachable_inbox_is_a_transient_failure_and_nothing_is_published(
    redis: redis_async.Redis,
) -> None:
    user_id = f"user-{uuid.uuid4()}"
    unreachable = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/x")
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel(user_id))
    try:
        with pytest.raises(TransientChannelError) as refused:
            await InAppSender(StoredInbox(unreachable, RedisLivePublisher(redis))).send(
                outgoing(user_id, "t")
            )
        with pytest.raises(TimeoutError):
            await next_message(pubsub, timeout=0.3)
    finally:
        await pubsub.aclose()
        await unreachable.dispose()
    assert refused.value.provider == "inbox"
    assert refused.value.message.startswith("the inbox could not be written")


def new_item(delivery_id: str, user_id: str, **fields: Any) -> NewInboxItem:
    values: dict[str, Any] = {
        "delivery_id": delivery_id,
        "user_id": user_id,
        "event_id": "e-7",
        "event_type": "movie_added",
        "title": "New film",
        "body": "Dune is out",
        "data": {"movie": {"id": 7, "tags": ["sf", "épique"]}, "score": 9.5, "none": None},
        "created_at": datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=UTC),
        "actions": [{"label": "Watch", "url": "https://example.com/dune"}],
        "tenant_id": None,
    }
    values.update(fields)
    return NewInboxItem(**values)


async def test_stored_items_are_what_the_inbox_then_reads_back(engine: AsyncEngine) -> None:
    """``store_items`` answers the entries it inserted from the items and their numbers, and
    a repeated item (a retried delivery) as first stored: each as a read of the inbox gives it."""
    user_id, other = f"user-{uuid.uuid4()}", f"user-{uuid.uuid4()}"
    first = await inbox_service.store_items(
        engine,
        # A tenant of its own: the items stay in the shared database, and a tenant that
        # still has inbox items cannot be deleted (tests/test_tenants.py deletes "acme").
        [new_item(f"{user_id}-a", user_id), new_item(f"{other}-a", other, tenant_id=other)],
    )
    assert [(e.user_id, e.seq) for e in first] == [(user_id, 1), (other, 1)]
    # Read, then delivered again with other content: the stored item stands, read state too.
    async with AsyncSession(engine) as session:
        await inbox_service.mark_read(session, user_id=user_id, ids=[f"{user_id}-a"])
        await session.commit()
    again = await inbox_service.store_items(
        engine,
        [
            new_item(f"{user_id}-b", user_id, title="second", data={}, actions=[]),
            new_item(f"{user_id}-a", user_id, title="changed", data={"x": 1}),
            new_item(f"{user_id}-c", user_id, title="third"),
            new_item(f"{user_id}-c", user_id, title="third, twice in the batch"),
        ],
    )
    assert [(e.delivery_id, e.seq, e.title) for e in again] == [
        (f"{user_id}-b", 2, "second"),
        (f"{user_id}-a", 1, "New film"),
        # The repeated item's number (3) is a hole readers skip, never a reordering.
        (f"{user_id}-c", 4, "third, twice in the batch"),
    ]
    assert again[1].read_at is not None and again[1].data == first[0].data

    async with AsyncSession(engine) as session:
        stored = await inbox_service.missed_items(session, user_id=user_id, after_seq=0)
        stored += await inbox_service.missed_items(session, user_id=other, after_seq=0)
    by_id = {e.delivery_id: e for e in stored}
    for entry in [*first, *again]:
        assert by_id[entry.delivery_id] == entry or (
            entry.delivery_id == f"{user_id}-a"  # marked read after ``first`` was answered
            and dataclasses.replace(by_id[entry.delivery_id], read_at=None) == entry
        )
