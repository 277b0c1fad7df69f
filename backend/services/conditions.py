"""Workflow conditions: one Jinja2 expression, evaluated in the template sandbox.

A condition is what goes between ``{% if`` and ``%}`` in a template
(``steps.inapp.read == false``, ``payload.amount > 100 and user.locale == "fr"``): the same
language managers already write templates in, parsed and run by the same sandboxed environment
with the same budget (steps, time, size; no I/O, no attribute that could escape). It sees
``payload``, ``user`` (the recipient's profile), ``steps`` (each earlier step's outcome by
name) and ``event``.

A condition is checked when the workflow is saved (one expression, nothing after it) and
evaluated when the run reaches it; a variable that is missing is an error (as in templates),
so ``payload.coupon is defined`` is how a condition asks whether a field is there.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.parser import Parser

from backend.errors import TemplateRenderError, TemplateSyntaxError
from backend.services import rendering

MAX_CONDITION_CHARS = 2000


@lru_cache(maxsize=1024)
def _check_expression(source: str) -> None:
    environment = rendering._env(False)
    parser = Parser(environment, source, state="variable")
    parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise JinjaSyntaxError(f"unexpected '{token.value}' after the expression", token.lineno)


def check_condition(source: str, *, field: str) -> None:
    """Raise :class:`TemplateSyntaxError` naming ``field`` unless ``source`` is exactly one
    expression (so that no template text can be slipped in after it)."""
    if not source.strip():
        raise TemplateSyntaxError("A condition cannot be empty", field=field)
    if len(source) > MAX_CONDITION_CHARS:
        raise TemplateSyntaxError(
            f"A condition is at most {MAX_CONDITION_CHARS} characters", field=field
        )
    if "{%" in source or "%}" in source or "{{" in source or "}}" in source:
        raise TemplateSyntaxError(
            "A condition is an expression, without '{{', '}}', '{%' or '%}'", field=field
        )
    try:
        _check_expression(source)
    except JinjaSyntaxError as exc:
        raise TemplateSyntaxError(
            f"Syntax error in {field}: {exc.message}", field=field, line=exc.lineno
        ) from exc
    except (RecursionError, MemoryError) as exc:
        raise TemplateSyntaxError(f"{field} is nested too deeply", field=field) from exc
    rendering.check_syntax(_as_test(source), field=field)


def _as_test(source: str) -> str:
    return "{% if " + source + " %}true{% else %}false{% endif %}"


def evaluate_condition(source: str, context: Mapping[str, Any], *, field: str) -> bool:
    """The condition's truth for ``context``, rendered in the sandbox under its budget; a
    missing variable or a sandbox refusal is a :class:`TemplateRenderError` naming ``field``."""
    check_condition(source, field=field)
    return rendering.render(_as_test(source), context, field=field) == "true"


def evaluate_value(source: str, context: Mapping[str, Any], *, field: str) -> str:
    """The expression's value as text (a delay's ``until``: an ISO 8601 time)."""
    check_condition(source, field=field)
    return rendering.render("{{ " + source + " }}", context, field=field)


__all__ = ["TemplateRenderError", "check_condition", "evaluate_condition", "evaluate_value"]


async def evaluate_condition_isolated(
    source: str, context: Mapping[str, Any], *, field: str
) -> bool:
    """:func:`evaluate_condition` in the render process (the API's dry runs: no condition
    holds its event loop)."""
    check_condition(source, field=field)
    (text,) = await rendering.render_fields_isolated([(field, _as_test(source), False)], context)
    return text == "true"


async def evaluate_value_isolated(source: str, context: Mapping[str, Any], *, field: str) -> str:
    """:func:`evaluate_value` in the render process."""
    check_condition(source, field=field)
    (text,) = await rendering.render_fields_isolated(
        [(field, "{{ " + source + " }}", False)], context
    )
    return text
