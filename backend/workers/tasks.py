"""Celery tasks: thin adapters that run a unit of work (backend/workers/units.py: it opens the
sessions and commits; services never commit) on the process's event loop, and retry it."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from backend.channels import Channel
from backend.errors import UnavailableError
from backend.queues import (
    TASK_CAMPAIGN_FAN_OUT,
    TASK_CAMPAIGN_FIRE,
    TASK_DISPATCH,
    TASK_RECIPIENTS_SYNC,
    TASK_RELEASE_DUE,
    TASK_RETENTION_SWEEP,
    TASK_SEND,
    TASK_WORKFLOW_ADVANCE,
)
from backend.services import (
    campaigns,
    deliveries,
    digests,
    events,
    recipients,
    retention,
    task_messages,
    workflows,
)
from backend.services.retries import task_retry_delay
from backend.workers import units
from backend.workers.celery_app import celery_app
from backend.workers.runtime import get_runtime, shutdown_runtime

log = logging.getLogger(__name__)


@worker_process_init.connect
def _start_runtime(**_: Any) -> None:
    get_runtime()
    # What exists now (modules, the runtime's clients) lives as long as the process: keep it
    # out of the collector's full passes, which otherwise walk it on every large dispatch.
    gc.freeze()


@worker_process_shutdown.connect
def _stop_runtime(**_: Any) -> None:
    shutdown_runtime()


@celery_app.task(name=TASK_DISPATCH, bind=True, max_retries=None)
def dispatch(self: Task, event: dict[str, Any]) -> dict[str, int]:
    """Expand an accepted event into deliveries. Retried until it succeeds: an accepted
    event is never dropped."""
    runtime = get_runtime()
    ctx = runtime.context
    assert ctx is not None
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))

    try:
        envelope = deliveries.Envelope.from_wire(event)
        summary = runtime.run(
            units.dispatch(ctx, envelope, redelivered=redelivered or self.request.retries > 0)
        )
    except Exception as exc:
        log.warning("dispatch of event %s failed, will retry: %s", event.get("id"), exc)
        raise self.retry(exc=exc, countdown=task_retry_delay(self.request.retries)) from exc
    return {"queued": summary.queued, "skipped": summary.skipped, "parts": summary.parts}


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
    ctx = runtime.context
    assert ctx is not None
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))

    try:
        outcome = runtime.run(
            units.send(
                ctx,
                envelope=deliveries.Envelope.from_wire(event),
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
            countdown=task_retry_delay(self.request.retries),
            kwargs=task_messages.send(
                deliveries.Envelope.from_wire(event),
                Channel(channel),
                delivery_ids,
                attempt=attempt,
                resume=True,
            ).kwargs,
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
    """Publish scheduled events whose time has come, the next page of campaign runs that
    stalled, and a stalled recipient sync's task again (run every second by beat)."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.broker is not None
    broker = runtime.broker

    async def release() -> int:
        assert runtime.context is not None
        settings = runtime.context.settings
        async with runtime.context.sessionmaker() as session:
            count = await events.release_due_events(session, broker=broker)
            count += await digests.release_due_digests(session, broker=broker)
            count += await workflows.release_due_runs(
                session,
                broker=broker,
                lease_seconds=settings.workflow_run_lease_seconds,
                limit=settings.workflow_release_batch_size,
                batch_size=settings.workflow_advance_batch_size,
            )
            stalled = await campaigns.stalled_runs(
                session, stall=timedelta(seconds=settings.campaign_stall_seconds)
            )
            await session.commit()
        publisher = campaigns.BrokerRunPublisher(broker)
        for run_id, page in stalled:
            log.warning("campaign run %s stalled before page %d; publishing it again", run_id, page)
            await publisher.publish_page(run_id, page)
        # Last: a failure here (the broker refusing the task) must not keep the campaign
        # pages claimed above from being published in this sweep.
        assert runtime.redis is not None
        async with runtime.context.sessionmaker() as session:
            await recipients.resume_stalled(
                session,
                runtime.redis,
                broker,
                stall_seconds=settings.recipient_sync_stall_seconds,
            )
        return count

    try:
        return runtime.run(release())
    except UnavailableError as exc:
        log.warning("releasing due events failed (broker): %s", exc)
        return 0


