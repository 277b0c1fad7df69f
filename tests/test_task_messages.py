"""Task messages round trip: what each builder in ``backend.services.task_messages`` makes goes
through RabbitMQ as Celery's protocol v2 and is accepted by the task that consumes it."""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest

# Registers webhooks.deliver with the Celery app.
import backend.workers.webhook_tasks  # noqa: F401
from backend.broker import Broker
from backend.channels import Channel
from backend.queues import CHANNEL_QUEUES, WORK_QUEUES
from backend.services import task_messages
from backend.services.envelope import Envelope
from backend.services.task_messages import TaskMessage
from backend.workers import tasks
from backend.workers.celery_app import celery_app
from tests.conftest import TEST_RABBITMQ_URL


def _envelope(**changes: Any) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        type="user_registered",
        user_ids=("u-ada", "u-bob"),
        payload={"plan": "pro"},
        template_slug="welcome",
        channels=(Channel.EMAIL, Channel.IN_APP),
        locale=None,
        critical=False,
        created_at="2026-01-01T00:00:00+00:00",
        **changes,
    )


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    broker = Broker(TEST_RABBITMQ_URL)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


async def _published(broker: Broker, message: TaskMessage) -> tuple[dict[str, Any], list[Any]]:
    """Publish ``message`` and take it off RabbitMQ: its headers and ``[args, kwargs]``.

    It goes to a queue of this test's own rather than ``message.queue``, where a worker of
    another test may be waiting for it; the message itself is the builder's, byte for byte."""
    connection = await aio_pika.connect(TEST_RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        task_id = await dataclasses.replace(message, queue=queue.name).publish(broker)
        got = await queue.get(timeout=5, fail=True)
        assert got is not None
        await got.ack()
    assert got.headers["id"] == task_id
    args, kwargs, _embed = orjson.loads(got.body)
    return dict(got.headers), [args, kwargs]


async def _accepted(broker: Broker, message: TaskMessage) -> dict[str, Any]:
    """The arguments the consuming task is called with, after the trip through RabbitMQ."""
    assert message.queue in WORK_QUEUES  # a queue every worker consumes
    headers, (args, kwargs) = await _published(broker, message)
    consumer = celery_app.tasks[headers["task"]]
    route = celery_app.conf.task_routes.get(headers["task"])
    if route is not None:
        assert route["queue"] == message.queue
    # Raises TypeError when the task does not take what the builder made.
    bound = inspect.signature(consumer.run).bind(*args, **kwargs)
    return dict(bound.arguments)


async def test_dispatch_carries_the_envelope(broker: Broker) -> None:
    envelope = _envelope()
    message = task_messages.dispatch(envelope)
    assert message.task_id == envelope.id
    called = await _accepted(broker, message)
    assert Envelope.from_wire(called["event"]) == envelope


async def test_dispatch_part_has_a_task_id_of_its_own(broker: Broker) -> None:
    part = _envelope().for_users(["u-bob"], part=3)
    message = task_messages.dispatch(part)
    assert message.task_id == f"{part.id}:part-3"
    called = await _accepted(broker, message)
    assert Envelope.from_wire(called["event"]) == part


async def test_dispatch_of_a_stored_envelope_passes_it_on_unchanged(broker: Broker) -> None:
    stored = _envelope(quiet_released=True).to_wire()
    message = task_messages.dispatch(stored)
    assert message.task_id == stored["id"]
    assert (await _accepted(broker, message))["event"] == stored


async def test_send_carries_a_channel_batch(broker: Broker) -> None:
    envelope = _envelope().without_recipients()
    message = task_messages.send(envelope, Channel.SMS, ["d-1", "d-2"], attempt=2, resume=True)
    assert message.queue == CHANNEL_QUEUES[Channel.SMS]
    called = await _accepted(broker, message)
    assert Envelope.from_wire(called["event"]) == envelope
    assert Channel(called["channel"]) is Channel.SMS
    assert called["delivery_ids"] == ["d-1", "d-2"]
    assert (called["attempt"], called["resume"]) == (2, True)


async def test_send_with_a_countdown_waits(broker: Broker) -> None:
    message = task_messages.send(_envelope(), Channel.EMAIL, ["d-1"], attempt=1, countdown=30)
    headers, _ = await _published(broker, message)
    assert headers["eta"] is not None


async def test_campaign_fire_names_the_campaign(broker: Broker) -> None:
    called = await _accepted(broker, task_messages.campaign_fire("c-42"))
    assert called == {"campaign_id": "c-42"}


async def test_campaign_fan_out_names_the_run_page(broker: Broker) -> None:
    message = task_messages.campaign_fan_out("r-7", 4)
    assert message.task_id == "r-7/4"
    assert await _accepted(broker, message) == {"run_id": "r-7", "page": 4}


async def test_webhook_deliver_carries_the_updates(broker: Broker) -> None:
    updates = [{"id": "d-1", "status": "sent"}]
    message = task_messages.webhook_deliver(
        endpoint_id="w-1", message_id="m-1", created_at="2026-01-01T00:00:00Z", updates=updates
    )
    called = await _accepted(broker, message)
    assert called == {
        "endpoint_id": "w-1",
        "message_id": "m-1",
        "created_at": "2026-01-01T00:00:00Z",
        "updates": updates,
        "attempt": 1,
    }
    # Without a type, as before there were other kinds: a worker not yet updated takes it.
    assert "type" not in message.kwargs


async def test_webhook_deliver_carries_opens_and_clicks_with_their_type(broker: Broker) -> None:
    items = [{"id": "d-1", "kind": "opened", "url": None}]
    message = task_messages.webhook_deliver(
        endpoint_id="w-1",
        message_id="m-2",
        created_at="2026-01-01T00:00:00Z",
        updates=items,
        type="delivery.engaged",
    )
    called = await _accepted(broker, message)
    assert (called["updates"], called["type"]) == (items, "delivery.engaged")


# The beat schedule's entries: the message each sends, its task name, the task consuming it.
PERIODIC = {
    "release-due-events": (task_messages.release_due, "events.release_due", tasks.release_due),
    "retention-sweep": (task_messages.retention_sweep, "retention.sweep", tasks.sweep_retention),
}


@pytest.mark.parametrize("entry_name", PERIODIC)
async def test_a_periodic_task_takes_nothing(broker: Broker, entry_name: str) -> None:
    build, _, _ = PERIODIC[entry_name]
    assert await _accepted(broker, build()) == {}


@pytest.mark.parametrize("entry_name", PERIODIC)
def test_the_beat_schedule_sends_a_periodic_task_to_its_queue(entry_name: str) -> None:
    build, task_name, consumer = PERIODIC[entry_name]
    entry = celery_app.conf.beat_schedule[entry_name]
    message = build()
    assert (entry["task"], entry["options"]["queue"]) == (message.task, message.queue)
    assert message.task == task_name
    assert message.task in celery_app.tasks
    assert consumer.name == message.task
