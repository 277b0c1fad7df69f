"""Workflow definitions: durations, step paths, and the checks and normal form of a
workflow's steps when it is saved (a typed error naming the step and field)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import Channel
from backend.db.models import EventType
from backend.db.repositories.templates import TemplateRepository
from backend.errors import (
    TemplateSyntaxError,
    ValidationError,
    WorkflowStepError,
)
from backend.services import conditions, rendering, templates

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


def send_payload(context: Mapping[str, Any]) -> Any:
    """The payload a send step's template sees: the event's, with ``steps`` (earlier
    outcomes, fetched data) and ``digest`` added when the payload is an object."""
    payload = context.get("payload")
    if not isinstance(payload, Mapping):
        return payload
    extra: dict[str, Any] = {"steps": context.get("steps", {})}
    if context.get("digest") is not None:
        extra["digest"] = context["digest"]
    return {**payload, **extra}
