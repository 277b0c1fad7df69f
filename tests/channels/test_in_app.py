"""The in-app live publish against the real Redis, and the registry that wires the senders."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.channels import Channel
from backend.channels.email import SmtpEmailSender
from backend.channels.push import WebPushSender, generate_vapid_keys
from backend.channels.registry import build_senders
from backend.channels.sms import HttpSmsSender
from backend.services.inbox import InboxEntry
from backend.services.live import NewNotification, RedisLivePublisher, live_channel
from tests.channels.conftest import channel_settings, closed_port, running
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
async def redis() -> AsyncIterator[redis_async.Redis]:
    client = redis_async.Redis.from_url(TEST_REDIS_URL)
    yield client
    await client.aclose()


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

    assert set(senders) == {Channel.EMAIL, Channel.SMS, Channel.PUSH}
    assert isinstance(senders[Channel.EMAIL], SmtpEmailSender)
    assert isinstance(senders[Channel.SMS], HttpSmsSender)
    assert isinstance(senders[Channel.PUSH], WebPushSender)
    for channel, sender in senders.items():
        assert sender.channel is channel
        async with running(sender):
            pass
