"""Managing workflows: saving versions (each save a new one), listing and cancelling runs,
and the dry run (``previewWorkflow``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.db.models import EventType, Workflow, WorkflowRun, WorkflowRunStep
from backend.db.repositories.event_types import EventTypeRepository
from backend.db.repositories.recipients import RecipientRepository
from backend.db.repositories.workflows import (
    WorkflowRepository,
    WorkflowRunRepository,
    WorkflowStepRepository,
)
from backend.errors import (
    NotFoundError,
    TemplateRenderError,
    ValidationError,
    WorkflowStepError,
)
from backend.services import conditions, recipients, templates
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_cursor,
    encode_time_cursor,
)
from backend.services.users import UserProfile
from backend.services.workflows.definitions import (
    RUN_STATUSES,
    check_steps,
    field_of,
    first_path,
    is_plain,
    next_path,
    plain_steps,
    send_payload,
    step_at,
)

# --- managing workflows ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowData:
    event_type: str
    steps: Any
    cancels: Sequence[str] = ()


async def _event_type(session: AsyncSession, name: str, *, field: str = "eventType") -> EventType:
    row = await EventTypeRepository(session).get(name)
    if row is None:
        raise NotFoundError(f"No event type '{name}'", field=field)
    return row


async def current_workflow(session: AsyncSession, *, event_type: str) -> Workflow | None:
    """The event type's current workflow version, or None when it has none."""
    return await WorkflowRepository(session).current(event_type)


async def workflow_versions(session: AsyncSession, *, event_type: str) -> list[Workflow]:
    """Every version of the event type's workflow, newest first."""
    return await WorkflowRepository(session).versions(event_type)


async def save_workflow(session: AsyncSession, *, actor: Principal, data: WorkflowData) -> Workflow:
    """Validate the steps and store them as the event type's new current version."""
    event_type = await _event_type(session, data.event_type)
    steps = await check_steps(session, event_type=event_type, steps=data.steps)
    cancels = list(dict.fromkeys(data.cancels))
    types = EventTypeRepository(session)
    for n, name in enumerate(cancels):
        if await types.get(name) is None:
            raise NotFoundError(f"No event type '{name}' to cancel", field=f"cancels[{n}]")
    return await WorkflowRepository(session).add_version(
        Workflow(
            id=uuid.uuid4(),
            event_type=event_type.name,
            version=0,
            steps=steps,
            cancels=cancels,
            created_by=actor.user_id,
        )
    )


async def keep_plain_workflow(
    session: AsyncSession, *, actor: Principal, event_type: EventType
) -> None:
    """After an event type's rule changed: a type whose workflow is missing or plain gets the
    plain workflow of its new rule, so that the two never disagree."""
    steps = plain_steps(event_type)
    if steps is None:
        return
    repo = WorkflowRepository(session)
    current = await repo.current(event_type.name)
    if current is not None:
        if current.steps == steps:
            return
        if not is_plain(
            current.steps,
            template_slug=current.steps[0].get("template"),
            channels=[Channel(c) for c in current.steps[0].get("channels") or ()],
        ):
            return  # a real workflow: the manager's, not the rule's
    await repo.add_version(
        Workflow(
            id=uuid.uuid4(),
            event_type=event_type.name,
            version=0,
            steps=steps,
            cancels=list(current.cancels) if current is not None else [],
            created_by=actor.user_id,
        )
    )


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFilter:
    event_type: str | None = None
    user_id: str | None = None
    status: str | None = None
    cancel_key: str | None = None
    event_id: str | None = None


async def list_runs(
    session: AsyncSession, *, filter: RunFilter, first: int, after: str | None
) -> Page[WorkflowRun]:
    """Runs newest first, filtered."""
    check_page_size(first)
    if filter.status is not None and filter.status not in RUN_STATUSES:
        raise ValidationError(
            f"A run's status is one of: {', '.join(RUN_STATUSES)}", field="filter.status"
        )
    rows = await WorkflowRunRepository(session).page(
        event_type=filter.event_type,
        user_id=filter.user_id,
        status=filter.status,
        cancel_key=filter.cancel_key,
        event_id=filter.event_id,
        after=decode_time_cursor("run", after),
        limit=first + 1,
    )
    return Page(
        items=[(encode_time_cursor("run", r.created_at, r.id), r) for r in rows[:first]],
        has_next_page=len(rows) > first,
    )


async def version_numbers(
    session: AsyncSession, *, runs: Sequence[WorkflowRun]
) -> dict[uuid.UUID, int]:
    """The workflow version number of each run's version, by version id."""
    return await WorkflowRepository(session).version_numbers([r.workflow_id for r in runs])


async def get_run(
    session: AsyncSession, *, run_id: str
) -> tuple[WorkflowRun, list[WorkflowRunStep], int | None] | None:
    """A run with its step timeline (in the order the steps started) and version number."""
    try:
        ident = uuid.UUID(run_id)
    except ValueError:
        return None
    run = await WorkflowRunRepository(session).get(ident)
    if run is None:
        return None
    steps = await WorkflowStepRepository(session).of_run(ident)
    versions = await version_numbers(session, runs=[run])
    return run, steps, versions.get(run.workflow_id)


MAX_CANCEL_KEY = 200


async def cancel_runs(session: AsyncSession, *, key: str) -> int:
    """Cancel every unfinished run with this cancel key: a waiting run stops before its next
    step (a step already running finishes). How many were cancelled."""
    if not 1 <= len(key) <= MAX_CANCEL_KEY:
        raise ValidationError(f"A cancel key is 1-{MAX_CANCEL_KEY} characters", field="key")
    return await WorkflowRunRepository(session).cancel(now=datetime.now(UTC), key=key)


