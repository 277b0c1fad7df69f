"""Advancing workflow runs: a batch of runs taken through their steps side by side, one
transaction a round for all of them (see ``runs`` for the protocol, and ``advance_many``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import Channel
from backend.db.repositories.workflows import (
    ClaimedStep,
    LeasedRun,
    RunMove,
    StepClaim,
    StepDone,
    WorkflowRunRepository,
    WorkflowStepRepository,
)
from backend.errors import TemplateRenderError
from backend.services import conditions
from backend.services.deliveries.context import DeliveryContext
from backend.services.deliveries.records import delivery_id
from backend.services.envelope import Envelope
from backend.services.workflows.definitions import (
    field_of,
    first_path,
    next_path,
    send_payload,
    step_at,
)
from backend.services.workflows.runs import step_event_id, workflow_version
from backend.services.workflows.steps import (
    HeldRun,
    delay_until,
    digest_step,
    fetch_step,
    throttle_step,
)

log = logging.getLogger(__name__)


class Dispatch(Protocol):
    """The worker's dispatch unit: record and send an envelope's deliveries."""

    def __call__(self, envelope: Envelope, *, redelivered: bool) -> Awaitable[Any]: ...


class DispatchTogether(Protocol):
    """The worker's unit for the first deliveries of several events at once: ``admits`` tells
    the events it takes (``deliveries.together``); on an error each is dispatched again
    alone."""

    def admits(self, envelope: Envelope) -> bool: ...

    def __call__(self, envelopes: Sequence[Envelope]) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class Advanced:
    status: str  # the run's status when this worker let go of it ("" when it was not its)
    steps: int  # steps this call completed


@dataclass(frozen=True, slots=True)
class _Done:
    """A step's outcome and where its run goes next, written (with the other runs') in the
    transaction that claims the next steps. ``path`` None: the run ends without a step."""

    path: str | None
    name: str
    outcome: dict[str, Any]
    cursor: str | None
    wait: datetime | None = None
    run_status: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Sending:
    """A send step about to dispatch its envelope."""

    path: str
    name: str
    envelope: Envelope
    redelivered: bool


# Steps of one batch acting at once at most (each send step is a dispatch of its own, with
# its own database sessions: a few, for the pool's sake).
ACTING_AT_ONCE = 4


async def advance(
    ctx: DeliveryContext,
    *,
    run_id: str,
    dispatch: Dispatch,
    http: httpx.AsyncClient | None,
    together: DispatchTogether | None = None,
) -> Advanced:
    """Take the run through its steps until it waits, ends or is cancelled (``advance_many``
    for one run)."""
    advanced = await advance_many(
        ctx, run_ids=[run_id], dispatch=dispatch, together=together, http=http
    )
    return advanced[run_id]


async def advance_many(
    ctx: DeliveryContext,
    *,
    run_ids: Sequence[str],
    dispatch: Dispatch,
    http: httpx.AsyncClient | None,
    together: DispatchTogether | None = None,
    takeover: bool = False,
) -> dict[str, Advanced]:
    """Take runs through their steps, side by side, until each waits, ends or is cancelled.
    ``dispatch`` is the worker's dispatch unit (records and sends an envelope's deliveries,
    committing as it goes): a send step is an event dispatch of its own; ``together``, when
    given, dispatches the in-app send steps of the batch as one.

    The runs are leased in one statement; then each round is one transaction for all of them
    (the last round's outcomes written and their runs moved on, their next steps claimed),
    committed before any of those steps acts. A step whose run was cancelled meanwhile is not
    claimed, and a step done by another worker is not run again. ``takeover`` takes runs
    whose lease has not run out (their worker is gone: its message came back). A step that
    fails lets go of its run's lease (the step left ``running`` is run again) and, once the
    others went as far as they could, its error is raised."""
    lease = timedelta(seconds=ctx.settings.workflow_run_lease_seconds)
    asked = {uuid.UUID(r): r for r in run_ids}
    results: dict[uuid.UUID, Advanced] = {}
    runs: dict[uuid.UUID, HeldRun] = {}
    pending: dict[uuid.UUID, _Done] = {}
    going: list[HeldRun] = []
    failing: list[uuid.UUID] = []
    errors: list[Exception] = []
    first = True
    while True:
        now = datetime.now(UTC)
        async with ctx.sessionmaker() as session:
            run_repo = WorkflowRunRepository(session)
            if first:
                first = False
                leased = await run_repo.lease_many(
                    list(asked), now=now, until=now + lease, takeover=takeover
                )
                for row in leased:
                    run = await _leased(session, row)
                    runs[run.id] = run
                    if run.workflow is None:
                        error = "the workflow version is gone"
                        pending[run.id] = _Done(
                            None, "", {}, None, run_status="failed", error=error
                        )
                    elif run.cursor is None:
                        pending[run.id] = _Done(None, "", {}, None)
                    else:
                        going.append(run)
            for run_id, status in (await _write(session, runs, pending, now)).items():
                if status == "running":
                    going.append(runs[run_id])
                else:
                    results[run_id] = Advanced(status, runs[run_id].steps)
            await run_repo.release_leases(failing, now=now)
            claimed, refused = await _claim(session, going, now=now, until=now + lease)
            await session.commit()
        for run, reason in refused:
            results[run.id] = Advanced(reason, run.steps)
        pending, going, failing = {}, [], []
        if not claimed:
            break
        for run, acted in await _act(ctx, claimed, dispatch=dispatch, together=together, http=http):
            if isinstance(acted, _Done):
                pending[run.id] = acted
            elif isinstance(acted, Exception):
                failing.append(run.id)
                errors.append(acted)
                results[run.id] = Advanced("running", run.steps)
            else:  # a throttle or digest step, which wrote its outcome itself
                run.steps += 1
                if acted == "running":
                    going.append(run)
                else:
                    results[run.id] = Advanced(acted, run.steps)
    if errors:
        raise errors[0]
    return {r: results.get(i, Advanced("", 0)) for i, r in asked.items()}


async def _leased(session: AsyncSession, row: LeasedRun) -> HeldRun:
    return HeldRun(
        id=row.id,
        user_id=row.user_id,
        event_type=row.event_type,
        event_id=row.event_id,
        envelope=Envelope.from_wire(row.envelope),
        cursor=row.cursor,
        context=dict(row.context),
        workflow=await workflow_version(session, row.workflow_id),  # type: ignore[arg-type]
    )


async def _write(
    session: AsyncSession,
    runs: Mapping[uuid.UUID, HeldRun],
    pending: Mapping[uuid.UUID, _Done],
    now: datetime,
) -> dict[uuid.UUID, str]:
    """The steps' outcomes and their runs' moves, in the caller's transaction: each run's
    status after (``cancelled`` for a run cancelled meanwhile)."""
    if not pending:
        return {}
    finished: list[StepDone] = []
    moves: list[RunMove] = []
    statuses: dict[uuid.UUID, str] = {}
    for run_id, done in pending.items():
        run = runs[run_id]
        if done.path is not None:
            run.context.setdefault("steps", {})[done.name] = done.outcome
            finished.append(StepDone(run_id, done.path, "done", done.outcome))
            run.steps += 1
        run.cursor = done.cursor
        status = done.run_status or ("waiting" if done.wait is not None else "running")
        if status == "running" and done.cursor is None:
            status = "completed"
        statuses[run_id] = status
        moves.append(RunMove(run_id, status, done.cursor, run.context, done.wait, done.error))
    await WorkflowStepRepository(session).finish_many(finished, now=now)
    moved = await WorkflowRunRepository(session).move_many(moves, now=now)
    return {r: s if r in moved else "cancelled" for r, s in statuses.items()}


async def _claim(
    session: AsyncSession, runs: Sequence[HeldRun], *, now: datetime, until: datetime
) -> tuple[list[tuple[HeldRun, ClaimedStep]], list[tuple[HeldRun, str]]]:
    """Hold the runs a lease's length more and claim their steps at the cursor, in one
    statement: the claimed, and the others with why (cancelled, or a duplicate)."""
    if not runs:
        return [], []
    claims = []
    for run in runs:
        assert run.cursor is not None
        step = step_at(run.workflow.steps, run.cursor)
        claims.append(StepClaim(run.id, run.cursor, step["name"], step["type"]))
    repo = WorkflowStepRepository(session)
    got = await repo.hold_and_claim_many(claims, now=now, until=until)
    why = await repo.claims_refused([r.id for r in runs if r.id not in got])
    return (
        [(r, got[r.id]) for r in runs if r.id in got],
        [(r, why[r.id]) for r in runs if r.id not in got],
    )


Acted = _Done | str | Exception


async def _act(
    ctx: DeliveryContext,
    claimed: Sequence[tuple[HeldRun, ClaimedStep]],
    *,
    dispatch: Dispatch,
    together: DispatchTogether | None,
    http: httpx.AsyncClient | None,
) -> list[tuple[HeldRun, Acted]]:
    """Run the claimed steps: what each came to (an outcome to write, a status when the step
    wrote its own, or the error it failed on)."""
    try:
        seen = await _condition_contexts(ctx, [(r, _sources(r)) for r, _ in claimed])
    except Exception as exc:
        log.warning("workflow runs failed reading their conditions' context: %s", exc)
        return [(run, exc) for run, _ in claimed]
    gate = asyncio.Semaphore(ACTING_AT_ONCE)

    async def one(run: HeldRun, step_claim: ClaimedStep) -> _Done | str | _Sending | Exception:
        async with gate:
            try:
                return await _decide(ctx, run, step_claim, seen.get(run.id), http)
            except TemplateRenderError as exc:
                return _failed(run, exc)
            except Exception as exc:
                log.warning("workflow run %s failed at step %s: %s", run.id, run.cursor, exc)
                return exc

    decided = await asyncio.gather(*(one(r, c) for r, c in claimed))
    sends = [
        (run, d) for (run, _), d in zip(claimed, decided, strict=True) if isinstance(d, _Sending)
    ]
    sent = await _send_all(ctx, sends, dispatch=dispatch, together=together, gate=gate)
    return [
        (run, sent[run.id] if isinstance(d, _Sending) else d)
        for (run, _), d in zip(claimed, decided, strict=True)
    ]


def _sources(run: HeldRun) -> str:
    """The expressions the step at the run's cursor evaluates (what its context must hold)."""
    assert run.cursor is not None
    step = step_at(run.workflow.steps, run.cursor)
    parts = [step.get("if") or ""]
    if step["type"] == "branch":
        parts.append(step["condition"])
    if step["type"] == "delay" and "until" in step:
        parts.append(step["until"])
    return " ".join(p for p in parts if p)


def _failed(run: HeldRun, exc: TemplateRenderError) -> _Done:
    assert run.cursor is not None
    name = step_at(run.workflow.steps, run.cursor)["name"]
    return _Done(
        run.cursor,
        name,
        {"status": "failed", "error": exc.message},
        run.cursor,
        run_status="failed",
        error=f"step '{name}': {exc.message}",
    )


async def _decide(
    ctx: DeliveryContext,
    run: HeldRun,
    claimed: ClaimedStep,
    seen: dict[str, Any] | None,
    http: httpx.AsyncClient | None,
) -> _Done | str | _Sending:
    """What the step at the cursor comes to; a send step is left to ``_send_all``."""
    assert run.cursor is not None
    path = run.cursor
    step = step_at(run.workflow.steps, path)
    name, kind = step["name"], step["type"]
    here = field_of(path)
    following = next_path(run.workflow.steps, path)
    if step.get("if"):
        assert seen is not None
        if not conditions.evaluate_condition(step["if"], seen, field=f"{here}.if"):
            return _Done(path, name, {"status": "skipped", "condition": False}, following)
    if kind == "send":
        envelope = _send_envelope(run, path, step)
        return _Sending(path, name, envelope, redelivered=claimed.attempts > 1)
    if kind == "branch":
        assert seen is not None
        value = conditions.evaluate_condition(step["condition"], seen, field=f"{here}.condition")
        arm = "then" if value else "else"
        return _Done(
            path,
            name,
            {"status": "done", "value": value, "arm": arm},
            first_path(run.workflow.steps, f"{path}.{arm}") or following,
        )
    if kind == "delay":
        now = datetime.now(UTC)
        until = await delay_until(ctx, run, step, here, now, seen)
        outcome = {"status": "done", "until": until.isoformat()}
        return _Done(path, name, outcome, following, wait=until if until > now else None)
    if kind == "throttle":
        return await throttle_step(ctx, run, path, step)
    if kind == "digest":
        return await digest_step(ctx, run, path, step, claimed.outcome)
    return _Done(path, name, await fetch_step(run, step, http, here), following)


async def _send_all(
    ctx: DeliveryContext,
    sends: Sequence[tuple[HeldRun, _Sending]],
    *,
    dispatch: Dispatch,
    together: DispatchTogether | None,
    gate: asyncio.Semaphore,
) -> dict[uuid.UUID, _Done | Exception]:
    """Dispatch the send steps' envelopes (those that may go together as one), then read
    their deliveries' statuses in one look-up: each step's outcome, or its error."""
    if not sends:
        return {}
    errors: dict[uuid.UUID, Exception] = {}
    joint = [
        (run, s)
        for run, s in sends
        if together is not None and not s.redelivered and together.admits(s.envelope)
    ]
    jointly_sent = {run.id for run, _ in joint}
    alone = [(run, s) for run, s in sends if run.id not in jointly_sent]

    async def jointly() -> None:
        if not joint:
            return
        assert together is not None
        try:
            await together([s.envelope for _, s in joint])
        except Exception as exc:
            log.warning("%d workflow send steps failed: %s", len(joint), exc)
            errors.update({run.id: exc for run, _ in joint})

    async def by_itself(run: HeldRun, sending: _Sending) -> None:
        async with gate:
            try:
                # A step run again (its worker died) may take over deliveries left in `sending`.
                await dispatch(sending.envelope, redelivered=sending.redelivered)
            except Exception as exc:
                log.warning("workflow run %s failed at step %s: %s", run.id, sending.path, exc)
                errors[run.id] = exc

    await asyncio.gather(jointly(), *(by_itself(r, s) for r, s in alone))
    ids = {
        run.id: {c.value: delivery_id(s.envelope.id, run.user_id, c) for c in s.envelope.channels}
        for run, s in sends
    }
    wanted = [d for run, _ in sends if run.id not in errors for d in ids[run.id].values()]
    records = {r.id: r for r in await ctx.history.get_many(wanted)} if wanted else {}
    outcomes: dict[uuid.UUID, _Done | Exception] = dict(errors)
    for run, s in sends:
        if run.id in errors:
            continue
        found = ids[run.id]
        statuses = {
            c: (records[d].status.value if d in records else "queued") for c, d in found.items()
        }
        outcome = {
            "status": _combined(list(statuses.values())),
            "channels": statuses,
            "deliveries": found,
            "event_id": s.envelope.id,
        }
        outcomes[run.id] = _Done(s.path, s.name, outcome, next_path(run.workflow.steps, s.path))
    return outcomes


async def _condition_contexts(
    ctx: DeliveryContext, wanted: Sequence[tuple[HeldRun, str]]
) -> dict[uuid.UUID, dict[str, Any]]:
    """What the conditions of several runs see (those with expressions to evaluate): each
    run's payload, user's profile, event, and each earlier step's outcome, with send steps'
    delivery status and in-app read state read now, for all of them in one look-up each."""
    wanted = [(run, source) for run, source in wanted if source]
    if not wanted:
        return {}
    steps_of: dict[uuid.UUID, dict[str, Any]] = {}
    sends: list[dict[str, Any]] = []
    for run, _ in wanted:
        steps: dict[str, Any] = {}
        for name, outcome in (run.context.get("steps") or {}).items():
            current = dict(outcome)
            steps[name] = current
            if current.get("deliveries"):
                sends.append(current)
        steps_of[run.id] = steps
    if sends:
        ids = [d for o in sends for d in o["deliveries"].values()]
        records = {r.id: r for r in await ctx.history.get_many(ids)}
        async with ctx.sessionmaker() as session:
            read = await WorkflowStepRepository(session).read_at(ids)
        for outcome in sends:
            channels = {
                c: (records[d].status.value if d in records else "queued")
                for c, d in outcome["deliveries"].items()
            }
            outcome["channels"] = channels
            outcome["status"] = _combined(list(channels.values()))
            in_app = outcome["deliveries"].get(Channel.IN_APP.value)
            outcome["read"] = (read.get(in_app) is not None) if in_app else None
    # The profile is one look-up more (Redis at best): only for expressions that read it.
    users = list({run.user_id for run, source in wanted if "user" in source})
    profiles = await ctx.users.get_many(users) if users else {}
    seen: dict[uuid.UUID, dict[str, Any]] = {}
    for run, _ in wanted:
        profile = profiles.get(run.user_id)
        seen[run.id] = {
            "payload": run.context.get("payload") if run.context.get("payload") is not None else {},
            "user": profile.to_context() if profile is not None else {"id": run.user_id},
            "event": {
                "id": run.event_id,
                "type": run.event_type,
                "created_at": run.envelope.created_at,
            },
            "steps": steps_of[run.id],
            "digest": run.context.get("digest"),
        }
    return seen


def _combined(statuses: list[str]) -> str:
    """A send step's status over its channels: sent when one got through (sent, or delivered
    where the provider confirmed it), else the first's."""
    if "sent" in statuses or "delivered" in statuses:
        return "sent"
    return statuses[0] if statuses else "skipped"


def _send_envelope(run: HeldRun, path: str, step: Mapping[str, Any]) -> Envelope:
    """The event a send step dispatches: its deliveries' ids derive from the run and step."""
    return Envelope(
        id=step_event_id(run.id, path),
        type=run.event_type,
        user_ids=(run.user_id,),
        template_slug=step["template"],
        channels=tuple(Channel(c) for c in step["channels"]),
        payload=send_payload(run.context),
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
