"""Workflow runs: one event for one user going through a workflow version, durably.

A run is a row in PostgreSQL (``workflow_runs``): the version, the context (payload, each
step's outcome), a cursor to the next step, and while it waits, a due time. Nothing sleeps:

- **start**: dispatch of an event whose type has a (non-plain) workflow inserts one run per
  user, with an id derived from (event, user), so a dispatch run twice starts nothing twice;
  once committed, each new run's ``workflows.advance`` message is published.
- **advance**: a worker leases the run (``leased_until``), then for each step: claims the step
  row (``workflow_run_steps``, unique per run and step path; committed before the step acts),
  acts, and in one transaction marks the step done and moves the cursor. A step whose row is
  done is never run again; a step left ``running`` by a worker that died is run again by the
  next one, which is safe for what acts: a send step's deliveries have ids derived from the
  run and step (``delivery_id``), so dispatching it again stores and sends nothing twice.
- **wait**: a delay (or a digest window) sets ``status = waiting`` and ``due_at``, commits and
  lets go of the run. The release sweep (``events.release_due``, every second from beat)
  publishes the advance message of every run whose time has come, and of runs whose worker
  died (lease over) or whose first message was lost, so a killed worker or a broker restart
  leaves no run behind.
- **cancel**: ``cancelWorkflowRuns(key)``, or an event of a type whose workflow cancels
  another's, sets unfinished runs to ``cancelled``; a worker checks before each step and
  writes its progress only while the run is still ``running``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.broker import Broker
from backend.channels import Channel
from backend.db.models import InboxItem, Workflow, WorkflowRun, WorkflowRunStep
from backend.db.repositories.workflows import (
    WorkflowRepository,
    WorkflowRunRepository,
    WorkflowStepRepository,
)
from backend.errors import TemplateRenderError
from backend.services import conditions, rendering, task_messages, workflows
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import NAMESPACE, delivery_id
from backend.services.envelope import Envelope
from backend.services.retries import backoff_seconds

log = logging.getLogger(__name__)


class Dispatch(Protocol):
    """The worker's dispatch unit: record and send an envelope's deliveries."""

    def __call__(self, envelope: Envelope, *, redelivered: bool) -> Awaitable[Any]: ...


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


async def start_runs(session: AsyncSession, envelope: Envelope) -> list[str]:
    """One run per user of the event through its workflow version; the ids of the runs
    added (none of those a previous dispatch of the same event added)."""
    assert envelope.workflow_id is not None
    workflow = await _workflow(session, uuid.UUID(envelope.workflow_id))
    if workflow is None:  # the event type was deleted with its workflows
        log.warning("event %s names a workflow that is gone; nothing sent", envelope.id)
        return []
    first = workflows.first_path(workflow.steps)
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
    return added


async def publish_advances(ctx: DeliveryContext, run_ids: Sequence[str]) -> None:
    """Hand the new runs to the workers (after their rows committed)."""
    await asyncio.gather(
        *(ctx.queue.enqueue_send(task_messages.workflow_advance(r)) for r in run_ids)
    )


async def release_due_runs(
    session: AsyncSession, *, broker: Broker, lease_seconds: float, limit: int = 500
) -> int:
    """Publish the advance message of runs whose wait is over, whose worker died (lease over)
    or whose message was lost (queued for ten leases' length), then mark them queued (in
    the caller's unit of work). A crash between the two publishes again, which advancing
    tolerates: the lease lets one worker in, the step claims run each step once."""
    now = datetime.now(UTC)
    repo = WorkflowRunRepository(session)
    # A queued run's message may just be waiting behind a backlog: only one queued for many
    # leases is taken as lost (publishing again sooner doubled the backlog under load).
    due = await repo.due(
        now,
        limit,
        lost_before=now - timedelta(seconds=lease_seconds * QUEUED_STALL_LEASES),
    )
    await asyncio.gather(*(task_messages.workflow_advance(str(r)).publish(broker) for r in due))
    await repo.mark_queued(due, now)
    return len(due)


# --- advancing a run -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advanced:
    status: str  # the run's status when this worker let go of it ("" when it was not its)
    steps: int  # steps this call completed


_workflows: dict[uuid.UUID, Workflow] = {}


async def _workflow(session: AsyncSession, workflow_id: uuid.UUID) -> Workflow | None:
    # A version never changes once saved: keep it for the process's life.
    found = _workflows.get(workflow_id)
    if found is None:
        found = await WorkflowRepository(session).get(workflow_id)
        if found is not None:
            session.expunge(found)
            _workflows[workflow_id] = found
    return found


@dataclass
class _Run:
    """The run as this worker holds it while advancing."""

    id: uuid.UUID
    user_id: str
    event_type: str
    event_id: str
    envelope: Envelope
    cursor: str | None
    context: dict[str, Any]
    workflow: Workflow


async def advance(
    ctx: DeliveryContext,
    *,
    run_id: str,
    dispatch: Dispatch,
    http: httpx.AsyncClient | None,
) -> Advanced:
    """Take the run through its steps until it waits, ends or is cancelled. ``dispatch`` is
    the worker's dispatch unit (records and sends an envelope's deliveries, committing as it
    goes): a send step is an event dispatch of its own."""
    ident = uuid.UUID(run_id)
    lease = timedelta(seconds=ctx.settings.workflow_run_lease_seconds)
    now = datetime.now(UTC)
    async with ctx.sessionmaker() as session:
        row = await WorkflowRunRepository(session).lease(ident, now=now, until=now + lease)
        if row is None:
            await session.commit()
            return Advanced("", 0)
        workflow = await _workflow(session, row.workflow_id)
        run = _Run(
            id=row.id,
            user_id=row.user_id,
            event_type=row.event_type,
            event_id=row.event_id,
            envelope=Envelope.from_wire(row.envelope),
            cursor=row.cursor,
            context=dict(row.context),
            workflow=workflow,  # type: ignore[arg-type]
        )
        await session.commit()
    if workflow is None:
        await _finish(ctx, run, "failed", error="the workflow version is gone")
        return Advanced("failed", 0)
    done = 0
    try:
        while True:
            if run.cursor is None:
                await _finish(ctx, run, "completed")
                return Advanced("completed", done)
            status = await _step(ctx, run, dispatch=dispatch, http=http, lease=lease)
            done += 1
            if status != "running":
                return Advanced(status, done)
    except Exception:
        # Let go of the lease so the task's retry (or the sweep) can take the run up again
        # at once; the step left `running` is run again.
        try:
            async with ctx.sessionmaker() as session:
                await session.execute(
                    update(WorkflowRun)
                    .where(WorkflowRun.id == run.id, WorkflowRun.status == "running")
                    .values(leased_until=None)
                )
                await session.commit()
        except Exception:
            log.warning("could not release the lease of workflow run %s", run.id)
        raise


async def _finish(
    ctx: DeliveryContext, run: _Run, status: str, *, error: str | None = None
) -> None:
    now = datetime.now(UTC)
    async with ctx.sessionmaker() as session:
        await session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run.id, WorkflowRun.status == "running")
            .values(
                status=status,
                cursor=run.cursor,
                context=run.context,
                leased_until=None,
                due_at=None,
                error=error,
                finished_at=now,
                updated_at=now,
            )
        )
        await session.commit()


async def _step(
    ctx: DeliveryContext,
    run: _Run,
    *,
    dispatch: Dispatch,
    http: httpx.AsyncClient | None,
    lease: timedelta,
) -> str:
    """Run the step at the cursor; the run's status after it (``running`` to go on)."""
    assert run.cursor is not None
    path = run.cursor
    step = workflows.step_at(run.workflow.steps, path)
    name, kind = step["name"], step["type"]
    now = datetime.now(UTC)
    async with ctx.sessionmaker() as session:
        # Still ours (not cancelled), held a lease's length more for this step, and the step
        # claimed: one statement.
        repo = WorkflowStepRepository(session)
        claimed = await repo.hold_and_claim(
            run_id=run.id, path=path, name=name, kind=kind, now=now, until=now + lease
        )
        # Cancelled, or done by another worker (a duplicate message).
        refused = await repo.claim_refused(run_id=run.id) if claimed is None else None
        await session.commit()
    if claimed is None:
        assert refused is not None
        return refused
    here = workflows.field_of(path)
    try:
        if step.get("if"):
            holds = conditions.evaluate_condition(
                step["if"], await _condition_context(ctx, run, step["if"]), field=f"{here}.if"
            )
            if not holds:
                return await _complete(
                    ctx,
                    run,
                    path,
                    name,
                    {"status": "skipped", "condition": False},
                    cursor=workflows.next_path(run.workflow.steps, path),
                )
        if kind == "send":
            outcome = await _send(ctx, run, path, step, dispatch, redelivered=claimed.attempts > 1)
        elif kind == "branch":
            value = conditions.evaluate_condition(
                step["condition"],
                await _condition_context(ctx, run, step["condition"]),
                field=f"{here}.condition",
            )
            arm = "then" if value else "else"
            following = workflows.first_path(
                run.workflow.steps, f"{path}.{arm}"
            ) or workflows.next_path(run.workflow.steps, path)
            return await _complete(
                ctx,
                run,
                path,
                name,
                {"status": "done", "value": value, "arm": arm},
                cursor=following,
            )
        elif kind == "delay":
            until = await _delay_until(ctx, run, step, here, now)
            following = workflows.next_path(run.workflow.steps, path)
            outcome = {"status": "done", "until": until.isoformat()}
            if until > datetime.now(UTC):
                return await _complete(ctx, run, path, name, outcome, cursor=following, wait=until)
            return await _complete(ctx, run, path, name, outcome, cursor=following)
        elif kind == "throttle":
            return await _throttle(ctx, run, path, step)
        elif kind == "digest":
            return await _digest(ctx, run, path, step, claimed.outcome)
        else:
            outcome = await _fetch(run, step, http, here)
    except TemplateRenderError as exc:
        await _complete(
            ctx,
            run,
            path,
            name,
            {"status": "failed", "error": exc.message},
            cursor=path,
            run_status="failed",
            error=f"step '{name}': {exc.message}",
        )
        return "failed"
    return await _complete(
        ctx, run, path, name, outcome, cursor=workflows.next_path(run.workflow.steps, path)
    )


