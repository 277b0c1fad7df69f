"""Workflows: what happens after an event, step by step.

A workflow belongs to an event type; every save is a new version and one is current (as
templates are). Its steps, in order, are JSON objects with a ``type`` and an optional ``name``
(how later conditions refer to it: ``steps.<name>``) and ``if`` (a condition: the step is
skipped when it is false):

- ``send``: ``channel`` (or ``channels``) and ``template`` (default: the event type's). The
  message goes through the delivery path every event takes (preferences, quiet hours,
  throttles, budgets, failover). Later conditions see ``steps.<name>.status`` (the delivery's
  status: ``sent``, ``failed``, ``skipped``...; with several channels, each one's in
  ``steps.<name>.channels``) and, for in-app, ``steps.<name>.read``.
- ``delay``: ``duration`` (``"2s"``, ``"1h30m"``, or seconds), or ``until`` (an expression
  giving an ISO 8601 time, such as ``payload.appointment_at``) with an optional ``offset``
  (``"-1h"``), or ``at`` (``"09:00"``, the next such time of day in the user's time zone).
- ``branch``: ``condition``, then the ``then`` steps when it is true, else the ``else`` steps.
- ``throttle``: ``limit`` runs per ``window`` per user past this step; the run stops there
  beyond it.
- ``digest``: ``window``: the first run of a user waits the window out and collects the runs
  that reach the step meanwhile (they stop there); it goes on with ``payload.digest``
  (``count``, ``events``: their payloads).
- ``fetch``: ``url`` (a template over the context), ``method`` (GET or POST), ``timeout``
  (seconds), ``retries``, ``maxBytes``: the JSON answer is ``steps.<name>.data``.

Conditions are one expression in the template language, run in the template sandbox
(``backend.services.conditions``). A step's path is its place in the tree: ``"2"``,
``"1.then.0"``; each step runs once per run (``backend.services.workflow_runs``).

An event type whose workflow is one ``send`` step, on the type's own channels with its own
template, without a condition (what every type became when workflows came), is sent the way it
always was: dispatch straight to deliveries, no run (:func:`is_plain`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.db.models import EventType, Workflow, WorkflowRun, WorkflowRunStep
from backend.db.repositories.event_types import EventTypeRepository
from backend.db.repositories.recipients import RecipientRepository
from backend.db.repositories.templates import TemplateRepository
from backend.db.repositories.workflows import (
    WorkflowRepository,
    WorkflowRunRepository,
    WorkflowStepRepository,
)
from backend.errors import (
    NotFoundError,
    TemplateRenderError,
    TemplateSyntaxError,
    ValidationError,
    WorkflowStepError,
)
from backend.services import conditions, recipients, rendering, templates
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_cursor,
    encode_time_cursor,
)
from backend.services.users import UserProfile

KINDS = ("send", "delay", "branch", "throttle", "digest", "fetch")
STEP_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
DURATION_RE = re.compile(r"^([+-])?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
TIME_OF_DAY_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_STEPS = 50
MAX_DEPTH = 5
MAX_DELAY = timedelta(days=366)
MAX_FETCH_TIMEOUT = 30.0
MAX_FETCH_RETRIES = 5
MAX_FETCH_BYTES = 1_000_000
DEFAULT_FETCH_BYTES = 100_000
RUN_STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled", "stopped")
_KEYS: dict[str, frozenset[str]] = {
    "send": frozenset({"channel", "channels", "template"}),
    "delay": frozenset({"duration", "until", "offset", "at"}),
    "branch": frozenset({"condition", "then", "else"}),
    "throttle": frozenset({"limit", "window"}),
    "digest": frozenset({"window"}),
    "fetch": frozenset({"url", "method", "timeout", "retries", "maxBytes"}),
}
_COMMON = frozenset({"type", "name", "if"})


# --- durations and paths ---------------------------------------------------------------------


def parse_duration(value: Any, *, field: str, step: str | None, signed: bool = False) -> int:
    """Seconds in ``"1h30m"``, ``"2s"``, ``"-1h"`` (``signed``), or a whole number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise WorkflowStepError(
            "A duration is like '90s', '1h30m' or a number of seconds", field=field, step=step
        )
    if isinstance(value, int):
        seconds = value
    else:
        match = DURATION_RE.match(value.strip())
        if not value.strip() or match is None or not any(match.groups()[1:]):
            raise WorkflowStepError(
                f"'{value}' is not a duration (like '90s', '1h30m', '2d')", field=field, step=step
            )
        sign, d, h, m, s = match.groups()
        seconds = int(d or 0) * 86400 + int(h or 0) * 3600 + int(m or 0) * 60 + int(s or 0)
        if sign == "-":
            seconds = -seconds
    if (seconds < 0 and not signed) or abs(seconds) > MAX_DELAY.total_seconds():
        raise WorkflowStepError(
            f"A duration is {'up to' if signed else '0 to'} {MAX_DELAY.days} days",
            field=field,
            step=step,
        )
    return seconds


