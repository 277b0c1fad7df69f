"""Workflow runs: one event for one user going through a workflow version, durably.

A run is a row in PostgreSQL (``workflow_runs``): the version, the context (payload, each
step's outcome), a cursor to the next step, and while it waits, a due time. Nothing sleeps:

- **start**: dispatch of an event whose type has a (non-plain) workflow inserts one run per
  user, with an id derived from (event, user), so a dispatch run twice starts nothing twice;
  once committed, they are taken through their first steps, or handed on in batches (a
  ``workflows.advance`` message carries up to ``workflow_advance_batch_size`` runs).
- **advance** (``advance``): a worker leases a batch of runs (``leased_until``), then goes
  round by round: in one transaction it claims every run's step at its cursor
  (``workflow_run_steps``, unique per run and step path; committed before the step acts);
  the steps act; the next round's transaction marks them done and moves the cursors on with
  the next claims. A step whose row is done is never run again; a step left ``running`` by
  a worker that died is run again by the next one, which is safe for what acts: a send
  step's deliveries have ids derived from the run and step (``delivery_id``), so
  dispatching it again stores and sends nothing twice.
- **wait**: a delay (or a digest window) sets ``status = waiting`` and ``due_at``, commits and
  lets go of the run. The release sweep (``events.release_due``, every second from beat)
  publishes the advance messages of runs whose time has come (a batch a message), and of
  runs whose worker died (lease over) or whose first message was lost, so a killed worker
  or a broker restart leaves no run behind.
- **cancel**: ``cancelWorkflowRuns(key)``, or an event of a type whose workflow cancels
  another's, sets unfinished runs to ``cancelled``; a worker checks before each step and
  writes its progress only while the run is still ``running``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from backend.broker import Broker
from backend.db.models import Workflow
from backend.db.repositories.workflows import (
    WorkflowRepository,
    WorkflowRunRepository,
    WorkflowStepRepository,
)
from backend.services import task_messages
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import NAMESPACE
from backend.services.envelope import Envelope
from backend.services.workflows.definitions import (
    first_path,
)

log = logging.getLogger(__name__)


# How many lease lengths a run may stay queued before its message is taken as lost.
QUEUED_STALL_LEASES = 10


def run_id_of(event_id: str, user_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{event_id}/{user_id}/workflow")


def step_event_id(run_id: uuid.UUID, path: str) -> str:
    """The event id a send step dispatches under: its deliveries' ids derive from it."""
    return str(uuid.uuid5(NAMESPACE, f"{run_id}/step/{path}"))


async def step_event_ids(session: AsyncSession, *, event_id: str) -> list[str]:
    """The event ids the send steps of the event's runs dispatched under: their deliveries
    are the event's too (history filtered by the event finds them)."""
    steps = await WorkflowStepRepository(session).send_steps_of_event(event_id)
    return [step_event_id(run_id, path) for run_id, path in steps]


def starts_runs(envelope: Envelope, *, part_size: int, split: bool) -> bool:
    """Whether this dispatch starts workflow runs now (a topic page or a broadcast too large
    for one part is first expanded into parts, which then start them)."""
    if envelope.workflow_id is None or envelope.topic_page is not None:
        return False
    return not (split and envelope.part is None and len(envelope.recipients) > part_size)


async def cancel_for_event(session: AsyncSession, envelope: Envelope) -> int:
    """Cancel the runs that this event's type cancels, for its users (and its cancel key)."""
    if not envelope.cancels or not envelope.recipients:
        return 0
    return await WorkflowRunRepository(session).cancel(
        now=datetime.now(UTC),
        key=envelope.cancel_key,
        event_types=envelope.cancels,
        user_ids=envelope.recipients,
    )


async def start_runs(
    session: AsyncSession, envelope: Envelope, *, redelivered: bool = False
) -> list[str]:
    """One run per user of the event through its workflow version; the ids of the runs
    added (none of those a previous dispatch of the same event added). ``redelivered`` (the
    dispatch came back after its worker died): also those of the event's runs for its users
    that the dead worker added and left queued or running, for this one to take over."""
    assert envelope.workflow_id is not None
    workflow = await workflow_version(session, uuid.UUID(envelope.workflow_id))
    if workflow is None:  # the event type was deleted with its workflows
        log.warning("event %s names a workflow that is gone; nothing sent", envelope.id)
        return []
    first = first_path(workflow.steps)
    now = datetime.now(UTC)
    wire = envelope.without_recipients().to_wire()
    rows = [
        {
            "id": run_id_of(envelope.id, user),
            "workflow_id": workflow.id,
            "event_type": envelope.type,
            "event_id": envelope.id,
            "user_id": user,
            "status": "queued",
            "cancel_key": envelope.cancel_key,
            "cursor": first,
            "context": {"payload": envelope.payload, "steps": {}},
            "envelope": wire,
            "created_at": now,
            "updated_at": now,
        }
        for user in envelope.recipients
    ]
    added: list[str] = []
    repo = WorkflowRunRepository(session)
    for start in range(0, len(rows), 1000):
        added += [str(i) for i in await repo.add_many(rows[start : start + 1000])]
    if redelivered:
        left = await repo.unfinished_of_event(envelope.id, user_ids=envelope.recipients)
        added = list(dict.fromkeys([*added, *(str(i) for i in left)]))
    return added


async def publish_advances(ctx: DeliveryContext, run_ids: Sequence[str]) -> None:
    """Hand the new runs to the workers (after their rows committed), a batch a message."""
    size = ctx.settings.workflow_advance_batch_size
    await asyncio.gather(
        *(
            ctx.queue.enqueue_send(task_messages.workflow_advance(list(run_ids[n : n + size])))
            for n in range(0, len(run_ids), size)
        )
    )


async def release_due_runs(
    session: AsyncSession,
    *,
    broker: Broker,
    lease_seconds: float,
    limit: int = 500,
    batch_size: int = 100,
) -> int:
    """Publish the advance messages of runs whose wait is over, whose worker died (lease
    over) or whose message was lost (queued for ten leases' length), ``batch_size`` runs a
    message, then mark them queued (in the caller's unit of work). A crash between the two
    publishes again, which advancing tolerates: the lease lets one worker in, the step claims
    run each step once."""
    now = datetime.now(UTC)
    repo = WorkflowRunRepository(session)
    # A queued run's message may just be waiting behind a backlog: only one queued for many
    # leases is taken as lost (publishing again sooner doubled the backlog under load).
    due = await repo.due(
        now,
        limit,
        lost_before=now - timedelta(seconds=lease_seconds * QUEUED_STALL_LEASES),
    )
    ids = [str(r) for r in due]
    await asyncio.gather(
        *(
            task_messages.workflow_advance(ids[n : n + batch_size]).publish(broker)
            for n in range(0, len(ids), batch_size)
        )
    )
    await repo.mark_queued(due, now)
    return len(due)


_versions: dict[uuid.UUID, Workflow] = {}


async def workflow_version(session: AsyncSession, workflow_id: uuid.UUID) -> Workflow | None:
    # A version never changes once saved: keep it for the process's life.
    found = _versions.get(workflow_id)
    if found is None:
        found = await WorkflowRepository(session).get(workflow_id)
        if found is not None:
            session.expunge(found)
            _versions[workflow_id] = found
    return found
