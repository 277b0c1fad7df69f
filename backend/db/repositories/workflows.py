"""Queries on workflows, their runs and the runs' steps."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    DateTime,
    Integer,
    String,
    and_,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert

from backend.db.models import InboxItem, Workflow, WorkflowRun, WorkflowRunStep
from backend.db.repositories.base import Repository

# A run waiting for its time, or queued for a worker: what cancelling still stops.
CANCELLABLE = ("queued", "running", "waiting")


class WorkflowRepository(Repository):
    async def current(self, event_type: str) -> Workflow | None:
        stmt = select(Workflow).where(Workflow.event_type == event_type, Workflow.is_current)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get(self, workflow_id: uuid.UUID) -> Workflow | None:
        return await self.session.get(Workflow, workflow_id)

    async def versions(self, event_type: str) -> list[Workflow]:
        stmt = (
            select(Workflow)
            .where(Workflow.event_type == event_type)
            .order_by(Workflow.version.desc())
        )
        return list((await self.session.execute(stmt)).scalars())

    async def version_numbers(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not ids:
            return {}
        stmt = select(Workflow.id, Workflow.version).where(Workflow.id.in_(list(set(ids))))
        return {i: v for i, v in (await self.session.execute(stmt)).all()}

    async def add_version(self, workflow: Workflow) -> Workflow:
        """Make ``workflow`` the event type's current version (the previous one is kept). The
        event type's current row is locked first, so two saves get two version numbers."""
        await self.session.execute(
            select(Workflow.id)
            .where(Workflow.event_type == workflow.event_type, Workflow.is_current)
            .with_for_update()
        )
        last = await self.session.scalar(
            select(func.max(Workflow.version)).where(Workflow.event_type == workflow.event_type)
        )
        await self.session.execute(
            update(Workflow)
            .where(Workflow.event_type == workflow.event_type, Workflow.is_current)
            .values(is_current=False)
        )
        workflow.version = (last or 0) + 1
        workflow.is_current = True
        self.session.add(workflow)
        await self.session.flush()
        return workflow


