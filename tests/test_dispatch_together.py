"""Dispatch in batches: several in-app events recorded and sent as one (one history insert, one
profile look-up, one inbox statement, one live pipeline), a second run of the same batch storing
and sending nothing twice, and the dispatch queue's consumer taking messages off a real RabbitMQ
queue in batches, acknowledging each once its event is done and dead-lettering what is no
Herald task. Real PostgreSQL, Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
import orjson
import pytest
import redis.asyncio as redis_async
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.broker import Broker, celery_task_message
from backend.channels import Channel
from backend.config import Settings
from backend.db.history.base import DeliveryRecord, DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.models import UserPreferences
from backend.queues import DEAD_LETTER_EXCHANGE, TASK_DISPATCH, WORK_QUEUE_ARGUMENTS
from backend.services import task_messages
from backend.services.deliveries import (
    BatchOutcome,
    DeliveryContext,
    Envelope,
    delivery_id,
    together,
)
from backend.services.live import live_channel
from backend.services.users import UserProfile
from backend.workers.dispatch_consumer import (
    Acknowledgements,
    DispatchConsumer,
    Supervisor,
    start_beside_forks,
)
from backend.workers.units import dispatch_together
from tests.conftest import TEST_RABBITMQ_URL
from tests.factories import delivery_context
from tests.test_in_app_dispatch import UnusedQueue, envelope, inbox_rows


class Directory:
    """Profiles for every user asked about; counts the look-ups, and how many ran at once at
    most. The first look-up takes ``first_seconds``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.first_seconds = 0.0
        self.first_started = asyncio.Event()
        self.running = self.most_at_once = 0

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, UserProfile | None]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if not self.first_started.is_set():
                self.first_started.set()
                await asyncio.sleep(self.first_seconds)
            self.calls.append(list(user_ids))
            return {
                u: UserProfile(id=u, email=None, first_name="Ada", locale="en") for u in user_ids
            }
        finally:
            self.running -= 1


class CountingHistory(PostgresHistoryStore):
    """The PostgreSQL history store, counting the inserts that stored something."""

    inserts = 0

    async def add(self, records: Sequence[DeliveryRecord]) -> int:
        if records:
            self.inserts += 1
        return await super().add(records)


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def ctx(
    settings: Settings, engine: AsyncEngine, redis: redis_async.Redis, directory: Directory
) -> DeliveryContext:
    return delivery_context(
        settings,
        engine,
        redis,
        queue=UnusedQueue(),
        users=directory,
        history=CountingHistory(engine),
    )


async def collect(pubsub: Any, wanted: int, seconds: float = 5.0) -> list[tuple[str, bytes]]:
    """The live messages ``pubsub`` got (channel, data), until ``wanted`` came or time ran
    out."""
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + seconds
    while len(got) < wanted and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            got.append((message["channel"].decode(), message["data"]))
    return got


async def test_in_app_events_are_recorded_and_sent_together_once_each(
    ctx: DeliveryContext, engine: AsyncEngine, redis: redis_async.Redis, directory: Directory
) -> None:
    users = [f"u-{uuid.uuid4()}" for _ in range(12)]
    events = [envelope(u) for u in users]
    assert all(together(ctx, e) for e in events)
    pubsub = redis.pubsub()
    await pubsub.subscribe(*(live_channel(u) for u in users))
    try:
        await dispatch_together(ctx, events)
        published = await collect(pubsub, len(users))
    finally:
        await pubsub.aclose()

    assert sorted(c for c, _ in published) == sorted(live_channel(u) for u in users)
    # Twelve events: one profile look-up and one history insert for all of them.
    assert len(directory.calls) == 1 and sorted(directory.calls[0]) == sorted(users)
    assert isinstance(ctx.history, CountingHistory) and ctx.history.inserts == 1
    for event, user in zip(events, users, strict=True):
        record = await ctx.history.get(delivery_id(event.id, user, Channel.IN_APP))
        assert record is not None and record.status is DeliveryStatus.SENT
        assert [c.status for c in record.timeline] == [
            DeliveryStatus.QUEUED,
            DeliveryStatus.SENDING,
            DeliveryStatus.SENT,
        ]
        assert record.title and "Ada" in record.title
        assert [r.delivery_id for r in await inbox_rows(engine, user)] == [record.id]

    # The same batch again (a duplicate of every message): nothing stored twice; what is
    # published live is the items already stored, as they were (the same ids and cursors,
    # which subscribers already have), as a duplicate single dispatch does.
    before = [
        await ctx.history.get(delivery_id(e.id, u, Channel.IN_APP))
        for e, u in zip(events, users, strict=True)
    ]
    pubsub = redis.pubsub()
    await pubsub.subscribe(*(live_channel(u) for u in users))
    try:
        await dispatch_together(ctx, events)
        again = await collect(pubsub, len(users), seconds=2.0)
    finally:
        await pubsub.aclose()
    assert set(again) <= set(published)
    after = [
        await ctx.history.get(delivery_id(e.id, u, Channel.IN_APP))
        for e, u in zip(events, users, strict=True)
    ]
    assert after == before
    for user in users:
        assert len(await inbox_rows(engine, user)) == 1


