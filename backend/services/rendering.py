"""Template rendering in a sandboxed Jinja2 environment.

The rendering context is the same everywhere: ``user`` (the profile from the auth service),
``payload`` (the event's or campaign's variables) and ``event`` (``id``, ``type``, ``created_at``).
Undefined variables are errors (never an empty string in a customer's inbox), HTML bodies are
autoescaped, and attribute access that could escape the sandbox is refused at render time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2 import UndefinedError as JinjaUndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backend.errors import TemplateRenderError, TemplateSyntaxError

MAX_OUTPUT_CHARS = 512_000


class _HeraldSandbox(ImmutableSandboxedEnvironment):
    # A template can still build huge ranges; keep loops bounded.
    intercepted_binops = frozenset(["**", "*"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
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
        return super().call_binop(context, operator, left, right)


_text_env = _HeraldSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_html_env = _HeraldSandbox(undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True)
_text_env.globals.clear()
_html_env.globals.clear()


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > 10_000:
        raise SecurityError("range() is limited to 10000 items in templates")
    return r


_text_env.globals["range"] = _bounded_range
_html_env.globals["range"] = _bounded_range


def _env(html: bool) -> ImmutableSandboxedEnvironment:
    return _html_env if html else _text_env


@lru_cache(maxsize=2048)
def _parse(source: str, html: bool) -> nodes.Template:
    return _env(html).parse(source)


@lru_cache(maxsize=2048)
def _compile(source: str, html: bool) -> Any:
    return _env(html).from_string(source)


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


def _render_bounded(template: Any, context: Mapping[str, Any]) -> str:
    out: list[str] = []
    size = 0
    chunks: Iterator[str] = template.generate(context)
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"output is larger than {MAX_OUTPUT_CHARS} characters")
        out.append(chunk)
    return "".join(out)


def render(source: str, context: Mapping[str, Any], *, field: str, html: bool = False) -> str:
    """Render one template field; errors name the field, and the variable when one is missing."""
    check_syntax(source, field=field, html=html)
    template = _compile(source, html)
    try:
        return _render_bounded(template, context)
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
    except (TypeError, ValueError, ArithmeticError, OverflowError, RecursionError) as exc:
        raise TemplateRenderError(
            f"{field} could not be rendered: {exc}", field=field, line=_line_of(exc)
        ) from exc
