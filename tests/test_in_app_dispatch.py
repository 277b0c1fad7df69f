"""In-app deliveries sent inline by dispatch reach the history once, already sent, and a second
run of the same event (a duplicate message, or a record another run stored first) neither
stores nor sends anything twice. Real PostgreSQL and Redis; the user profiles are handed to
dispatch as a campaign page does, so no auth service is asked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryRecord, DeliveryStatus, StatusChange
from backend.services.deliveries import DeliveryContext, Envelope, delivery_id
from backend.services.live import live_channel
from backend.services.users import UserProfile
from backend.workers.units import dispatch as dispatch_event
from tests import factories
from tests.factories import delivery_context


class UnusedQueue:
    """Nothing here is enqueued: every delivery of these events is sent inline."""

    async def enqueue_send(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unexpected enqueue: {args} {kwargs}")

    async def enqueue_dispatch(self, envelope: Envelope) -> None:
        raise AssertionError(f"unexpected dispatch: {envelope}")


@pytest.fixture
def ctx(settings: Settings, engine: AsyncEngine, redis: redis_async.Redis) -> DeliveryContext:
    return delivery_context(settings, engine, redis, queue=UnusedQueue())


def envelope(user_id: str) -> Envelope:
    """A user registered: a welcome in the app."""
    return factories.envelope(
        user_id, Channel.IN_APP, type="user_registered", payload={}, template_slug="welcome"
    )


def profile(user_id: str) -> dict[str, UserProfile]:
    return {user_id: UserProfile(id=user_id, email=None, first_name="Ada", locale="en")}


async def inbox_rows(engine: AsyncEngine, user_id: str) -> list[Any]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT delivery_id, seq FROM inbox_items WHERE user_id = :u ORDER BY seq"),
            {"u": user_id},
        )
        return list(result.all())


async def dispatch_and_listen(
    ctx: DeliveryContext, redis: redis_async.Redis, event: Envelope, user: str
) -> dict[str, Any] | None:
    """Dispatch ``event`` with ``user``'s profile handed over; the first live message published
    on the user's channel (None when none came within 4 s)."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(live_channel(user))
    try:
        await dispatch_event(ctx, event, profiles=profile(user))
        for _ in range(20):
            live = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if live is not None:
                return live
        return None
    finally:
        await pubsub.aclose()


async def test_an_inline_in_app_delivery_is_stored_once_already_sent(
    ctx: DeliveryContext, engine: AsyncEngine, redis: redis_async.Redis
) -> None:
    user = f"u-{uuid.uuid4()}"
    event = envelope(user)
    live = await dispatch_and_listen(ctx, redis, event, user)

    record = await ctx.history.get(delivery_id(event.id, user, Channel.IN_APP))
    assert record is not None
    assert record.status is DeliveryStatus.SENT
    assert [c.status for c in record.timeline] == [
        DeliveryStatus.QUEUED,
        DeliveryStatus.SENDING,
        DeliveryStatus.SENT,
    ]
    assert record.title and "Ada" in record.title
    assert [a.provider for a in record.attempts] == ["inbox"]
    assert [r.delivery_id for r in await inbox_rows(engine, user)] == [record.id]
    assert live is not None, "the item was not published live"


async def test_a_duplicate_run_stores_and_sends_nothing_twice(
    ctx: DeliveryContext, engine: AsyncEngine
) -> None:
    user = f"u-{uuid.uuid4()}"
    event = envelope(user)
    await dispatch_event(ctx, event, profiles=profile(user))
    first = await ctx.history.get(delivery_id(event.id, user, Channel.IN_APP))
    # The same dispatch message again (not marked redelivered): a publisher's retry.
    await dispatch_event(ctx, event, profiles=profile(user))

    again = await ctx.history.get(delivery_id(event.id, user, Channel.IN_APP))
    assert again == first
    assert len(await inbox_rows(engine, user)) == 1


