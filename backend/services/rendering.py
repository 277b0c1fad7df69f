"""Template rendering in a sandboxed Jinja2 environment.

The rendering context is the same everywhere: ``user`` (the profile from the auth service),
``payload`` (the event's or campaign's variables) and ``event`` (``id``, ``type``, ``created_at``).
Undefined variables are errors (never an empty string in a customer's inbox), HTML bodies are
autoescaped, and attribute access that could escape the sandbox is refused at render time.

Templates are written by managers, so a template is treated as hostile input. Each render has
a budget, and going over it is a :class:`TemplateRenderError`, never a stuck or bloated worker:

* **steps**: loop iterations, calls (macros included) and filter applications, at most
  ``MAX_STEPS`` per render: nested loops and branching recursion stop there;
* **time**: ``MAX_RENDER_SECONDS`` of wall time for one message, checked at every step; where
  the caller must not wait longer whatever a template does (the API's previews), the render
  runs in a separate process that is stopped when it overruns (:func:`render_fields_isolated`),
  so no render ever holds the API's event loop;
* **size**: the output at most ``MAX_OUTPUT_CHARS``; everything produced on the way (macro
  bodies, ``{% set %}`` blocks, loop bodies) at most ``MAX_PRODUCED_CHARS``; every value a
  call, filter, ``+``, ``*`` or ``~`` makes at most ``MAX_OUTPUT_CHARS``, checked *before* the
  big ones are built (repetition, padding widths, ``replace``, ``join``, format widths);
* **depth**: nesting too deep for the parser or recursion too deep for Python is refused
  (at save for syntax, at render for recursion).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2 import UndefinedError as JinjaUndefinedError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from backend.errors import TemplateRenderError, TemplateSyntaxError
from backend.frameworks.jinja_parsing import TransformedParse
from backend.frameworks.process_pools import kill_pool_processes

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 512_000
MAX_PRODUCED_CHARS = 4 * MAX_OUTPUT_CHARS
MAX_STEPS = 200_000
MAX_RENDER_SECONDS = 2.0
MAX_RANGE = 10_000
RESERVED_PREFIX = "_herald"

# A width or precision of six digits or more in a format string: "%1000000s", "{:>999999}".
_WIDE_PRINTF = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d{6,}|\.\d{6,}|\.\*)")
_WIDE_FORMAT = re.compile(r"\{[^{}]*:[^{}]*(\d{6,}|\{)")


@dataclass(slots=True)
class _Budget:
    deadline: float
    steps: int = 0
    produced: int = 0

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise SecurityError(
                f"the template takes more than {MAX_STEPS} steps (loop iterations, calls, filters)"
            )
        # Every step: one slow filter between two checks is all a render can overrun by.
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")

    def produce(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_PRODUCED_CHARS:
            raise SecurityError(
                f"the template produces more than {MAX_PRODUCED_CHARS} characters on the way"
            )


_budget: ContextVar[_Budget | None] = ContextVar("herald_template_budget", default=None)


def _step(count: int = 1) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step(count)


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple | dict) and len(value) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"a value larger than {MAX_OUTPUT_CHARS} items or characters")
    return value


def _check_arguments(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    # Widths, counts and sizes given to str methods and filters ("x".center(10**9),
    # "x"|indent(10**9), items|batch(10**9, "")): refused before anything is allocated.
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_CHARS:
            raise SecurityError(f"an argument larger than {MAX_OUTPUT_CHARS}")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    count = text.count(old) if old else len(text) + 1
    if len(text) + count * max(0, len(new) - len(old)) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"replace() would make more than {MAX_OUTPUT_CHARS} characters")


def _materialise(items: Any, separator: Any) -> list[Any]:
    values = list(items)
    _step(len(values))
    size = sum(len(str(v)) for v in values) + len(str(separator)) * max(0, len(values) - 1)
    if size > MAX_OUTPUT_CHARS:
        raise SecurityError(f"join() would make more than {MAX_OUTPUT_CHARS} characters")
    return values


def _check_format_string(text: Any, *, printf: bool) -> None:
    if isinstance(text, str) and (_WIDE_PRINTF if printf else _WIDE_FORMAT).search(text):
        raise SecurityError("format widths of 100000 and more are not allowed in templates")


def _guard_loop(iterable: Any) -> Iterator[Any]:
    """Wraps every ``{% for %}``: each iteration is a step."""
    for item in iterable:
        _step()
        yield item


def _guard_body(literal_chars: int) -> str:
    """Opens every loop and macro body: counts the literal text it is about to produce."""
    budget = _budget.get()
    if budget is not None:
        budget.produce(literal_chars)
    return ""


def _guard_emit(value: Any) -> Any:
    """Wraps every ``{{ expression }}``: counts what it produces, wherever it goes."""
    budget = _budget.get()
    if budget is not None:
        budget.produce(len(value) if isinstance(value, str) else 16)
    return value


def _guarded_concat(join: Callable[[Iterable[Any]], str]) -> Callable[..., str]:
    def concat(*parts: Any) -> str:
        strings = [p if isinstance(p, str) else str(p) for p in parts]
        if sum(len(p) for p in strings) > MAX_OUTPUT_CHARS:
            raise SecurityError(f"'~' would make more than {MAX_OUTPUT_CHARS} characters")
        return join(parts)

    return concat


def _literal_chars(body: list[nodes.Node]) -> int:
    """Literal text in a body, not counting nested loops and macros (they count their own)."""
    total = 0
    stack: list[nodes.Node] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif not isinstance(node, nodes.For | nodes.Macro | nodes.CallBlock):
            stack.extend(node.iter_child_nodes())
    return total


def _guard(name: str, *args: nodes.Expr, lineno: int) -> nodes.Call:
    return nodes.Call(
        nodes.Name(name, "load", lineno=lineno), list(args), [], None, None, lineno=lineno
    )


class _Instrument(NodeTransformer):
    """Rewrites a parsed template so that rendering keeps to the budget (see the module doc)."""

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.name.startswith(RESERVED_PREFIX):
            raise JinjaSyntaxError(
                f"names starting with '{RESERVED_PREFIX}' are reserved", node.lineno
            )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _guard("_herald_concat", *node.nodes, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            n
            if isinstance(n, nodes.TemplateData)
            else _guard("_herald_emit", cast(nodes.Expr, n), lineno=n.lineno)
            for n in node.nodes
        ]
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        chars = _literal_chars(node.body)
        self.generic_visit(node)
        node.iter = _guard("_herald_loop", cast(nodes.Expr, node.iter), lineno=node.lineno)
        node.body.insert(0, self._body_guard(chars, node.lineno))
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        chars = _literal_chars(node.body)
        self.generic_visit(node)
        node.body.insert(0, self._body_guard(chars, node.lineno))
        return node

    @staticmethod
    def _body_guard(chars: int, lineno: int) -> nodes.Output:
        return nodes.Output(
            [_guard("_herald_body", nodes.Const(chars, lineno=lineno), lineno=lineno)],
            lineno=lineno,
        )


class _HeraldSandbox(TransformedParse, ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*", "+", "%"])

    def transform(self, tree: nodes.Template) -> nodes.Template:
        instrumented = _Instrument().visit(tree)
        assert isinstance(instrumented, nodes.Template)
        return instrumented

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        if operator == "**" and isinstance(right, int) and right > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("the result of a repetition is too large")
        if (
            operator == "+"
            and isinstance(left, str | list | tuple)
            and isinstance(right, str | list | tuple)
            and len(left) + len(right) > MAX_OUTPUT_CHARS
        ):
            raise SecurityError("the result of '+' is too large")
        if operator == "%" and isinstance(left, str):
            _check_format_string(left, printf=True)
            _check_arguments(right if isinstance(right, tuple) else (right,), {})
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        if __obj is _guard_emit:
            # Every ``{{ expression }}`` is wrapped in this call (``_Instrument``): Herald's own
            # function, which the sandbox's check and Jinja's dispatch (``Context.call``)
            # would only pass through (a loop of 10 items renders a quarter faster without).
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            return _check_size(_guard_emit(*args, **kwargs))
        if not isinstance(__obj, Macro) and not any(__obj is f for f in _OWN_FUNCTIONS):
            _check_arguments(args, kwargs)
            target = getattr(__obj, "__wrapped__", __obj)
            owner = getattr(target, "__self__", None)
            method = getattr(target, "__name__", "")
            if isinstance(owner, str):
                if method == "replace" and len(args) >= 2:
                    _check_replace(owner, args[0], args[1])
                elif method == "join" and args:
                    args = (_materialise(args[0], owner), *args[1:])
                elif method in ("format", "format_map"):
                    _check_format_string(owner, printf=False)
        return _check_size(super().call(__context, __obj, *args, **kwargs))


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters are called directly by compiled templates, not through ``call``.
    takes_context = hasattr(func, "jinja_pass_arg")

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        value_at = 1 if takes_context else 0
        value, extra = args[value_at], args[value_at + 1 :]
        _check_arguments(extra, kwargs)
        if name == "replace" and len(extra) >= 2:
            _check_replace(value, extra[0], extra[1])
        elif name == "join":
            separator = extra[0] if extra else kwargs.get("d", "")
            args = (*args[:value_at], _materialise(value, separator), *extra)
        elif name == "format":
            _check_format_string(value, printf=True)
        elif name == "indent" and isinstance(value, str):
            width = extra[0] if extra else kwargs.get("width", 4)
            per_line = len(width) if isinstance(width, str) else int(width)
            if len(value) + (value.count("\n") + 1) * per_line > MAX_OUTPUT_CHARS:
                raise SecurityError(f"indent() would make more than {MAX_OUTPUT_CHARS} characters")
        return _check_size(func(*args, **kwargs))

    return guarded


_text_env = _HeraldSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_html_env = _HeraldSandbox(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)
_text_env.globals.clear()
_html_env.globals.clear()


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items in templates")
    return r


_OWN_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    _bounded_range,
    _guard_loop,
    _guard_body,
    _guard_emit,
)
_CONCAT = {_text_env: _guarded_concat(str_join), _html_env: _guarded_concat(markup_join)}
for _environment in (_text_env, _html_env):
    _environment.globals.update(
        range=_bounded_range,
        _herald_loop=_guard_loop,
        _herald_body=_guard_body,
        _herald_emit=_guard_emit,
        _herald_concat=_CONCAT[_environment],
    )
    _environment.filters = {k: _guard_filter(k, f) for k, f in _environment.filters.items()}
_OWN_FUNCTIONS += tuple(_CONCAT.values())


def _env(html: bool) -> ImmutableSandboxedEnvironment:
    return _html_env if html else _text_env


@lru_cache(maxsize=2048)
def _parse(source: str, html: bool) -> nodes.Template:
    return _env(html).parse(source)


@lru_cache(maxsize=2048)
def _compile(source: str, html: bool) -> Any:
    template = _env(html).from_string(source)
    # Jinja keeps a template's globals as a ChainMap over its environment's and copies them into
    # a new dict at every render, a quarter of rendering a short field. Herald's environments
    # get their globals once, at import, and have no loader (no template is imported into
    # another): a plain dict of the same names renders the same.
    template.globals = dict(template.globals)
    return template


def check_syntax(source: str, *, field: str, html: bool = False) -> None:
    """Raise :class:`TemplateSyntaxError` naming the field and line when ``source`` is invalid."""
    try:
        _compile(source, html)
    except JinjaSyntaxError as exc:
        raise TemplateSyntaxError(
            f"Syntax error in {field} at line {exc.lineno}: {exc.message}",
            field=field,
            line=exc.lineno,
        ) from exc
    except (RecursionError, MemoryError) as exc:
        # Thousands of nested brackets or blocks exhaust the parser's recursion.
        raise TemplateSyntaxError(
            f"{field} is nested too deeply to be compiled", field=field
        ) from exc


def _chain(node: nodes.Node) -> tuple[list[str], nodes.Node] | None:
    """Follow ``a.b['c'].d`` down to its root name; ``None`` if the root is not a plain name."""
    parts: list[str] = []
    current = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
            parts.append(str(current.arg.value))
            current = current.node
        else:
            break
    if isinstance(current, nodes.Name):
        parts.append(current.name)
        return list(reversed(parts)), current
    return None


def _walk(node: nodes.Node, roots: set[str], found: set[str]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        chain = _chain(node)
        if chain is not None:
            path, _ = chain
            if path[0] in roots:
                found.add(".".join(path))
            # Non-constant subscripts inside the chain may reference variables too.
            current: nodes.Node = node
            while isinstance(current, nodes.Getattr | nodes.Getitem):
                if isinstance(current, nodes.Getitem) and not isinstance(current.arg, nodes.Const):
                    _walk(current.arg, roots, found)
                current = current.node
            return
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in roots:
        found.add(node.name)
        return
    for child in node.iter_child_nodes():
        _walk(child, roots, found)


def variables_in(source: str, *, html: bool = False) -> set[str]:
    """Dotted paths of the context variables a template reads (``payload.movie.title``)."""
    try:
        ast = _parse(source, html)
    except JinjaSyntaxError:
        return set()
    roots = meta.find_undeclared_variables(ast) - set(_text_env.globals)
    found: set[str] = set()
    _walk(ast, roots, found)
    # Keep only the longest paths: "payload" is implied by "payload.movie".
    return {p for p in found if not any(o != p and o.startswith(p + ".") for o in found)}


def _resolve(context: Mapping[str, Any], path: str) -> bool:
    current: Any = context
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False
    return True


def _missing_variable(source: str, context: Mapping[str, Any], html: bool) -> str | None:
    for path in sorted(variables_in(source, html=html)):
        if not _resolve(context, path):
            return path
    return None


def _line_of(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _new_budget() -> _Budget:
    return _Budget(deadline=time.monotonic() + MAX_RENDER_SECONDS)


def _render_bounded(template: Any, context: Mapping[str, Any], budget: _Budget) -> str:
    out: list[str] = []
    size = 0
    token = _budget.set(budget)
    try:
        chunks: Iterator[str] = template.generate(context)
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"output is larger than {MAX_OUTPUT_CHARS} characters")
            out.append(chunk)
    finally:
        _budget.reset(token)
    return "".join(out)


def render(
    source: str,
    context: Mapping[str, Any],
    *,
    field: str,
    html: bool = False,
    budget: _Budget | None = None,
) -> str:
    """Render one template field; errors name the field, and the variable when one is missing.

    ``budget`` shares one budget between the fields of a message (:func:`render_fields`).
    """
    check_syntax(source, field=field, html=html)
    template = _compile(source, html)
    try:
        return _render_bounded(template, context, budget or _new_budget())
    except SecurityError as exc:
        raise TemplateRenderError(
            f"{field} uses something the template sandbox does not allow: {exc}",
            field=field,
            line=_line_of(exc),
        ) from exc
    except JinjaUndefinedError as exc:
        missing = _missing_variable(source, context, html)
        what = f"'{missing}'" if missing else f"a variable ({exc.message})"
        raise TemplateRenderError(
            f"{field} needs {what}, which is missing from the variables",
            field=field,
            line=_line_of(exc),
        ) from exc
    except TemplateError as exc:
        raise TemplateRenderError(
            f"{field} could not be rendered: {exc.message}", field=field, line=_line_of(exc)
        ) from exc
    except RecursionError as exc:
        raise TemplateRenderError(
            f"{field} recurses too deeply (a macro calling itself without end?)", field=field
        ) from exc
    except MemoryError as exc:
        raise TemplateRenderError(f"{field} needs too much memory to render", field=field) from exc
    except (TypeError, ValueError, ArithmeticError, OverflowError) as exc:
        raise TemplateRenderError(
            f"{field} could not be rendered: {exc}", field=field, line=_line_of(exc)
        ) from exc


# A message's fields to render: (field name, template source, autoescaped as HTML).
Fields = Sequence[tuple[str, str, bool]]


def render_fields(fields: Fields, context: Mapping[str, Any]) -> list[str]:
    """Render the fields of one message under one budget (steps, time, size)."""
    budget = _new_budget()
    return [
        render(source, context, field=name, html=html, budget=budget)
        for name, source, html in fields
    ]


# How long past the budget a separate render process may run before it is stopped: the budget
# is checked at every step, so only one slow operation can overrun it.
ISOLATED_GRACE_SECONDS = 1.0
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


_ChildError = tuple[bool, str, str | None, int | None]


def _render_in_child(
    fields: Fields, context: Mapping[str, Any]
) -> tuple[list[str] | None, _ChildError | None]:
    # The project's errors take keyword arguments, which exceptions do not pickle: an error
    # crosses the process boundary as (is a syntax error, message, field, line).
    try:
        return render_fields(fields, context), None
    except TemplateSyntaxError as exc:
        return None, (True, exc.message, exc.field, exc.line)
    except TemplateRenderError as exc:
        return None, (False, exc.message, exc.field, exc.line)


def _ready() -> bool:
    return True


async def _render_pool() -> ProcessPoolExecutor:
    """The render process; a new one is started (and waited for) outside any render's budget."""
    global _pool
    with _pool_lock:
        pool, started = _pool, False
        if pool is None:
            # spawn: a fork of a process running an event loop and threads is unsafe.
            pool = _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
            started = True
    if started:
        await asyncio.get_running_loop().run_in_executor(pool, _ready)
    return pool


