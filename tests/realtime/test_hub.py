"""The live hub against real Redis: many subscriptions opened and closed at once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio.client import PubSub

from backend.realtime import PING_CHANNEL, LiveHub
from backend.services.live import RESYNC, ReadChange, encode, live_channel
from tests.conftest import TEST_REDIS_URL as REDIS_URL
from tests.conftest import free_port


@pytest.fixture
async def hub() -> Any:
    hub = LiveHub(REDIS_URL)
    await hub.start()
    await hub.wait_ready(5)
    yield hub
    await hub.close()


def read_change(user: str) -> ReadChange:
    """A live message naming its user, so that each subscriber's can be told apart."""
    return ReadChange([f"item-of-{user}"], read=True, archived=False)


async def numsub(redis: Any, channels: list[str]) -> list[int]:
    return [int(n) for _, n in await redis.pubsub_numsub(*channels)]


async def test_a_storm_of_subscriptions_each_receives_and_all_are_released(hub, redis):
    users = [f"storm-{uuid.uuid4().hex[:8]}-{i}" for i in range(2000)]
    subscribers = await asyncio.gather(*(hub.subscribe_user(u) for u in users))
    sample = users[::100]
    # Every channel was subscribed before its subscribe_user returned.
    assert await numsub(redis, [live_channel(u) for u in sample]) == [1] * len(sample)
    for user in sample:
        await redis.publish(live_channel(user), encode(read_change(user)))
    by_user = dict(zip(users, subscribers, strict=True))
    for user in sample:
        message = await by_user[user].next(5)
        assert message == read_change(user)

    await asyncio.gather(*(hub.unsubscribe(s) for s in subscribers))
    assert hub._subscribers == {} and hub._per_user == {}
    for _ in range(50):
        if await numsub(redis, [live_channel(u) for u in sample]) == [0] * len(sample):
            break
        await asyncio.sleep(0.1)
    assert await numsub(redis, [live_channel(u) for u in sample]) == [0] * len(sample)


async def test_a_channel_left_and_joined_again_at_once_stays_subscribed(hub, redis):
    user = f"again-{uuid.uuid4().hex[:8]}"
    first = await hub.subscribe_user(user)
    await hub.unsubscribe(first)
    second = await hub.subscribe_user(user)  # before the batch of leaving channels is sent
    await asyncio.sleep(0.3)
    assert await numsub(redis, [live_channel(user)]) == [1]
    await redis.publish(live_channel(user), encode(read_change(user)))
    assert await second.next(5) == read_change(user)
    await hub.unsubscribe(second)


async def test_what_is_not_a_live_message_is_dropped_and_the_rest_flows(hub, redis, caplog):
    user = f"odd-{uuid.uuid4().hex[:8]}"
    subscriber = await hub.subscribe_user(user)
    for odd in (b"not json", orjson.dumps({"type": "ping"}), orjson.dumps({"ids": ["x"]})):
        await redis.publish(live_channel(user), odd)
    await redis.publish(live_channel(user), encode(read_change(user)))
    assert await subscriber.next(5) == read_change(user)
    assert await subscriber.next(0.2) is None
    dropped = [r for r in caplog.records if r.getMessage().startswith("dropping a malformed")]
    assert len(dropped) == 3
    await hub.unsubscribe(subscriber)


async def test_a_subscription_cancelled_while_joining_is_forgotten(hub):
    user = f"gone-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(hub.subscribe_user(user))
    await asyncio.sleep(0)  # it has registered and waits for its SUBSCRIBE
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live_channel(user) not in hub._subscribers
    assert user not in hub._per_user


async def test_close_ends_cleanly_whatever_the_loop_is_doing(redis):
    # Reading (with subscribers and a message in flight), backing off from a dead Redis,
    # not yet connected, and closed twice.
    reading = LiveHub(REDIS_URL)
    await reading.start()
    await reading.wait_ready(5)
    user = f"close-{uuid.uuid4().hex[:8]}"
    await reading.subscribe_user(user)
    await redis.publish(live_channel(user), encode(read_change(user)))
    dead = LiveHub(f"redis://127.0.0.1:{free_port()}/0")
    await dead.start()
    await asyncio.sleep(0.5)  # it has failed to connect and waits to try again
    fresh = LiveHub(REDIS_URL)
    await fresh.start()
    for hub in (reading, dead, fresh, reading):
        await asyncio.wait_for(hub.close(), 6)
        assert hub._task is not None and hub._task.done()


async def test_an_unexpected_error_in_the_read_loop_is_survived(monkeypatch, redis, caplog):
    hub = LiveHub(REDIS_URL)
    await hub.start()
    try:
        await hub.wait_ready(5)
        user = f"survive-{uuid.uuid4().hex[:8]}"
        subscriber = await hub.subscribe_user(user)
        failures = failures_counted("error")
        original = PubSub.get_message
        raised = []

        async def failing_once(self: PubSub, *args: Any, **kwargs: Any) -> Any:
            if not raised:
                raised.append(True)
                raise RuntimeError("pubsub connection not set")
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(PubSub, "get_message", failing_once)
        await redis.publish(PING_CHANNEL, b"{}")  # wakes the read loop, which then fails
        # The subscriber is told to resync (its stream reads what it missed from its cursor)...
        assert await subscriber.next(5) == RESYNC
        # ...and live messages flow again.
        await hub.wait_ready(5)
        await redis.publish(live_channel(user), encode(read_change(user)))
        assert await subscriber.next(5) == read_change(user)
        assert failures_counted("error") == failures + 1
        [record] = [r for r in caplog.records if r.getMessage().startswith("live hub failed")]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None and "pubsub connection not set" in str(
            record.exc_info[1]
        )
    finally:
        await hub.close()


def failures_counted(reason: str) -> float:
    value = REGISTRY.get_sample_value("herald_live_hub_failures_total", {"reason": reason})
    return value or 0.0