async def _complete(
    ctx: DeliveryContext,
    run: _Run,
    path: str,
    name: str,
    outcome: dict[str, Any],
    **changes: Any,
) -> str:
    """Mark the step done and move the run on, in one transaction: a done step always has
    its run past it. ``changes`` are ``_write_complete``'s keywords (``cursor`` among them).
    The run's status after (``running`` to go on)."""
    async with ctx.sessionmaker() as session:
        status = await _write_complete(session, run, path, name, outcome, **changes)
        await session.commit()
    return status


async def _write_complete(
    session: AsyncSession,
    run: _Run,
    path: str,
    name: str,
    outcome: dict[str, Any],
    *,
    cursor: str | None,
    wait: datetime | None = None,
    run_status: str | None = None,
    error: str | None = None,
    step_status: str = "done",
) -> str:
    """``_complete``'s writes in the caller's transaction."""
    now = datetime.now(UTC)
    run.context.setdefault("steps", {})[name] = outcome
    run.cursor = cursor
    status = run_status or ("waiting" if wait is not None else "running")
    if status == "running" and cursor is None:
        status = "completed"
    values: dict[str, Any] = {
        "status": status,
        "cursor": cursor,
        "context": run.context,
        "updated_at": now,
        "due_at": wait,
        "error": error,
    }
    if status != "running":
        values["leased_until"] = None
    if status in ("completed", "failed", "stopped"):
        values["finished_at"] = now
    step_update = (
        update(WorkflowRunStep)
        .where(
            WorkflowRunStep.run_id == run.id,
            WorkflowRunStep.path == path,
        )
        .values(status=step_status, outcome=outcome, finished_at=now)
    )
    await session.execute(step_update)
    moved = await session.execute(
        update(WorkflowRun)
        .where(WorkflowRun.id == run.id, WorkflowRun.status == "running")
        .values(**values)
        .returning(WorkflowRun.id)
    )
    still = moved.first() is not None
    return status if still else "cancelled"