def split_path(path: str) -> list[str]:
    return path.split(".") if path else []


def list_at(
    steps: Sequence[Mapping[str, Any]], tokens: Sequence[str]
) -> Sequence[Mapping[str, Any]]:
    """The step list a path prefix names: ``[]`` the top, ``["1", "then"]`` a branch's."""
    current: Sequence[Mapping[str, Any]] = steps
    for n in range(0, len(tokens), 2):
        current = current[int(tokens[n])].get(tokens[n + 1]) or []
    return current


def step_at(steps: Sequence[Mapping[str, Any]], path: str) -> Mapping[str, Any]:
    tokens = split_path(path)
    return list_at(steps, tokens[:-1])[int(tokens[-1])]


def first_path(steps: Sequence[Mapping[str, Any]], prefix: str = "") -> str | None:
    """The first step of a list (``prefix`` names it), or None when it is empty."""
    if not list_at(steps, split_path(prefix)):
        return None
    return f"{prefix}.0" if prefix else "0"


def next_path(steps: Sequence[Mapping[str, Any]], path: str) -> str | None:
    """The step after ``path`` in run order: the next in its list, else the one after the
    branch whose list it ends; None at the end of the workflow."""
    tokens = split_path(path)
    while tokens:
        index = int(tokens[-1])
        if index + 1 < len(list_at(steps, tokens[:-1])):
            return ".".join([*tokens[:-1], str(index + 1)])
        tokens = tokens[:-2]  # up to the branch step
        if not tokens:
            return None
    return None


def field_of(path: str) -> str:
    """The input field of a path: ``"1.then.0"`` → ``steps[1].then[0]``."""
    tokens = split_path(path)
    out = f"steps[{tokens[0]}]"
    for n in range(1, len(tokens), 2):
        out += f".{tokens[n]}[{tokens[n + 1]}]"
    return out