@celery_app.task(name=TASK_RETENTION_SWEEP, bind=True, ignore_result=True)
def sweep_retention(self: Task) -> dict[str, int]:
    """Delete history and inbox rows older than the retention settings, in batches of
    ``retention_batch_size``, one transaction each (run by beat every
    ``retention_sweep_seconds``)."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.history is not None
    context, history = runtime.context, runtime.history
    settings = context.settings
    size = settings.retention_batch_size

    async def sweep() -> dict[str, int]:
        now = datetime.now(UTC)
        deliveries_deleted = await retention.purge_history(
            history, now=now, days=settings.history_retention_days, batch_size=size
        )
        inbox_deleted = 0
        while True:
            async with context.sessionmaker() as session:
                deleted = await retention.purge_inbox_batch(
                    session, now=now, days=settings.inbox_retention_days, batch_size=size
                )
                await session.commit()
            inbox_deleted += deleted
            if deleted < size:
                break
        if deliveries_deleted or inbox_deleted:
            log.info(
                "retention: %d deliveries and %d inbox items deleted",
                deliveries_deleted,
                inbox_deleted,
            )
        return {"deliveries": deliveries_deleted, "inbox_items": inbox_deleted}

    return runtime.run(sweep())


@celery_app.task(name=TASK_CAMPAIGN_FIRE, bind=True, max_retries=None)
def fire_campaign(self: Task, campaign_id: str) -> str | None:
    """Start a campaign's due run (sent by its RedBeat entry). Retried until it gets through:
    the run key makes a repeat harmless."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.broker is not None
    ctx, broker = runtime.context, runtime.broker

    async def fire() -> str | None:
        async with ctx.sessionmaker() as session:
            early = await campaigns.seconds_early(session, campaign_id=campaign_id)
        if early:
            await asyncio.sleep(early)  # a trigger at the whole second before a fraction
        effects = campaigns.CampaignEffects()
        async with ctx.sessionmaker() as session:
            run = await campaigns.fire_campaign(session, campaign_id=campaign_id, effects=effects)
            await session.commit()
        await effects.apply(trigger(), campaigns.BrokerRunPublisher(broker))
        return str(run.id) if run is not None else None

    try:
        return runtime.run(fire())
    except Exception as exc:
        log.warning("firing campaign %s failed, will retry: %s", campaign_id, exc)
        raise self.retry(exc=exc, countdown=task_retry_delay(self.request.retries)) from exc


@celery_app.task(name=TASK_CAMPAIGN_FAN_OUT, bind=True, max_retries=None)
def fan_out(self: Task, run_id: str, page: int, after: str | None = None) -> dict[str, Any]:
    """Dispatch one page of a campaign run's audience and hand on the next page."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.broker is not None and runtime.users
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        outcome = runtime.run(
            units.fan_out_page(
                runtime.context,
                run_id=run_id,
                page=page,
                after=after,
                users=runtime.users,
                publisher=campaigns.BrokerRunPublisher(runtime.broker),
                redelivered=redelivered or self.request.retries > 0,
            )
        )
    except Exception as exc:
        log.warning("campaign run %s page %d failed, will retry: %s", run_id, page, exc)
        raise self.retry(exc=exc, countdown=task_retry_delay(self.request.retries)) from exc
    return {
        "recipients": outcome.recipients,
        "queued": outcome.queued,
        "skipped": outcome.skipped,
        "stopped": outcome.stopped,
    }


@celery_app.task(name=TASK_RECIPIENTS_SYNC, bind=True, ignore_result=True)
def sync_recipients(self: Task, sync_id: str) -> None:
    """Import the auth service's user list into recipients; the job records its own progress
    and failure (``recipientSync``), so the task is not retried. Acknowledged late: a worker
    that dies mid-job leaves the message to be redelivered, and the redelivered task resumes
    the job from its last committed page."""
    runtime = get_runtime()
    assert runtime.context is not None and runtime.users is not None
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    runtime.run(
        recipients.run_sync(
            runtime.context.sessionmaker,
            users=runtime.users,
            sync_id=uuid.UUID(sync_id),
            page_size=runtime.settings.recipient_sync_page_size,
            stall_seconds=runtime.settings.recipient_sync_stall_seconds,
            takeover=redelivered,
        )
    )


@celery_app.task(name=TASK_WORKFLOW_ADVANCE, bind=True, max_retries=None)
def advance_workflow_runs(self: Task, run_ids: list[str] | str) -> dict[str, Any]:
    """Take a batch of workflow runs through their steps until each waits or ends. Retried
    until it gets through; a run another worker holds, or that waits, is left alone. A
    redelivered message (its worker died) takes over the runs that worker held."""
    runtime = get_runtime()
    assert runtime.context is not None
    ids = [run_ids] if isinstance(run_ids, str) else run_ids  # a message of one run
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        advanced = runtime.run(
            units.advance_workflow_runs(
                runtime.context, run_ids=ids, http=runtime.http, takeover=redelivered
            )
        )
    except Exception as exc:
        log.warning("workflow runs %s failed, will retry: %s", ids[:3], exc)
        raise self.retry(exc=exc, countdown=task_retry_delay(self.request.retries)) from exc
    return {r: {"status": a.status, "steps": a.steps} for r, a in advanced.items()}


def trigger() -> campaigns.CampaignTrigger:
    from backend.workers.schedules import RedBeatTrigger

    return RedBeatTrigger(celery_app)