async def test_an_opted_out_user_is_skipped_among_the_batch(
    ctx: DeliveryContext, engine: AsyncEngine
) -> None:
    sent_to, opted_out = f"u-{uuid.uuid4()}", f"u-{uuid.uuid4()}"
    async with ctx.sessionmaker() as session:
        session.add(UserPreferences(user_id=opted_out, disabled_channels=["in_app"]))
        await session.commit()
    events = [envelope(sent_to), envelope(opted_out)]
    await dispatch_together(ctx, events)

    sent = await ctx.history.get(delivery_id(events[0].id, sent_to, Channel.IN_APP))
    skipped = await ctx.history.get(delivery_id(events[1].id, opted_out, Channel.IN_APP))
    assert sent is not None and sent.status is DeliveryStatus.SENT
    assert skipped is not None and skipped.status is DeliveryStatus.SKIPPED
    assert await inbox_rows(engine, opted_out) == []


def test_only_in_app_events_for_a_few_listed_users_go_together(ctx: DeliveryContext) -> None:
    one = envelope("u-1")
    assert together(ctx, one)
    assert together(ctx, one.for_users([f"u-{n}" for n in range(200)]))
    assert not together(ctx, one.for_users([f"u-{n}" for n in range(201)]))  # > a batch
    assert not together(ctx, one.for_users([]))
    wire = one.to_wire()
    assert not together(ctx, Envelope.from_wire({**wire, "channels": ["in_app", "email"]}))
    assert not together(ctx, one.for_users(["u-1"], quiet_released=True))
    assert not together(ctx, one.for_users(["u-1"], via_topics=True))


# --- the consumer, on a real RabbitMQ queue --------------------------------------------------


@pytest.fixture
async def dispatch_queue() -> AsyncIterator[tuple[str, aio_pika.abc.AbstractQueue]]:
    """A dispatch-like queue of its own (the session's workers consume herald.dispatch), and
    a queue that receives a copy of whatever is dead-lettered meanwhile."""
    name = f"test.dispatch.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(TEST_RABBITMQ_URL)
    channel = await connection.channel()
    await channel.declare_queue(name, durable=True, arguments=WORK_QUEUE_ARGUMENTS)
    dead_exchange = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead = await channel.declare_queue(exclusive=True)
    await dead.bind(dead_exchange)
    try:
        yield name, dead
    finally:
        await channel.queue_delete(name)
        await connection.close()


async def publish_dispatch(broker: Broker, queue: str, event: Envelope) -> None:
    """The event's dispatch message, as the API builds it, on ``queue``."""
    await dataclasses.replace(task_messages.dispatch(event), queue=queue).publish(broker)


