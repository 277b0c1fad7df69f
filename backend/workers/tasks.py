"""Celery tasks: thin adapters that run one service call on the process's event loop."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from backend.channels import Channel
from backend.errors import UnavailableError
from backend.queues import TASK_DISPATCH, TASK_RELEASE_DUE, TASK_SEND
from backend.services import deliveries, events
from backend.workers.celery_app import celery_app
from backend.workers.runtime import get_runtime, shutdown_runtime

log = logging.getLogger(__name__)


@worker_process_init.connect
def _start_runtime(**_: Any) -> None:
    get_runtime()


@worker_process_shutdown.connect
def _stop_runtime(**_: Any) -> None:
    shutdown_runtime()


def _retry_delay(retries: int) -> float:
    return float(min(60, 2 ** min(retries, 6)))


@celery_app.task(name=TASK_DISPATCH, bind=True, max_retries=None)
def dispatch(self: Task, event: dict[str, Any]) -> dict[str, int]:
    """Expand an accepted event into deliveries. Retried until it succeeds: an accepted
    event is never dropped."""
    runtime = get_runtime()
    assert runtime.context is not None
    try:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        summary = runtime.run(
            deliveries.dispatch_event(
                runtime.context, event, redelivered=redelivered or self.request.retries > 0
            )
        )
    except Exception as exc:
        log.warning("dispatch of event %s failed, will retry: %s", event.get("id"), exc)
        raise self.retry(exc=exc, countdown=_retry_delay(self.request.retries)) from exc
    return {"queued": summary.queued, "skipped": summary.skipped}


@celery_app.task(name=TASK_SEND, bind=True, max_retries=None)
def send(
    self: Task,
    event: dict[str, Any],
    channel: str,
    delivery_ids: list[str],
    attempt: int = 1,
    resume: bool = False,
) -> dict[str, int]:
    """Send one channel batch. A redelivered message (its worker died) may take over
    deliveries left in ``sending``; so may this task's own retry after an unexpected error."""
    runtime = get_runtime()
    assert runtime.context is not None
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        outcome = runtime.run(
            deliveries.send_batch(
                runtime.context,
                envelope=event,
                channel=Channel(channel),
                delivery_ids=delivery_ids,
                attempt=attempt,
                resume=resume or redelivered,
            )
        )
    except Exception as exc:
        log.warning("send batch for event %s failed, will resume: %s", event.get("id"), exc)
        raise self.retry(
            exc=exc,
            countdown=_retry_delay(self.request.retries),
            kwargs={
                "event": event,
                "channel": channel,
                "delivery_ids": delivery_ids,
                "attempt": attempt,
                "resume": True,
            },
        ) from exc
    return {
        "sent": outcome.sent,
        "retried": outcome.retried,
        "failed": outcome.failed,
        "dead": outcome.dead,
        "skipped": outcome.skipped,
        "ignored": outcome.ignored,
    }


@celery_app.task(name=TASK_RELEASE_DUE, bind=True, ignore_result=True)
def release_due(self: Task) -> int:
    """Publish scheduled events whose time has come (run every second by beat)."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.broker is not None
    broker = runtime.broker

    async def release() -> int:
        assert runtime.context is not None
        async with runtime.context.sessionmaker() as session:
            count = await events.release_due_events(session, broker=broker)
            await session.commit()
            return count

    try:
        return runtime.run(release())
    except UnavailableError as exc:
        log.warning("releasing due events failed (broker): %s", exc)
        return 0