async def _condition_context(
    ctx: DeliveryContext, run: _Run, source: str = "user"
) -> dict[str, Any]:
    """What a condition sees: the payload, the user's profile, the event, and each earlier
    step's outcome, with send steps' delivery status and in-app read state read now."""
    steps: dict[str, Any] = {}
    sends: list[tuple[str, dict[str, Any]]] = []
    for name, outcome in (run.context.get("steps") or {}).items():
        current = dict(outcome)
        steps[name] = current
        if current.get("deliveries"):
            sends.append((name, current))
    if sends:
        ids = [d for _, o in sends for d in o["deliveries"].values()]
        records = {r.id: r for r in await ctx.history.get_many(ids)}
        async with ctx.sessionmaker() as session:
            read = dict(
                (
                    await session.execute(
                        select(InboxItem.delivery_id, InboxItem.read_at).where(
                            InboxItem.delivery_id.in_(ids)
                        )
                    )
                ).all()
            )
        for _, outcome in sends:
            channels = {
                c: (records[d].status.value if d in records else "queued")
                for c, d in outcome["deliveries"].items()
            }
            outcome["channels"] = channels
            outcome["status"] = _combined(list(channels.values()))
            in_app = outcome["deliveries"].get(Channel.IN_APP.value)
            outcome["read"] = (read.get(in_app) is not None) if in_app else None
    # The profile is one look-up more (Redis at best): only for expressions that read it.
    profile = (
        (await ctx.users.get_many([run.user_id])).get(run.user_id) if "user" in source else None
    )
    return {
        "payload": run.context.get("payload") if run.context.get("payload") is not None else {},
        "user": profile.to_context() if profile is not None else {"id": run.user_id},
        "event": {
            "id": run.event_id,
            "type": run.event_type,
            "created_at": run.envelope.created_at,
        },
        "steps": steps,
        "digest": run.context.get("digest"),
    }


