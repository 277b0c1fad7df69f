"""The steps of a run that do more than compute an outcome: a throttle and a digest (which
write their outcome themselves, in the transaction that decides it), a fetch (an HTTP call
whose JSON answer joins the context) and the delays until a payload time or a time of day;
and the run as a worker holds it while advancing."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import orjson
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db.models import Workflow, WorkflowRun, WorkflowRunStep
from backend.db.repositories.workflows import (
    WorkflowRunRepository,
    WorkflowStepRepository,
)
from backend.errors import TemplateRenderError
from backend.services import conditions, rendering
from backend.services.deliveries.context import DeliveryContext
from backend.services.envelope import Envelope
from backend.services.retries import backoff_seconds
from backend.services.workflows.definitions import (
    next_path,
)

log = logging.getLogger(__name__)


@dataclass
class HeldRun:
    """The run as this worker holds it while advancing."""

    id: uuid.UUID
    user_id: str
    event_type: str
    event_id: str
    envelope: Envelope
    cursor: str | None
    context: dict[str, Any]
    workflow: Workflow
    steps: int = 0  # completed by this call


async def _complete(
    ctx: DeliveryContext,
    run: HeldRun,
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
    run: HeldRun,
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


async def throttle_step(
    ctx: DeliveryContext, run: HeldRun, path: str, step: Mapping[str, Any]
) -> str:
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
                cursor=next_path(run.workflow.steps, path),
            )
        await session.commit()
    return status


async def digest_step(
    ctx: DeliveryContext,
    run: HeldRun,
    path: str,
    step: Mapping[str, Any],
    stored: Mapping[str, Any],
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
            cursor=next_path(run.workflow.steps, path),
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


async def fetch_step(
    run: HeldRun, step: Mapping[str, Any], http: httpx.AsyncClient | None, here: str
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
    client: httpx.AsyncClient, step: Mapping[str, Any], url: str, run: HeldRun
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


async def delay_until(
    ctx: DeliveryContext,
    run: HeldRun,
    step: Mapping[str, Any],
    here: str,
    now: datetime,
    seen: dict[str, Any] | None,
) -> datetime:
    if "duration" in step:
        return now + timedelta(seconds=step["duration"])
    if "until" in step:
        assert seen is not None
        text = conditions.evaluate_value(step["until"], seen, field=f"{here}.until")
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