_turns: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _turn() -> asyncio.Lock:
    """One render at a time per event loop: the process renders one message at a time, and a
    render's time limit must start when its render does, not behind another one in the queue
    (where it would expire, and kill the process under the render ahead of it)."""
    loop = asyncio.get_running_loop()
    lock = _turns.get(loop)
    if lock is None:
        for old in [other for other in _turns if other.is_closed()]:
            del _turns[old]
        lock = _turns[loop] = asyncio.Lock()
    return lock


def _discard_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool whose render overran: its process is killed, the next render starts anew."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    kill_pool_processes(pool)
    pool.shutdown(wait=False, cancel_futures=True)


def close_render_pool() -> None:
    """Stop the render process, if one was started (at the API's shutdown)."""
    pool = _pool
    if pool is not None:
        _discard_pool(pool)


async def render_fields_isolated(fields: Fields, context: Mapping[str, Any]) -> list[str]:
    """:func:`render_fields` in a separate process, answered within the budget and its grace
    whatever the template does; the caller's event loop only waits.

    Renders take turns in the one process: a burst of previews costs one core at most.
    """
    if not fields:
        return []
    async with _turn():
        return await _render_isolated(fields, context)


async def _render_isolated(fields: Fields, context: Mapping[str, Any]) -> list[str]:
    pool = await _render_pool()
    future = asyncio.get_running_loop().run_in_executor(pool, _render_in_child, fields, context)
    try:
        rendered, error = await asyncio.wait_for(
            future, MAX_RENDER_SECONDS + ISOLATED_GRACE_SECONDS
        )
    except TimeoutError:
        _discard_pool(pool)
        raise TemplateRenderError(
            f"{fields[0][0]} uses something the template sandbox does not allow: "
            f"rendering took longer than {MAX_RENDER_SECONDS:g} s",
            field=fields[0][0],
        ) from None
    except BrokenProcessPool:
        _discard_pool(pool)
        log.warning("the template render process died; starting a new one")
        raise TemplateRenderError(
            f"{fields[0][0]} needs too much memory to render", field=fields[0][0]
        ) from None
    if error is not None:
        syntax, message, field, line = error
        kind = TemplateSyntaxError if syntax else TemplateRenderError
        raise kind(message, field=field, line=line)
    assert rendered is not None
    return rendered
