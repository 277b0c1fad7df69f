"""The in-app sender against the real Redis, and the registry that wires every sender."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis_async
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from backend.channels import Channel
from backend.channels.base import TransientChannelError
from backend.channels.email import SmtpEmailSender
from backend.channels.in_app import RedisInAppSender, user_channel
from backend.channels.push import WebPushSender, generate_vapid_keys
from backend.channels.registry import build_senders
from backend.channels.sms import HttpSmsSender
from backend.services.users import UserProfile
from tests.channels.conftest import channel_settings, closed_port, outgoing, running


@pytest.fixture
async def redis() -> AsyncIterator[redis_async.Redis]:
    client = redis_async.Redis.from_url("redis://127.0.0.1:6379/0")
    yield client
    await client.aclose()


async def next_message(pubsub: Any, timeout: float = 2.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is not None:
                return dict(message)


async def test_subscriber_on_the_user_channel_receives_the_notification(
    redis: redis_async.Redis,
) -> None:
    # A user id of its own: other test runs share this Redis.
    user = UserProfile(id=f"user-{uuid.uuid4()}")
    channel = user_channel(user.id)
    assert channel == f"herald:user:{user.id}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    sender = RedisInAppSender(redis)
    try:
        async with running(sender):
            result = await sender.send(
                outgoing(
                    Channel.IN_APP,
                    user=user,
                    delivery_id="d-5",
                    event_id="e-5",
                    event_type="movie_added",
                    title="New film",
                    body="Dune is out",
                    data={"movie_id": 7},
                )
            )
        received = await next_message(pubsub)
    finally:
        await pubsub.aclose()

    assert result.provider == "redis"
    assert result.provider_message_id is None
    assert received["channel"].decode() == channel
    item = json.loads(received["data"])
    created_at = datetime.fromisoformat(item.pop("created_at"))
    assert created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created_at) < timedelta(seconds=10)
    assert item == {
        "type": "notification",
        "delivery_id": "d-5",
        "event_id": "e-5",
        "event_type": "movie_added",
        "title": "New film",
        "body": "Dune is out",
        "data": {"movie_id": 7},
    }


async def test_other_users_do_not_receive_it(redis: redis_async.Redis) -> None:
    watcher = f"user-{uuid.uuid4()}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(user_channel(watcher))
    try:
        await RedisInAppSender(redis).send(
            outgoing(Channel.IN_APP, user=UserProfile(id=f"user-{uuid.uuid4()}"))
        )
        with pytest.raises(TimeoutError):
            await next_message(pubsub, timeout=0.3)
    finally:
        await pubsub.aclose()


async def test_redis_down_is_transient() -> None:
    # No retries: redis-py's default backoff only makes the test slower.
    unreachable = redis_async.Redis(
        host="127.0.0.1", port=closed_port(), socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(TransientChannelError) as raised:
            await RedisInAppSender(unreachable).send(outgoing(Channel.IN_APP))
    finally:
        await unreachable.aclose()
    assert raised.value.provider == "redis"


async def test_registry_gives_each_channel_its_sender(redis: redis_async.Redis) -> None:
    settings = channel_settings(vapid_private_key=generate_vapid_keys()[0])
    senders = build_senders(settings, redis)

    assert set(senders) == set(Channel)
    assert isinstance(senders[Channel.EMAIL], SmtpEmailSender)
    assert isinstance(senders[Channel.SMS], HttpSmsSender)
    assert isinstance(senders[Channel.PUSH], WebPushSender)
    assert isinstance(senders[Channel.IN_APP], RedisInAppSender)
    for channel, sender in senders.items():
        assert sender.channel is channel
        async with running(sender):
            pass