async def test_a_record_another_run_stored_first_is_moved_on_not_left_behind(
    ctx: DeliveryContext, engine: AsyncEngine
) -> None:
    """Another run stored the delivery (queued) and stopped before sending: this run sends
    it, and the stored record ends sent, with one inbox item."""
    user = f"u-{uuid.uuid4()}"
    event = envelope(user)
    did = delivery_id(event.id, user, Channel.IN_APP)
    now = datetime.now(UTC)
    await ctx.history.add(
        [
            DeliveryRecord(
                id=did,
                event_id=event.id,
                event_type=event.type,
                user_id=user,
                channel=Channel.IN_APP,
                created_at=now,
                updated_at=now,
                template_slug="welcome",
                timeline=[StatusChange(DeliveryStatus.QUEUED, now)],
            )
        ]
    )
    await dispatch_event(ctx, event, profiles=profile(user))

    record = await ctx.history.get(did)
    assert record is not None and record.status is DeliveryStatus.SENT
    assert len(await inbox_rows(engine, user)) == 1


def test_delivery_ids_stay_the_uuid5_of_event_user_and_channel() -> None:
    """Stored records are found again by these ids: they must never change."""
    namespace = uuid.UUID("6f1d3c2a-8f5e-4b7a-9c1d-2e3f4a5b6c7d")
    for n in range(300):
        event_id, user_id = str(uuid.uuid4()), f"user-{n}-ñ"
        for channel in Channel:
            expected = str(uuid.uuid5(namespace, f"{event_id}/{user_id}/{channel.value}"))
            assert delivery_id(event_id, user_id, channel) == expected
            assert delivery_id(event_id, user_id, channel.value) == expected


class PartsQueue(UnusedQueue):
    def __init__(self) -> None:
        self.parts: list[Envelope] = []

    async def enqueue_dispatch(self, envelope: Envelope) -> None:
        self.parts.append(envelope)


def parts_of_100(ctx: DeliveryContext, settings: Settings, queue: PartsQueue) -> DeliveryContext:
    """``ctx`` with dispatch parts of 100 users, handed on to ``queue``."""
    return DeliveryContext(
        settings=settings.model_copy(update={"dispatch_part_size": 100}),
        sessionmaker=ctx.sessionmaker,
        history=ctx.history,
        queue=queue,
        users=ctx.users,
        live=ctx.live,
    )


async def test_a_broadcast_is_handed_on_in_parts_that_each_deliver_their_users(
    ctx: DeliveryContext, engine: AsyncEngine, settings: Settings
) -> None:
    queue = PartsQueue()
    small = parts_of_100(ctx, settings, queue)
    users = [f"u-{uuid.uuid4()}" for _ in range(250)]
    event = envelope(users[0]).for_users(users)
    summary = await dispatch_event(small, event)
    assert summary.parts == 3
    assert [len(p.recipients) for p in queue.parts] == [100, 100, 50]
    assert [p.part for p in queue.parts] == [0, 1, 2]
    assert [u for p in queue.parts for u in p.recipients] == users
    assert all(p.id == event.id for p in queue.parts)
    # Handing on stores nothing; each part, run as an event of its own, delivers its users.
    assert await ctx.history.get(delivery_id(event.id, users[0], Channel.IN_APP)) is None
    profiles = {u: profile(u)[u] for u in users}
    for part in queue.parts:
        assert (await dispatch_event(small, part, profiles=profiles)).parts == 0
    assert queue.parts and len(queue.parts) == 3  # parts do not split again
    for user in (users[0], users[150], users[-1]):
        record = await ctx.history.get(delivery_id(event.id, user, Channel.IN_APP))
        assert record is not None and record.status is DeliveryStatus.SENT
        assert len(await inbox_rows(engine, user)) == 1


async def test_a_campaign_page_is_not_split(ctx: DeliveryContext, settings: Settings) -> None:
    queue = PartsQueue()
    small = parts_of_100(ctx, settings, queue)
    users = [f"u-{uuid.uuid4()}" for _ in range(150)]
    event = envelope(users[0]).for_users(users)
    profiles = {u: profile(u)[u] for u in users}
    summary = await dispatch_event(small, event, profiles=profiles, split=False)
    assert summary.parts == 0 and queue.parts == []
    record = await ctx.history.get(delivery_id(event.id, users[-1], Channel.IN_APP))
    assert record is not None and record.status is DeliveryStatus.SENT
