"""Every Celery task message Herald puts on RabbitMQ, built in one place.

One function per task, named after it; each returns a :class:`TaskMessage` (queue, task name,
arguments, task id, delay) that a producer publishes with :meth:`TaskMessage.publish`, or that a
scheduler turns into an entry (RedBeat, beat). The consumers are the tasks in
``backend.workers``; ``tests/test_task_messages.py`` checks that each accepts what its builder
makes. Queue and task names stay in ``backend.queues``, the leaf the broker topology and the
Celery app read; the builders sit with the services because their arguments are service types
(``Envelope``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.broker import Broker
from backend.channels import Channel
from backend.queues import (
    CHANNEL_QUEUES,
    TASK_CAMPAIGN_FAN_OUT,
    TASK_CAMPAIGN_FIRE,
    TASK_DISPATCH,
    TASK_QUEUES,
    TASK_RECIPIENTS_SYNC,
    TASK_RELEASE_DUE,
    TASK_RETENTION_SWEEP,
    TASK_SEND,
    TASK_WEBHOOK_DELIVER,
    TASK_WORKFLOW_ADVANCE,
)
from backend.services.envelope import Envelope


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One task message: what a Celery worker needs to run ``task``, and where it waits."""

    queue: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    countdown: float | None = None

    async def publish(self, broker: Broker) -> str:
        """Publish through the confirming publisher; the task id."""
        return await broker.publish_task(
            self.queue,
            self.task,
            args=self.args,
            kwargs=self.kwargs,
            task_id=self.task_id,
            countdown=self.countdown,
        )


def _message(task: str, **fields: Any) -> TaskMessage:
    """A message for ``task`` on the queue its worker route names (``TASK_QUEUES``)."""
    return TaskMessage(TASK_QUEUES[task], task, **fields)


def dispatch(event: Envelope | dict[str, Any]) -> TaskMessage:
    """``events.dispatch``: expand an event into deliveries. ``event`` is an envelope, or its
    wire form as stored with a scheduled event (passed on unchanged). A dispatch part has a task
    id of its own, so the parts of one broadcast are told apart in the worker's logs."""
    if isinstance(event, Envelope):
        wire = event.to_wire()
        task_id = event.id if event.part is None else f"{event.id}:part-{event.part}"
        if event.topic_page is not None:
            task_id = f"{event.id}:topics-{event.topic_page}"
        elif event.via_topics and event.part is not None:
            task_id = f"{event.id}:topic-part-{event.part}"
    else:
        wire, task_id = event, str(event["id"])
    return _message(TASK_DISPATCH, kwargs={"event": wire}, task_id=task_id)


def send(
    envelope: Envelope,
    channel: Channel,
    delivery_ids: Sequence[str],
    *,
    attempt: int,
    countdown: float | None = None,
    resume: bool = False,
) -> TaskMessage:
    """``deliveries.send``: send one channel batch (``attempt`` counts from 1; ``resume`` lets
    the batch take over deliveries left in ``sending`` once their lease ran out)."""
    return TaskMessage(
        CHANNEL_QUEUES[channel],
        TASK_SEND,
        kwargs={
            "event": envelope.to_wire(),
            "channel": channel.value,
            "delivery_ids": list(delivery_ids),
            "attempt": attempt,
            "resume": resume,
        },
        countdown=countdown,
    )


def campaign_fire(campaign_id: str) -> TaskMessage:
    """``campaigns.fire``: start a campaign's due run (sent by its RedBeat entry)."""
    return _message(TASK_CAMPAIGN_FIRE, args=(campaign_id,))


def campaign_fan_out(run_id: str, page: int, after: str | None = None) -> TaskMessage:
    """``campaigns.fan_out``: dispatch one page of a run's audience. One task id per page.
    ``after`` (only when set): where a keyset audience's page starts (a topic audience: the
    last user id of the page before)."""
    kwargs: dict[str, Any] = {"run_id": run_id, "page": page}
    if after is not None:
        kwargs["after"] = after
    return _message(TASK_CAMPAIGN_FAN_OUT, kwargs=kwargs, task_id=f"{run_id}/{page}")


def webhook_deliver(
    *,
    endpoint_id: str,
    message_id: str,
    created_at: str,
    updates: list[dict[str, Any]],
    attempt: int = 1,
    countdown: float | None = None,
    type: str | None = None,
) -> TaskMessage:
    """``webhooks.deliver``: one signed POST of status changes (``type`` None) or of another
    kind of message (``delivery.engaged``: opens and clicks) to one endpoint (``attempt``
    counts from 1; the task sends itself the next one after a backoff). A status change's
    message carries no ``type``, as before there were others: a worker not yet updated still
    takes it."""
    kwargs: dict[str, Any] = {
        "endpoint_id": endpoint_id,
        "message_id": message_id,
        "created_at": created_at,
        "updates": updates,
        "attempt": attempt,
    }
    if type is not None:
        kwargs["type"] = type
    return _message(TASK_WEBHOOK_DELIVER, kwargs=kwargs, countdown=countdown)


def release_due() -> TaskMessage:
    """``events.release_due``: publish due scheduled events, digests and stalled campaign
    pages (sent every second by beat)."""
    return _message(TASK_RELEASE_DUE)


def recipients_sync(sync_id: str) -> TaskMessage:
    """``recipients.sync``: import the auth service's user list into recipients (one job)."""
    return _message(TASK_RECIPIENTS_SYNC, args=(sync_id,), task_id=f"recipients-sync/{sync_id}")


def retention_sweep() -> TaskMessage:
    """``retention.sweep``: delete history and inbox rows older than the retention settings
    (sent by beat every ``retention_sweep_seconds``)."""
    return _message(TASK_RETENTION_SWEEP)


def workflow_advance(run_ids: Sequence[str]) -> TaskMessage:
    """``workflows.advance``: take a batch of workflow runs through their steps until each
    waits or ends."""
    return _message(TASK_WORKFLOW_ADVANCE, args=(list(run_ids),))