def _combined(statuses: list[str]) -> str:
    """A send step's status over its channels: sent when one got through (sent, or delivered
    where the provider confirmed it), else the first's."""
    if "sent" in statuses or "delivered" in statuses:
        return "sent"
    return statuses[0] if statuses else "skipped"


async def _send(
    ctx: DeliveryContext,
    run: _Run,
    path: str,
    step: Mapping[str, Any],
    dispatch: Dispatch,
    *,
    redelivered: bool,
) -> dict[str, Any]:
    event_id = step_event_id(run.id, path)
    channels = tuple(Channel(c) for c in step["channels"])
    envelope = Envelope(
        id=event_id,
        type=run.event_type,
        user_ids=(run.user_id,),
        template_slug=step["template"],
        channels=channels,
        payload=workflows.send_payload(run.context),
        locale=run.envelope.locale,
        critical=run.envelope.critical,
        throttle=run.envelope.throttle,
        created_at=datetime.now(UTC).isoformat(),
        actor=run.envelope.actor,
        # A user the event reached through topics keeps their topic opt-outs on every send
        # step, as a plain dispatch of the event would (read when the step sends: an opt-out
        # made while the run waited counts).
        topics=run.envelope.topics,
        via_topics=run.envelope.via_topics,
        tenant_id=run.envelope.tenant_id,
    )
    # A step run again (its worker died) may take over deliveries left in `sending`.
    await dispatch(envelope, redelivered=redelivered)
    deliveries = {c.value: delivery_id(event_id, run.user_id, c) for c in channels}
    records = {r.id: r for r in await ctx.history.get_many(list(deliveries.values()))}
    statuses = {
        c: (records[d].status.value if d in records else "queued") for c, d in deliveries.items()
    }
    return {
        "status": _combined(list(statuses.values())),
        "channels": statuses,
        "deliveries": deliveries,
        "event_id": event_id,
    }