async def every_inbox_filled(engine: AsyncEngine, users: Sequence[str], seconds: float) -> bool:
    """Whether each user has an inbox item within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all([await inbox_rows(engine, u) for u in users]):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_the_consumer_dispatches_batches_and_acknowledges_each_message(
    settings: Settings,
    ctx: DeliveryContext,
    engine: AsyncEngine,
    directory: Directory,
    dispatch_queue: tuple[str, aio_pika.abc.AbstractQueue],
) -> None:
    name, dead = dispatch_queue
    users = [f"u-{uuid.uuid4()}" for _ in range(40)]
    events = [envelope(u) for u in users]
    broker = Broker(TEST_RABBITMQ_URL)
    await broker.start()
    try:
        for event in events:
            await publish_dispatch(broker, name, event)
        marker = uuid.uuid4().hex
        await broker.publish(name, celery_task_message("no.such.task", args=[marker]))
        broken = celery_task_message(TASK_DISPATCH, args=[{"id": marker}])
        await broker.publish(name, broken)
    finally:
        await broker.close()

    consumer = DispatchConsumer(
        settings.model_copy(update={"dispatch_batch_size": 16, "dispatch_batch_wait_ms": 50}),
        ctx,
        queue=name,
    )
    running = asyncio.create_task(consumer.run())
    try:
        await every_inbox_filled(engine, users, 20)  # what is missing, the checks below say
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 30)

    for event, user in zip(events, users, strict=True):
        record = await ctx.history.get(delivery_id(event.id, user, Channel.IN_APP))
        assert record is not None and record.status is DeliveryStatus.SENT
        assert len(await inbox_rows(engine, user)) == 1
    # Forty messages in batches of at most 16: at least three profile look-ups, and fewer
    # than one per event.
    assert 3 <= len(directory.calls) < len(users)
    assert max(len(call) for call in directory.calls) <= 16
    # Every message was acknowledged or rejected: nothing is left on the queue.
    connection = await aio_pika.connect(TEST_RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        assert queue.declaration_result.message_count == 0
    # The two that are no dispatch of Herald's went to the dead letters.
    dead_tasks = []
    for _ in range(2):
        message = await dead.get(timeout=5)
        assert message is not None
        dead_tasks.append((message.headers["task"], orjson.loads(message.body)[0]))
        await message.ack()
    assert sorted(dead_tasks) == sorted(
        [("no.such.task", [marker]), (TASK_DISPATCH, [{"id": marker}])]
    )


async def _thirty_behind_a_slow_one(
    consumer: DispatchConsumer,
    engine: AsyncEngine,
    directory: Directory,
    name: str,
    *,
    rest_seconds: float,
) -> tuple[str, list[str], bool]:
    """One event on a quiet queue, whose dispatch is held up in its profile look-up; thirty
    more sent meanwhile. Returns the users and whether the thirty were delivered within
    ``rest_seconds`` of being sent (then waits for all of them)."""
    first, *rest = [f"u-{uuid.uuid4()}" for _ in range(31)]
    broker = Broker(TEST_RABBITMQ_URL)
    await broker.start()
    running = asyncio.create_task(consumer.run())
    try:
        await publish_dispatch(broker, name, envelope(first))
        await asyncio.wait_for(directory.first_started.wait(), 10)
        await asyncio.gather(*(publish_dispatch(broker, name, envelope(u)) for u in rest))
        rest_soon = await every_inbox_filled(engine, rest, rest_seconds)
        assert await every_inbox_filled(engine, [first, *rest], 20), "not every event was delivered"
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 30)
        await broker.close()
    return first, rest, rest_soon


@pytest.mark.parametrize(
    ("update", "beside"),
    [
        ({"dispatch_batches_in_flight": 1, "dispatch_batch_wait_ms": 0}, False),
        # Two slots, but a batch starts beside a running one only once that one has run for
        # the overlap: a busy consumer runs one batch at a time, each taking what came.
        ({"dispatch_batches_in_flight": 2, "dispatch_batch_overlap_ms": 30_000}, False),
        # A batch held up past the overlap holds up nothing else.
        ({"dispatch_batches_in_flight": 2, "dispatch_batch_overlap_ms": 200}, True),
    ],
    ids=["one-slot", "overlap-not-reached", "overlap-reached"],
)
async def test_what_arrives_while_a_batch_runs_goes_in_the_next_one_or_beside_it(
    settings: Settings,
    ctx: DeliveryContext,
    engine: AsyncEngine,
    directory: Directory,
    dispatch_queue: tuple[str, aio_pika.abc.AbstractQueue],
    update: dict[str, float],
    beside: bool,
) -> None:
    name, _dead = dispatch_queue
    # Held up long enough that events going beside it are done well before it is.
    directory.first_seconds = 8.0 if beside else 1.5
    consumer = DispatchConsumer(settings.model_copy(update=update), ctx, queue=name)
    first, rest, rest_soon = await _thirty_behind_a_slow_one(
        consumer, engine, directory, name, rest_seconds=5 if beside else 0
    )
    if beside:
        # The thirty went in a batch (or a few) beside the held-up one, long before it was done.
        assert rest_soon, "the events behind a held-up batch waited for it"
        assert directory.calls[-1] == [first]
        assert sorted(u for call in directory.calls[:-1] for u in call) == sorted(rest)
        assert directory.most_at_once == 2
    else:
        # The first went at once, alone; the thirty sent while it was being dispatched waited
        # for it and then went together.
        assert [sorted(c) for c in directory.calls] == [[first], sorted(rest)]
        assert directory.most_at_once == 1


# --- acknowledgements: one `multiple` ack where it is safe, on a real RabbitMQ channel --------


@dataclasses.dataclass
class Received:
    """Ten messages taken off a queue of their own and ``received`` (tags 1 to 10, bodies 0 to
    9), and the ``basic.ack`` frames sent for them since: (tag, multiple)."""

    acks: Acknowledgements
    messages: list[AbstractIncomingMessage]
    frames: list[tuple[int, bool]]
    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    queue: str

    async def returned(self) -> list[int]:
        """Closes the channel, so RabbitMQ hands out again what was never settled, and the
        bodies it hands out."""
        assert not self.channel.is_closed, "RabbitMQ closed the channel"
        await self.channel.close()
        again = await self.connection.channel()
        queue = await again.get_queue(self.queue)
        bodies = []
        while (message := await queue.get(timeout=5, fail=False)) is not None:
            assert message.redelivered
            bodies.append(int(message.body))
            await message.ack()
        return sorted(bodies)


@pytest.fixture
async def ten() -> AsyncIterator[Received]:
    name = f"test.acks.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(TEST_RABBITMQ_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(name, auto_delete=True)
    for n in range(10):
        await channel.default_exchange.publish(aio_pika.Message(str(n).encode()), name)
    received = Received(Acknowledgements(), [], [], connection, channel, name)
    for _ in range(10):
        message = await queue.get(timeout=5)
        assert message is not None
        received.acks.received(message)
        received.messages.append(message)
    assert [m.delivery_tag for m in received.messages] == list(range(1, 11))
    underlying = received.messages[0].channel
    basic_ack = underlying.basic_ack

    async def recorded(delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        received.frames.append((delivery_tag, multiple))
        await basic_ack(delivery_tag, multiple=multiple, wait=wait)

    underlying.basic_ack = recorded  # type: ignore[method-assign]
    try:
        yield received
    finally:
        await connection.close()


async def test_a_batch_below_every_unfinished_message_is_settled_in_one_frame(
    ten: Received,
) -> None:
    acks, m, frames = ten.acks, ten.messages, ten.frames
    await acks.ack(m[0:3])  # tags 1-3, the oldest: one frame for the three
    assert frames == [(3, True)]
    await acks.ack(m[5:7])  # tags 6-7 while 4 and 5 are still at work: one by one
    assert frames[1:] == [(6, False), (7, False)]
    await acks.ack([m[3]])  # tag 4: below 5, which is still at work
    assert frames[3:] == [(4, True)]
    await acks.reject(m[7])  # tag 8: dropped (this queue has no dead letters)
    await acks.ack(m[8:10])  # tags 9-10, with 5 still at work
    assert frames[4:] == [(9, False), (10, False)]
    # Only the message still at work comes back: no ack settled it with the others.
    assert await ten.returned() == [4]


async def test_a_message_retried_alone_holds_no_later_batch_and_is_settled_last(
    ten: Received,
) -> None:
    acks, m, frames = ten.acks, ten.messages, ten.frames
    await acks.ack(m[1:10])  # everything but tag 1 (retried alone, say)
    assert frames == [(tag, False) for tag in range(2, 11)]
    await acks.ack([m[0]])
    assert frames[9:] == [(1, True)]
    assert await ten.returned() == []


async def test_acks_racing_each_other_never_settle_a_tag_twice(ten: Received) -> None:
    """Tags 6 and 7 are acknowledged one by one (1 is at work) while a second call finishes
    1-5 and 8-10, whose one ``multiple`` ack at 10 covers 6 and 7: sent before the ack of 7, it
    would make that one an unknown tag, and RabbitMQ would close the channel."""
    m = ten.messages
    await asyncio.gather(ten.acks.ack(m[5:7]), ten.acks.ack([*m[0:5], *m[7:10]]))
    assert ten.frames == [(6, False), (7, False), (10, True)]
    assert await ten.returned() == []


def test_the_supervisor_starts_a_consumer_again_when_one_ends() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["sleep", "60"])
        started.append(process)
        return process

    supervisor = Supervisor(2, spawn=spawn)
    supervisor.start()
    try:
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started) == 2
        started[0].kill()
        deadline = time.monotonic() + 5
        while len(started) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started) == 3, "the ended consumer was not started again"
    finally:
        supervisor.stop(timeout=5)
    assert all(p.poll() is not None for p in started)
    assert len(started) == 3, "a stopped supervisor started another consumer"


def test_a_consumer_starts_at_once_while_another_thread_forks() -> None:
    # The worker's main thread forks the pool's processes while the supervisor's thread
    # starts consumers. Started by fork and exec, a consumer's start waited for any process
    # forked in the meantime to end (it held the start's error pipe): here up to the 1 s
    # these live; a pool process lives as long as the worker.
    stop = threading.Event()
    forked: list[int] = []

    def fork_often() -> None:
        while not stop.is_set():
            pid = os.fork()
            if pid == 0:
                time.sleep(1)
                os._exit(0)
            forked.append(pid)
            time.sleep(0.005)

    thread = threading.Thread(target=fork_often)
    thread.start()
    slowest = 0.0
    try:
        for _ in range(30):
            began = time.monotonic()
            process = start_beside_forks([shutil.which("true") or "/bin/true"], dict(os.environ))
            slowest = max(slowest, time.monotonic() - began)
            assert process.wait(5) == 0
    finally:
        stop.set()
        thread.join()
        for pid in forked:
            os.waitpid(pid, 0)
    assert slowest < 0.5, f"a start waited {slowest:.2f} s for a process forked beside it"


async def test_opt_outs_made_within_a_tenant_count_for_its_events_only(
    ctx: DeliveryContext, engine: AsyncEngine
) -> None:
    # The user turned in-app off within acme only; their own preferences have none of it.
    user = f"u-{uuid.uuid4()}"
    async with ctx.sessionmaker() as session:
        session.add(UserPreferences(user_id=user, tenant_id="acme", disabled_channels=["in_app"]))
        await session.commit()
    acme, globex, plain = envelope(user), envelope(user), envelope(user)
    acme = dataclasses.replace(acme, tenant_id="acme")
    globex = dataclasses.replace(globex, tenant_id="globex")
    await dispatch_together(ctx, [acme, globex, plain])

    statuses = [
        (await ctx.history.get(delivery_id(e.id, user, Channel.IN_APP)))
        for e in (acme, globex, plain)
    ]
    assert [s.status if s else None for s in statuses] == [
        DeliveryStatus.SKIPPED,
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
    ]
    assert len(await inbox_rows(engine, user)) == 2


def test_an_outcome_writes_whenever_it_holds_something_save_outcome_stores() -> None:
    """``settle`` opens no transaction for an outcome without ``writes``: each field that is
    not a count or handed on after the commit must make ``writes`` true, so a new one cannot
    be skipped unnoticed."""
    after_commit = {"sent", "skipped", "retried", "failed", "dead", "ignored", "retries", "updates"}
    committed = {"dead_letters"}  # by the batch, before it records the deliveries failed
    assert not BatchOutcome().writes
    assert not BatchOutcome(sent=3, updates=[{"id": "d"}]).writes
    assert not BatchOutcome(dead_letters=[object()]).writes  # type: ignore[list-item]
    stored = [f for f in dataclasses.fields(BatchOutcome) if f.name not in after_commit | committed]
    assert {f.name for f in stored} >= {"expired_endpoints", "used_endpoints"}
    for field in stored:
        empty = getattr(BatchOutcome(), field.name)
        filled: Any = [object()] if isinstance(empty, list) else {("chat", "1"): "gone"}
        assert isinstance(empty, list | dict), field.name
        assert BatchOutcome(**{field.name: filled}).writes, field.name
