"""The status-webhook task: one signed POST of a batch of status changes (or of opens and
clicks) to one endpoint, retried with exponential backoff (backend.services.webhooks)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from backend.queues import TASK_WEBHOOK_DELIVER
from backend.services import task_messages, webhooks
from backend.services.retries import task_retry_delay
from backend.workers.celery_app import celery_app
from backend.workers.runtime import get_runtime

log = logging.getLogger(__name__)


@celery_app.task(name=TASK_WEBHOOK_DELIVER, bind=True, max_retries=None)
def deliver(
    self: Task,
    endpoint_id: str,
    message_id: str,
    created_at: str,
    updates: list[dict[str, Any]],
    attempt: int = 1,
    type: str | None = None,
) -> dict[str, Any]:
    """POST the updates and log the attempt; a failure comes back after its backoff as the
    next attempt, until ``webhook_max_attempts``."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.http is not None
    ctx, http = runtime.context, runtime.http

    # The message as its endpoint gets it on every attempt.
    message: dict[str, Any] = {
        "endpoint_id": endpoint_id,
        "message_id": message_id,
        "created_at": created_at,
        "updates": updates,
        "type": type,
    }

    async def attempt_once() -> webhooks.AttemptResult:
        async with ctx.sessionmaker() as session:
            result = await webhooks.deliver(session, http, ctx.settings, attempt=attempt, **message)
            await session.commit()
        return result

    def again(attempt: int) -> dict[str, Any]:
        return task_messages.webhook_deliver(attempt=attempt, **message).kwargs

    try:
        result = runtime.run(attempt_once())
    except Exception as exc:
        # The database is down (the attempt could not be logged): the same attempt again soon.
        log.warning("webhook %s attempt %d could not run: %s", message_id, attempt, exc)
        delay = task_retry_delay(self.request.retries)
        raise self.retry(exc=exc, countdown=delay, kwargs=again(attempt)) from exc
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in, kwargs=again(attempt + 1))
    return {"delivered": result.delivered, "dropped": result.dropped, "attempt": attempt}