# --- the dry run -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewStep:
    path: str
    name: str
    kind: str
    runs: bool  # the step would run (its condition holds, or it has none)
    condition: bool | None  # the value of its `if`, or of a branch's condition
    detail: str
    messages: list[templates.RenderedMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Preview:
    workflow: Workflow
    steps: list[PreviewStep]


def _sample_outcome(step: Mapping[str, Any]) -> dict[str, Any]:
    """What a dry run assumes a step did: a send was delivered and is unread."""
    if step["type"] == "send":
        return {
            "status": "sent",
            "read": False if "in_app" in step["channels"] else None,
            "channels": {c: "sent" for c in step["channels"]},
        }
    if step["type"] == "fetch":
        return {"status": "skipped", "data": None}
    if step["type"] == "throttle":
        return {"status": "done", "passed": True}
    return {"status": "done"}


async def preview_workflow(
    session: AsyncSession,
    *,
    event_type: str,
    payload: Any,
    user: UserProfile,
    steps: Any = None,
) -> Preview:
    """Walk the workflow (the current one, or ``steps`` unsaved) for one event and user,
    sending nothing: which steps would run, each condition's value and each rendered message.
    It assumes every send is delivered and left unread, a fetch answers nothing, throttles let
    the run through and time passes for delays."""
    row = await _event_type(session, event_type)
    if steps is not None:
        workflow = Workflow(
            id=uuid.uuid4(),
            event_type=row.name,
            version=0,
            steps=await check_steps(session, event_type=row, steps=steps),
            cancels=[],
        )
    else:
        found = await current_workflow(session, event_type=event_type)
        if found is None:
            raise NotFoundError(f"The event type '{event_type}' has no workflow", field="eventType")
        workflow = found
    context: dict[str, Any] = {
        "payload": payload if payload is not None else {},
        "user": user.to_context(),
        "event": {"id": "preview", "type": event_type, "created_at": datetime.now(UTC).isoformat()},
        "steps": {},
    }
    out: list[PreviewStep] = []
    path: str | None = first_path(workflow.steps)
    while path is not None:
        step = step_at(workflow.steps, path)
        here = field_of(path)
        holds: bool | None = None
        if step.get("if"):
            holds = await _preview_condition(step["if"], context, field=f"{here}.if", step=step)
            if not holds:
                out.append(PreviewStep(path, step["name"], step["type"], False, False, "skipped"))
                context["steps"][step["name"]] = {"status": "skipped"}
                path = next_path(workflow.steps, path)
                continue
        if step["type"] == "branch":
            value = await _preview_condition(
                step["condition"], context, field=f"{here}.condition", step=step
            )
            arm = "then" if value else "else"
            out.append(PreviewStep(path, step["name"], "branch", True, value, f"takes {arm}"))
            context["steps"][step["name"]] = {"status": "done", "value": value}
            path = first_path(workflow.steps, f"{path}.{arm}") or next_path(workflow.steps, path)
            continue
        messages: list[templates.RenderedMessage] = []
        detail = _describe(step)
        if step["type"] == "send":
            template = await templates.get_template(session, slug=step["template"])
            content = templates.template_content(template)
            render_context = {
                **context,
                "payload": send_payload(context),
            }
            for channel in step["channels"]:
                item = templates.select_content(
                    content, channel=Channel(channel), locale=user.locale
                )
                try:
                    messages.append(await templates.render_content_isolated(item, render_context))
                except TemplateRenderError as exc:
                    raise WorkflowStepError(
                        f"Step '{step['name']}': {exc.message}",
                        field=f"{here}.template",
                        step=step["name"],
                    ) from exc
        out.append(PreviewStep(path, step["name"], step["type"], True, holds, detail, messages))
        context["steps"][step["name"]] = _sample_outcome(step)
        path = next_path(workflow.steps, path)
    return Preview(workflow, out)


async def _preview_condition(
    source: str, context: Mapping[str, Any], *, field: str, step: Mapping[str, Any]
) -> bool:
    try:
        return await conditions.evaluate_condition_isolated(source, context, field=field)
    except TemplateRenderError as exc:
        raise WorkflowStepError(
            f"Step '{step['name']}': {exc.message}", field=field, step=step["name"]
        ) from exc


def _describe(step: Mapping[str, Any]) -> str:
    kind = step["type"]
    if kind == "send":
        return f"send {step['template']} on {', '.join(step['channels'])}"
    if kind == "delay":
        if "duration" in step:
            return f"wait {step['duration']} s"
        if "until" in step:
            return f"wait until {step['until']} (offset {step.get('offset', 0)} s)"
        return f"wait until {step['at']} in the user's time zone"
    if kind == "throttle":
        return f"at most {step['limit']} per {step['window']} s per user"
    if kind == "digest":
        return f"collect for {step['window']} s"
    if kind == "fetch":
        return f"{step['method']} {step['url']} (not called in a dry run)"
    return kind


async def preview_profile(session: AsyncSession, *, user_id: str | None) -> UserProfile:
    """The user a dry run renders for: the recipient stored under ``user_id``, else the
    sample user (with that id)."""
    if user_id:
        rows = await RecipientRepository(session).profiles([user_id])
        if rows:
            return recipients.profile_of(rows[0])
    return UserProfile.from_json({**templates.SAMPLE_USER, **({"id": user_id} if user_id else {})})