async def _delay_until(
    ctx: DeliveryContext, run: _Run, step: Mapping[str, Any], here: str, now: datetime
) -> datetime:
    if "duration" in step:
        return now + timedelta(seconds=step["duration"])
    if "until" in step:
        text = conditions.evaluate_value(
            step["until"], await _condition_context(ctx, run, step["until"]), field=f"{here}.until"
        )
        try:
            at = datetime.fromisoformat(text.strip())
        except ValueError:
            raise TemplateRenderError(
                f"{here}.until gave '{text[:100]}', which is not an ISO 8601 time",
                field=f"{here}.until",
            ) from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        return at + timedelta(seconds=step.get("offset", 0))
    profile = (await ctx.users.get_many([run.user_id])).get(run.user_id)
    return next_time_of_day(step["at"], profile.timezone if profile else None, now)


def next_time_of_day(at: str, timezone: str | None, now: datetime) -> datetime:
    """The next ``HH:MM`` in the time zone (UTC when unknown), after ``now``."""
    try:
        zone = ZoneInfo(timezone) if timezone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    hours, minutes = (int(p) for p in at.split(":"))
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), time(hours, minutes), tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(
            local.date() + timedelta(days=1), time(hours, minutes), tzinfo=zone
        )
    return candidate.astimezone(UTC)


async def _throttle(ctx: DeliveryContext, run: _Run, path: str, step: Mapping[str, Any]) -> str:
    """Let the run past while fewer than ``limit`` of the user's runs of the type went past
    this step in the window. Counting and passing are one transaction holding a lock on
    (type, user, step), so of two runs of one user at the step at once only one counts
    before the other has passed."""
    now = datetime.now(UTC)
    async with ctx.sessionmaker() as session:
        repo = WorkflowStepRepository(session)
        await repo.lock_throttle(event_type=run.event_type, user_id=run.user_id, path=path)
        passed = await repo.passed_since(
            event_type=run.event_type,
            user_id=run.user_id,
            path=path,
            since=now - timedelta(seconds=step["window"]),
        )
        if passed >= step["limit"]:
            status = await _write_complete(
                session,
                run,
                path,
                step["name"],
                {"status": "done", "passed": False},
                cursor=path,
                run_status="stopped",
                error=f"throttled: {passed} runs past '{step['name']}' in {step['window']} s",
            )
        else:
            status = await _write_complete(
                session,
                run,
                path,
                step["name"],
                {"status": "done", "passed": True},
                cursor=workflows.next_path(run.workflow.steps, path),
            )
        await session.commit()
    return status


