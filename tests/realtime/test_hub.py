"""The live hub against real Redis: many subscriptions opened and closed at once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from backend.channels.in_app import user_channel
from backend.realtime import LiveHub

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def hub() -> Any:
    hub = LiveHub(REDIS_URL)
    await hub.start()
    await asyncio.wait_for(hub._connected.wait(), 5)
    yield hub
    await hub.close()


async def numsub(redis: Any, channels: list[str]) -> list[int]:
    return [int(n) for _, n in await redis.pubsub_numsub(*channels)]


async def test_a_storm_of_subscriptions_each_receives_and_all_are_released(hub, redis):
    users = [f"storm-{uuid.uuid4().hex[:8]}-{i}" for i in range(2000)]
    subscribers = await asyncio.gather(*(hub.subscribe_user(u) for u in users))
    sample = users[::100]
    # Every channel was subscribed before its subscribe_user returned.
    assert await numsub(redis, [user_channel(u) for u in sample]) == [1] * len(sample)
    for user in sample:
        await redis.publish(user_channel(user), orjson.dumps({"type": "ping", "user": user}))
    by_user = dict(zip(users, subscribers, strict=True))
    for user in sample:
        message = await by_user[user].next(5)
        assert message == {"type": "ping", "user": user}

    await asyncio.gather(*(hub.unsubscribe(s) for s in subscribers))
    assert hub._subscribers == {} and hub._per_user == {}
    for _ in range(50):
        if await numsub(redis, [user_channel(u) for u in sample]) == [0] * len(sample):
            break
        await asyncio.sleep(0.1)
    assert await numsub(redis, [user_channel(u) for u in sample]) == [0] * len(sample)


async def test_a_channel_left_and_joined_again_at_once_stays_subscribed(hub, redis):
    user = f"again-{uuid.uuid4().hex[:8]}"
    first = await hub.subscribe_user(user)
    await hub.unsubscribe(first)
    second = await hub.subscribe_user(user)  # before the batch of leaving channels is sent
    await asyncio.sleep(0.3)
    assert await numsub(redis, [user_channel(user)]) == [1]
    await redis.publish(user_channel(user), orjson.dumps({"type": "ping"}))
    assert await second.next(5) == {"type": "ping"}
    await hub.unsubscribe(second)


async def test_a_subscription_cancelled_while_joining_is_forgotten(hub):
    user = f"gone-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(hub.subscribe_user(user))
    await asyncio.sleep(0)  # it has registered and waits for its SUBSCRIBE
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert user_channel(user) not in hub._subscribers
    assert user not in hub._per_user