def walk(
    steps: Sequence[Mapping[str, Any]], prefix: str = ""
) -> list[tuple[str, Mapping[str, Any]]]:
    """Every step with its path, in document order."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    for index, step in enumerate(steps):
        path = f"{prefix}.{index}" if prefix else str(index)
        out.append((path, step))
        if step.get("type") == "branch":
            for arm in ("then", "else"):
                out.extend(walk(step.get(arm) or [], f"{path}.{arm}"))
    return out


# --- validation ------------------------------------------------------------------------------


@dataclass
class _Checking:
    default_template: str | None
    template_channels: dict[str, frozenset[Channel]]
    names: set[str] = field(default_factory=set)
    count: int = 0


def _fail(message: str, field: str, step: str | None) -> WorkflowStepError:
    return WorkflowStepError(message, field=field, step=step)


def _check_condition(source: Any, *, field: str, step: str) -> str:
    if not isinstance(source, str):
        raise _fail(f"Step '{step}': {field} is a condition (text)", field, step)
    try:
        conditions.check_condition(source, field=field)
    except TemplateSyntaxError as exc:
        raise _fail(f"Step '{step}': {exc.message}", field, step) from exc
    return source


def _normalise(raw: Any, path: str, depth: int, checking: _Checking) -> dict[str, Any]:
    here = field_of(path)
    if not isinstance(raw, Mapping):
        raise _fail("A step is an object with a 'type'", here, None)
    kind = raw.get("type")
    if kind not in KINDS:
        raise _fail(f"A step's type is one of: {', '.join(KINDS)}", f"{here}.type", None)
    name = raw.get("name") or f"{kind}_{path.replace('.', '_')}"
    if not isinstance(name, str) or not STEP_NAME_RE.match(name):
        raise _fail(
            "A step name is 1-50 lowercase letters, digits or '_', a letter first",
            f"{here}.name",
            None,
        )
    if name in checking.names:
        raise _fail(f"Two steps are named '{name}'", f"{here}.name", name)
    checking.names.add(name)
    checking.count += 1
    if checking.count > MAX_STEPS:
        raise _fail(f"A workflow has at most {MAX_STEPS} steps", here, name)
    unknown = set(raw) - _COMMON - _KEYS[kind]
    if unknown:
        raise _fail(
            f"Step '{name}': a {kind} step has no {', '.join(sorted(unknown))}",
            f"{here}.{sorted(unknown)[0]}",
            name,
        )
    step: dict[str, Any] = {"type": kind, "name": name}
    if raw.get("if") is not None:
        step["if"] = _check_condition(raw["if"], field=f"{here}.if", step=name)
    if kind == "send":
        _send(raw, step, here, checking)
    elif kind == "delay":
        _delay(raw, step, here)
    elif kind == "branch":
        if depth >= MAX_DEPTH:
            raise _fail(f"Branches nest at most {MAX_DEPTH} deep", here, name)
        step["condition"] = _check_condition(
            raw.get("condition"), field=f"{here}.condition", step=name
        )
        for arm in ("then", "else"):
            items = raw.get(arm) or []
            if not isinstance(items, list):
                raise _fail(f"Step '{name}': {arm} is a list of steps", f"{here}.{arm}", name)
            step[arm] = [
                _normalise(item, f"{path}.{arm}.{n}", depth + 1, checking)
                for n, item in enumerate(items)
            ]
    elif kind == "throttle":
        limit = raw.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _fail(f"Step '{name}': limit is a whole number, 1 or more", f"{here}.limit", name)
        step["limit"] = limit
        step["window"] = _positive(raw.get("window"), f"{here}.window", name)
    elif kind == "digest":
        step["window"] = _positive(raw.get("window"), f"{here}.window", name)
    else:
        _fetch(raw, step, here)
    return step


def _positive(value: Any, field: str, name: str) -> int:
    if value is None:
        raise _fail(f"Step '{name}': give a window", field, name)
    seconds = parse_duration(value, field=field, step=name)
    if seconds < 1:
        raise _fail(f"Step '{name}': the window is at least 1 second", field, name)
    return seconds


def _send(raw: Mapping[str, Any], step: dict[str, Any], here: str, checking: _Checking) -> None:
    name = step["name"]
    given = raw.get("channels") if raw.get("channels") is not None else raw.get("channel")
    items = given if isinstance(given, list) else [given] if given is not None else []
    channels: list[Channel] = []
    for item in items:
        try:
            channels.append(Channel(item))
        except ValueError:
            raise _fail(
                f"Step '{name}': '{item}' is not a channel ({', '.join(c.value for c in Channel)})",
                f"{here}.channel",
                name,
            ) from None
    if not channels:
        raise _fail(f"Step '{name}': give the channel to send on", f"{here}.channel", name)
    template = raw.get("template") or checking.default_template
    if not isinstance(template, str):
        raise _fail(f"Step '{name}': give the template to send", f"{here}.template", name)
    has = checking.template_channels.get(template)
    if has is None:
        raise _fail(f"Step '{name}': no template '{template}'", f"{here}.template", name)
    missing = [c.value for c in channels if c not in has]
    if missing:
        raise _fail(
            f"Step '{name}': template '{template}' has no content for {', '.join(missing)}",
            f"{here}.channel",
            name,
        )
    step["channels"] = [c.value for c in dict.fromkeys(channels)]
    step["template"] = template


def _delay(raw: Mapping[str, Any], step: dict[str, Any], here: str) -> None:
    name = step["name"]
    given = [k for k in ("duration", "until", "at") if raw.get(k) is not None]
    if len(given) != 1:
        raise _fail(f"Step '{name}': give one of duration, until or at", f"{here}.duration", name)
    if raw.get("offset") is not None and given != ["until"]:
        raise _fail(f"Step '{name}': offset goes with until", f"{here}.offset", name)
    if given == ["duration"]:
        step["duration"] = parse_duration(raw["duration"], field=f"{here}.duration", step=name)
    elif given == ["until"]:
        step["until"] = _check_condition(raw["until"], field=f"{here}.until", step=name)
        if raw.get("offset") is not None:
            step["offset"] = parse_duration(
                raw["offset"], field=f"{here}.offset", step=name, signed=True
            )
    else:
        at = raw["at"]
        if not isinstance(at, str) or not TIME_OF_DAY_RE.match(at):
            raise _fail(f"Step '{name}': at is a time of day, 'HH:MM'", f"{here}.at", name)
        step["at"] = at


def _fetch(raw: Mapping[str, Any], step: dict[str, Any], here: str) -> None:
    name = step["name"]
    url = raw.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://", url) or len(url) > 2000:
        raise _fail(f"Step '{name}': url is an http(s) URL", f"{here}.url", name)
    try:
        rendering.check_syntax(url, field=f"{here}.url")
    except TemplateSyntaxError as exc:
        raise _fail(f"Step '{name}': {exc.message}", f"{here}.url", name) from exc
    method = str(raw.get("method") or "GET").upper()
    if method not in ("GET", "POST"):
        raise _fail(f"Step '{name}': method is GET or POST", f"{here}.method", name)
    timeout = raw.get("timeout", 5)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (0 < timeout <= MAX_FETCH_TIMEOUT)
    ):
        raise _fail(
            f"Step '{name}': timeout is 0 to {MAX_FETCH_TIMEOUT:g} seconds",
            f"{here}.timeout",
            name,
        )
    retries = raw.get("retries", 2)
    if (
        isinstance(retries, bool)
        or not isinstance(retries, int)
        or not (0 <= retries <= MAX_FETCH_RETRIES)
    ):
        raise _fail(f"Step '{name}': retries is 0 to {MAX_FETCH_RETRIES}", f"{here}.retries", name)
    size = raw.get("maxBytes", DEFAULT_FETCH_BYTES)
    if isinstance(size, bool) or not isinstance(size, int) or not (1 <= size <= MAX_FETCH_BYTES):
        raise _fail(f"Step '{name}': maxBytes is 1 to {MAX_FETCH_BYTES}", f"{here}.maxBytes", name)
    step.update(url=url, method=method, timeout=float(timeout), retries=retries, maxBytes=size)


async def check_steps(
    session: AsyncSession, *, event_type: EventType, steps: Any
) -> list[dict[str, Any]]:
    """The steps as stored: validated, with names and defaults filled in; a
    :class:`WorkflowStepError` names the first bad step and field."""
    if not isinstance(steps, list) or not steps:
        raise ValidationError("A workflow has at least one step", field="steps")
    slugs = {
        s.get("template")
        for _, s in walk([x for x in steps if isinstance(x, Mapping)])
        if isinstance(s, Mapping) and isinstance(s.get("template"), str)
    }
    if event_type.template_slug:
        slugs.add(event_type.template_slug)
    known: dict[str, frozenset[Channel]] = {}
    repo = TemplateRepository(session)
    for slug in slugs:
        assert isinstance(slug, str)
        row = await repo.get_by_slug(slug)
        if row is not None:
            known[slug] = frozenset(c.channel for c in templates.template_content(row))
    checking = _Checking(default_template=event_type.template_slug, template_channels=known)
    return [_normalise(raw, str(n), 0, checking) for n, raw in enumerate(steps)]


def plain_steps(event_type: EventType) -> list[dict[str, Any]] | None:
    """The single-step workflow that does what the event type's rule does."""
    if not event_type.template_slug or not event_type.channels:
        return None
    return [
        {
            "type": "send",
            "name": "send",
            "channels": list(event_type.channels),
            "template": event_type.template_slug,
        }
    ]


def is_plain(
    steps: Sequence[Mapping[str, Any]], *, template_slug: str | None, channels: Sequence[Channel]
) -> bool:
    """Whether the workflow is one unconditional send step of the rule's own template and
    channels: such events are dispatched as they always were, without a run."""
    if len(steps) != 1:
        return False
    step = steps[0]
    return (
        step.get("type") == "send"
        and not step.get("if")
        and step.get("template") == template_slug
        and set(step.get("channels") or ()) == {c.value for c in channels}
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
                "payload": _send_payload(context),
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


def _send_payload(context: Mapping[str, Any]) -> Any:
    """The payload a send step's template sees: the event's, with ``steps`` (earlier
    outcomes, fetched data) and ``digest`` added when the payload is an object."""
    payload = context.get("payload")
    if not isinstance(payload, Mapping):
        return payload
    extra: dict[str, Any] = {"steps": context.get("steps", {})}
    if context.get("digest") is not None:
        extra["digest"] = context["digest"]
    return {**payload, **extra}


def send_payload(context: Mapping[str, Any]) -> Any:
    return _send_payload(context)


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