async def _digest(
    ctx: DeliveryContext, run: _Run, path: str, step: Mapping[str, Any], stored: Mapping[str, Any]
) -> str:
    """The first run of a user at the digest step waits its window out, collecting the runs
    that reach the step meanwhile (they stop there); then it goes on with ``digest``."""
    name = step["name"]
    now = datetime.now(UTC)
    if stored.get("collecting"):  # this run's window is over: go on with what it collected
        return await _complete(
            ctx,
            run,
            path,
            name,
            {"status": "done", **(run.context.get("digest") or {})},
            cursor=workflows.next_path(run.workflow.steps, path),
        )
    async with ctx.sessionmaker() as session:
        repo = WorkflowRunRepository(session)
        collector = await repo.digest_collector(
            workflow_id=run.workflow.id, user_id=run.user_id, path=path, now=now
        )
        if collector is not None and collector.id != run.id:
            digest = dict(collector.context.get("digest") or {"count": 0, "events": []})
            digest = {
                "count": int(digest.get("count", 0)) + 1,
                "events": [*digest.get("events", []), run.context.get("payload")],
            }
            collector.context = {**collector.context, "digest": digest}
            await session.commit()
            return await _complete(
                ctx,
                run,
                path,
                name,
                {"status": "collected", "into": str(collector.id)},
                cursor=path,
                run_status="stopped",
                error=None,
            )
        await session.commit()
    run.context["digest"] = {"count": 1, "events": [run.context.get("payload")]}
    # The step stays `running`, marked collecting: when the window is over the run comes back
    # to it and goes on.
    now = datetime.now(UTC)
    until = now + timedelta(seconds=step["window"])
    async with ctx.sessionmaker() as session:
        await session.execute(
            update(WorkflowRunStep)
            .where(
                WorkflowRunStep.run_id == run.id,
                WorkflowRunStep.path == path,
            )
            .values(outcome={"collecting": True, "until": until.isoformat()})
        )
        moved = await session.execute(
            update(WorkflowRun)
            .where(WorkflowRun.id == run.id, WorkflowRun.status == "running")
            .values(
                status="waiting",
                due_at=until,
                leased_until=None,
                context=run.context,
                updated_at=now,
            )
            .returning(WorkflowRun.id)
        )
        still = moved.first() is not None
        await session.commit()
    return "waiting" if still else "cancelled"


async def _fetch(
    run: _Run, step: Mapping[str, Any], http: httpx.AsyncClient | None, here: str
) -> dict[str, Any]:
    """Call the step's URL (rendered over the run's context) and keep its JSON answer; a
    failure after the retries is the step's outcome (``status: failed``), not the run's."""
    context = {
        "payload": run.context.get("payload") or {},
        "steps": run.context.get("steps") or {},
        "event": {"id": run.event_id, "type": run.event_type},
        "user": {"id": run.user_id},
    }
    url = rendering.render(step["url"], context, field=f"{here}.url")
    client = http or httpx.AsyncClient()
    error = ""
    try:
        for attempt in range(step["retries"] + 1):
            if attempt:
                await asyncio.sleep(backoff_seconds(attempt, base=0.2, cap=5.0))
            try:
                data, code = await _call(client, step, url, run)
            except (httpx.HTTPError, ValueError, _TooLarge) as exc:
                error = str(exc) or type(exc).__name__
                if isinstance(exc, _TooLarge):
                    break
                continue
            if code >= 500:
                error = f"HTTP {code}"
                continue
            if code >= 400:
                return {"status": "failed", "code": code, "error": f"HTTP {code}", "data": None}
            return {"status": "ok", "code": code, "data": data}
    finally:
        if http is None:
            await client.aclose()
    return {"status": "failed", "error": error, "data": None}


class _TooLarge(Exception):
    pass


async def _call(
    client: httpx.AsyncClient, step: Mapping[str, Any], url: str, run: _Run
) -> tuple[Any, int]:
    body = None
    if step["method"] == "POST":
        body = orjson.dumps(
            {
                "event": {"id": run.event_id, "type": run.event_type},
                "user_id": run.user_id,
                "payload": run.context.get("payload"),
            }
        )
    limit = step["maxBytes"]
    async with asyncio.timeout(step["timeout"]):
        async with client.stream(
            step["method"],
            url,
            content=body,
            headers={"content-type": "application/json"} if body else None,
            timeout=step["timeout"],
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _TooLarge(f"the answer is larger than {limit} bytes")
                chunks.append(chunk)
            code = response.status_code
    if code >= 400:
        return None, code
    raw = b"".join(chunks)
    return (orjson.loads(raw) if raw else None), code


__all__ = [
    "Advanced",
    "advance",
    "cancel_for_event",
    "release_due_runs",
    "start_runs",
    "starts_runs",
    "step_event_ids",
]