class WorkflowRunRepository(Repository):
    async def add_many(self, rows: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
        """Insert runs, skipping those already there (a dispatch run twice); the ids added."""
        if not rows:
            return []
        stmt = (
            insert(WorkflowRun)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(WorkflowRun.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, run_id: uuid.UUID) -> WorkflowRun | None:
        return await self.session.get(WorkflowRun, run_id)

    async def lease(
        self, run_id: uuid.UUID, *, now: datetime, until: datetime
    ) -> WorkflowRun | None:
        """Take the run for advancing, unless it is finished, waiting for a later time, or
        leased by another worker whose lease has not run out."""
        stmt = (
            update(WorkflowRun)
            .where(
                WorkflowRun.id == run_id,
                or_(
                    WorkflowRun.status.in_(("queued", "running")),
                    and_(WorkflowRun.status == "waiting", WorkflowRun.due_at <= now),
                ),
                or_(WorkflowRun.leased_until.is_(None), WorkflowRun.leased_until < now),
            )
            .values(status="running", leased_until=until, due_at=None, updated_at=now)
            .returning(WorkflowRun)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lease_many(
        self, run_ids: Sequence[uuid.UUID], *, now: datetime, until: datetime, takeover: bool
    ) -> list[LeasedRun]:
        """:meth:`lease` for many runs in one statement; the runs taken. ``takeover`` also
        takes runs whose lease has not run out (their worker is known to be gone: its
        message came back redelivered)."""
        if not run_ids:
            return []
        stmt = (
            update(WorkflowRun)
            .where(
                WorkflowRun.id.in_(list(run_ids)),
                or_(
                    WorkflowRun.status.in_(("queued", "running")),
                    and_(WorkflowRun.status == "waiting", WorkflowRun.due_at <= now),
                ),
            )
            .values(status="running", leased_until=until, due_at=None, updated_at=now)
            .returning(*(getattr(WorkflowRun, c) for c in LeasedRun._fields))
        )
        if not takeover:
            stmt = stmt.where(
                or_(WorkflowRun.leased_until.is_(None), WorkflowRun.leased_until < now)
            )
        return [LeasedRun(*row) for row in (await self.session.execute(stmt)).all()]

    async def unfinished_of_event(
        self, event_id: str, *, user_ids: Sequence[str]
    ) -> list[uuid.UUID]:
        """The event's runs for these users not yet waiting or finished (queued, or held by
        a worker)."""
        stmt = select(WorkflowRun.id).where(
            WorkflowRun.event_id == event_id,
            WorkflowRun.user_id.in_(list(user_ids)),
            WorkflowRun.status.in_(("queued", "running")),
        )
        return list((await self.session.execute(stmt)).scalars())

    async def move_many(self, moves: Sequence[RunMove], *, now: datetime) -> set[uuid.UUID]:
        """Move runs on after a step, each only while it is still ``running`` (not
        cancelled meanwhile), in one statement: the ids of those moved."""
        if not moves:
            return set()
        rows = await self.session.execute(
            _MOVE,
            {
                "ids": [m.run_id for m in moves],
                "statuses": [m.status for m in moves],
                "cursors": [m.cursor for m in moves],
                "contexts": [orjson.dumps(m.context).decode() for m in moves],
                "dues": [m.due_at for m in moves],
                "errors": [m.error for m in moves],
                "now": now,
            },
        )
        return {r for (r,) in rows.all()}

    async def release_leases(self, run_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
        """Let go of runs whose step failed: their lease ends now, so the sweep (or the
        task's retry) takes them up again at once; the step left ``running`` runs again."""
        if run_ids:
            await self.session.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id.in_(list(run_ids)), WorkflowRun.status == "running")
                .values(leased_until=now)
            )

    async def due(self, now: datetime, limit: int, *, lost_before: datetime) -> list[uuid.UUID]:
        """Runs whose wait is over, and runs a worker took and lost (its lease ran out, or it
        was queued before ``lost_before`` and never taken), oldest first, locked for this
        sweep."""
        stmt = (
            select(WorkflowRun.id)
            .where(
                or_(
                    and_(WorkflowRun.status == "waiting", WorkflowRun.due_at <= now),
                    and_(WorkflowRun.status == "running", WorkflowRun.leased_until < now),
                    and_(WorkflowRun.status == "queued", WorkflowRun.updated_at < lost_before),
                )
            )
            .order_by(WorkflowRun.due_at.nulls_first())
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def mark_queued(self, run_ids: Sequence[uuid.UUID], now: datetime) -> None:
        """Released runs: queued for a worker, their wait over (a waiting run stays
        ``waiting`` only until its message is out)."""
        if run_ids:
            await self.session.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id.in_(list(run_ids)), WorkflowRun.status == "waiting")
                .values(status="queued", due_at=None, updated_at=now)
            )
            await self.session.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id.in_(list(run_ids)), WorkflowRun.status != "waiting")
                .values(updated_at=now)
            )

    async def cancel(
        self,
        *,
        now: datetime,
        key: str | None = None,
        event_types: Sequence[str] = (),
        user_ids: Sequence[str] = (),
    ) -> int:
        """Cancel unfinished runs by cancel key, or of event types for some users (and a key,
        when given); how many."""
        conditions: list[Any] = [WorkflowRun.status.in_(CANCELLABLE)]
        if key is not None:
            conditions.append(WorkflowRun.cancel_key == key)
        if event_types:
            conditions.append(WorkflowRun.event_type.in_(list(event_types)))
        if user_ids:
            conditions.append(WorkflowRun.user_id.in_(list(user_ids)))
        result = await self.session.execute(
            update(WorkflowRun)
            .where(*conditions)
            .values(status="cancelled", due_at=None, finished_at=now, updated_at=now)
            .returning(WorkflowRun.id)
        )
        return len(result.all())

    async def save(self, run: WorkflowRun) -> None:
        await self.session.flush()

    async def page(
        self,
        *,
        event_type: str | None,
        user_id: str | None,
        status: str | None,
        cancel_key: str | None,
        event_id: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[WorkflowRun]:
        """Newest first; ``after`` is the (created_at, id) of the previous page's last."""
        stmt = select(WorkflowRun).order_by(WorkflowRun.created_at.desc(), WorkflowRun.id.desc())
        if event_type is not None:
            stmt = stmt.where(WorkflowRun.event_type == event_type)
        if user_id is not None:
            stmt = stmt.where(WorkflowRun.user_id == user_id)
        if status is not None:
            stmt = stmt.where(WorkflowRun.status == status)
        if cancel_key is not None:
            stmt = stmt.where(WorkflowRun.cancel_key == cancel_key)
        if event_id is not None:
            stmt = stmt.where(WorkflowRun.event_id == event_id)
        if after is not None:
            stmt = stmt.where(
                tuple_(WorkflowRun.created_at, WorkflowRun.id) < tuple_(after[0], after[1])
            )
        return list((await self.session.execute(stmt.limit(limit))).scalars())

    async def digest_collector(
        self, *, workflow_id: uuid.UUID, user_id: str, path: str, now: datetime
    ) -> WorkflowRun | None:
        """The user's run of this workflow waiting at the digest step ``path`` whose window is
        still open, locked: later runs add their events to it."""
        stmt = (
            select(WorkflowRun)
            .where(
                WorkflowRun.workflow_id == workflow_id,
                WorkflowRun.user_id == user_id,
                WorkflowRun.status == "waiting",
                WorkflowRun.cursor == path,
                WorkflowRun.due_at > now,
            )
            .order_by(WorkflowRun.created_at)
            .limit(1)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()


class LeasedRun(NamedTuple):
    """A run as a worker leasing it needs it."""

    id: uuid.UUID
    workflow_id: uuid.UUID
    user_id: str
    event_type: str
    event_id: str
    envelope: dict[str, Any]
    cursor: str | None
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunMove:
    """A run's state after a step (``move_many``); ``status`` other than ``running`` lets go
    of its lease, and a final one sets ``finished_at``."""

    run_id: uuid.UUID
    status: str
    cursor: str | None
    context: dict[str, Any]
    due_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StepClaim:
    run_id: uuid.UUID
    path: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class StepDone:
    run_id: uuid.UUID
    path: str
    status: str
    outcome: dict[str, Any]


_MOVE = text(
    """
    UPDATE workflow_runs AS r SET
        status = m.status,
        cursor = m.cursor,
        context = m.context::jsonb,
        due_at = m.due_at,
        error = m.error,
        updated_at = :now,
        leased_until = CASE WHEN m.status = 'running' THEN r.leased_until END,
        finished_at = CASE WHEN m.status IN ('completed', 'failed', 'stopped') THEN :now
                      ELSE r.finished_at END
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:cursors AS text[]),
        CAST(:contexts AS text[]), CAST(:dues AS timestamptz[]), CAST(:errors AS text[])
    ) AS m(id, status, cursor, context, due_at, error)
    WHERE r.id = m.id AND r.status = 'running'
    RETURNING r.id
    """
)

_FINISH_STEPS = text(
    """
    UPDATE workflow_run_steps AS s SET status = d.status, outcome = d.outcome::jsonb,
        finished_at = :now
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:paths AS text[]), CAST(:statuses AS text[]),
        CAST(:outcomes AS text[])
    ) AS d(run_id, path, status, outcome)
    WHERE s.run_id = d.run_id AND s.path = d.path
    """
)

# hold_and_claim for many runs: the runs still running are held a lease's length more, and
# their steps claimed (inserted as running, or counted again when left running).
_HOLD_AND_CLAIM = text(
    """
    WITH held AS (
        UPDATE workflow_runs SET leased_until = :until, updated_at = :now
        WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'running'
        RETURNING id
    )
    INSERT INTO workflow_run_steps AS s
        (run_id, path, name, kind, status, outcome, attempts, started_at)
    SELECT c.run_id, c.path, c.name, c.kind, 'running', '{}'::jsonb, 1, :now
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:paths AS text[]), CAST(:names AS text[]),
        CAST(:kinds AS text[])
    ) AS c(run_id, path, name, kind)
    JOIN held ON held.id = c.run_id
    ON CONFLICT (run_id, path) DO UPDATE SET attempts = s.attempts + 1
        WHERE s.status = 'running'
    RETURNING s.run_id, s.attempts, s.outcome
    """
)


@dataclass(frozen=True, slots=True)
class ClaimedStep:
    attempts: int
    outcome: dict[str, Any]


class WorkflowStepRepository(Repository):
    async def claim(
        self, *, run_id: uuid.UUID, path: str, name: str, kind: str, now: datetime
    ) -> WorkflowRunStep:
        """The step's row: inserted as ``running`` when it is first reached, else as it is
        (done by an earlier attempt, or left ``running`` by a worker that died: then this
        attempt is counted)."""
        stmt = (
            insert(WorkflowRunStep)
            .values(
                run_id=run_id,
                path=path,
                name=name,
                kind=kind,
                status="running",
                outcome={},
                attempts=1,
                started_at=now,
            )
            .on_conflict_do_update(
                index_elements=["run_id", "path"],
                set_={"attempts": WorkflowRunStep.attempts + 1},
                where=WorkflowRunStep.status == "running",
            )
            .returning(WorkflowRunStep)
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:  # finished before: the conflict updated nothing
            found = await self.session.get(WorkflowRunStep, (run_id, path))
            assert found is not None
            return found
        return row

    async def hold_and_claim(
        self,
        *,
        run_id: uuid.UUID,
        path: str,
        name: str,
        kind: str,
        now: datetime,
        until: datetime,
    ) -> ClaimedStep | None:
        """In one statement: hold the run a lease's length more if it is still ``running``
        (not cancelled), and claim its step as :meth:`claim` does. The claimed step (``None``
        when the run is no longer running, or the step is done: see :meth:`claim_refused`)."""
        held = (
            update(WorkflowRun)
            .where(WorkflowRun.id == run_id, WorkflowRun.status == "running")
            .values(leased_until=until, updated_at=now)
            .returning(WorkflowRun.id)
            .cte("held")
        )
        columns = ["run_id", "path", "name", "kind", "status", "outcome", "attempts", "started_at"]
        row = select(
            held.c.id,
            literal(path, String()),
            literal(name, String()),
            literal(kind, String()),
            literal("running", String()),
            literal({}, JSONB()),
            literal(1, Integer()),
            literal(now, DateTime(timezone=True)),
        )
        stmt = (
            insert(WorkflowRunStep)
            .from_select(columns, row)
            .on_conflict_do_update(
                index_elements=["run_id", "path"],
                set_={"attempts": WorkflowRunStep.attempts + 1},
                where=WorkflowRunStep.status == "running",
            )
            .returning(WorkflowRunStep.attempts, WorkflowRunStep.outcome)
            .add_cte(held)
        )
        found = (await self.session.execute(stmt)).first()
        return None if found is None else ClaimedStep(attempts=found[0], outcome=found[1])

    async def hold_and_claim_many(
        self, claims: Sequence[StepClaim], *, now: datetime, until: datetime
    ) -> dict[uuid.UUID, ClaimedStep]:
        """:meth:`hold_and_claim` for many runs (one step each) in one statement: the claimed
        steps by run (a run missing: see :meth:`claims_refused`)."""
        if not claims:
            return {}
        rows = await self.session.execute(
            _HOLD_AND_CLAIM,
            {
                "ids": [c.run_id for c in claims],
                "paths": [c.path for c in claims],
                "names": [c.name for c in claims],
                "kinds": [c.kind for c in claims],
                "now": now,
                "until": until,
            },
        )
        return {r: ClaimedStep(attempts=a, outcome=o) for r, a, o in rows.all()}

    async def claims_refused(self, run_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """:meth:`claim_refused` for many runs."""
        if not run_ids:
            return {}
        stmt = select(WorkflowRun.id, WorkflowRun.status).where(WorkflowRun.id.in_(list(run_ids)))
        found = dict((await self.session.execute(stmt)).all())
        return {r: "duplicate" if found.get(r) == "running" else "cancelled" for r in run_ids}

    async def finish_many(self, done: Sequence[StepDone], *, now: datetime) -> None:
        """Mark steps finished with their outcomes, in one statement."""
        if done:
            await self.session.execute(
                _FINISH_STEPS,
                {
                    "ids": [d.run_id for d in done],
                    "paths": [d.path for d in done],
                    "statuses": [d.status for d in done],
                    "outcomes": [orjson.dumps(d.outcome).decode() for d in done],
                    "now": now,
                },
            )

    async def claim_refused(self, *, run_id: uuid.UUID) -> str:
        """Why :meth:`hold_and_claim` claimed nothing: ``cancelled`` (the run is no longer
        running) or ``duplicate`` (the step is done: another worker finished it)."""
        status = await self.session.scalar(
            select(WorkflowRun.status).where(WorkflowRun.id == run_id)
        )
        return "duplicate" if status == "running" else "cancelled"

    async def of_run(self, run_id: uuid.UUID) -> list[WorkflowRunStep]:
        stmt = (
            select(WorkflowRunStep)
            .where(WorkflowRunStep.run_id == run_id)
            .order_by(WorkflowRunStep.started_at, WorkflowRunStep.path)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def send_steps_of_event(self, event_id: str) -> list[tuple[uuid.UUID, str]]:
        """(run id, step path) of the send steps the event's runs reached."""
        stmt = (
            select(WorkflowRunStep.run_id, WorkflowRunStep.path)
            .join(WorkflowRun, WorkflowRun.id == WorkflowRunStep.run_id)
            .where(WorkflowRun.event_id == event_id, WorkflowRunStep.kind == "send")
        )
        return [(r, p) for r, p in (await self.session.execute(stmt)).all()]

    async def read_at(self, delivery_ids: Sequence[str]) -> dict[str, datetime | None]:
        """When the in-app messages of send steps' deliveries were read (None: unread),
        for those in the inbox."""
        if not delivery_ids:
            return {}
        stmt = select(InboxItem.delivery_id, InboxItem.read_at).where(
            InboxItem.delivery_id.in_(list(delivery_ids))
        )
        return dict((await self.session.execute(stmt)).all())

    async def lock_throttle(self, *, event_type: str, user_id: str, path: str) -> None:
        """Hold, until the transaction ends, the lock of a user's throttle step of a type:
        the count of runs past it and this run's passing are then one atomic decision."""
        key = f"workflow-throttle/{event_type}/{user_id}/{path}"
        await self.session.execute(
            select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0)))
        )

    async def passed_since(
        self, *, event_type: str, user_id: str, path: str, since: datetime
    ) -> int:
        """How many of the user's runs of the type went past the throttle step ``path``
        since ``since``."""
        stmt = (
            select(func.count())
            .select_from(WorkflowRunStep)
            .join(WorkflowRun, WorkflowRun.id == WorkflowRunStep.run_id)
            .where(
                WorkflowRun.event_type == event_type,
                WorkflowRun.user_id == user_id,
                WorkflowRunStep.path == path,
                WorkflowRunStep.status == "done",
                WorkflowRunStep.finished_at >= since,
                WorkflowRunStep.outcome["passed"].as_boolean(),
            )
        )
        return int(await self.session.scalar(stmt) or 0)
