"""Logging: text for people, one JSON object a line for log shippers; context; redaction.

``configure_logging(settings)`` installs one handler on the root logger. With
``HERALD_LOG_FORMAT=json`` each line is a JSON object with ``time``, ``level``, ``logger``,
``message``, every field bound with :func:`bind_log_context` / :func:`log_context` (the event
and delivery a line is about), ``trace_id``/``span_id`` when tracing is on, and ``exception``.

Two rules keep secrets and message bodies out of the logs:
- the JSON formatter writes a fixed set of fields: whatever a caller passes in ``extra=``
  (a rendered body, a profile) is never written;
- :class:`RedactingFilter` rewrites bearer tokens, JWTs, passwords in URLs and
  ``password=``/``secret=``/``token=``-style values in the message and the traceback before any
  formatter sees them.

Periodic housekeeping (beat sends ``events.release_due`` every second) would fill an INFO log
with three lines a second: :func:`quiet_periodic_tasks` logs Celery's "Sending due task",
"received" and "succeeded" lines for those tasks at DEBUG, so an INFO log shows requests,
deliveries and errors. Their failures and retries keep their own levels.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

import orjson

from backend.config import Settings
from backend.observability import tracing

REDACTED = "[REDACTED]"

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("herald_log_context", default=_EMPTY)

_SENSITIVE_NAMES = (
    r"password|passwd|secret|token|api[_-]?key|authorization|private[_-]?key|credentials?"
)
_REDACTIONS: tuple[tuple[re.Pattern[str], Any], ...] = (
    # "Bearer <token>" wherever it appears (headers echoed in errors, connection_init payloads).
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*"), "Bearer " + REDACTED),
    # A bare JWT: header and payload are base64url JSON, so both start with "eyJ".
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Credentials in a URL: amqp://user:password@host, postgresql://user:password@host.
    (
        re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@"),
        r"\g<head>:" + REDACTED + "@",
    ),
    # key=value, key: value, "key": "value" for keys that name a secret (HERALD_JWT_SECRET=...).
    (
        re.compile(
            r"(?i)(?P<key>[\w.-]*(?:" + _SENSITIVE_NAMES + r")[\"']?\s*[:=]\s*)"
            r"(?:(?P<q>[\"'])(?:\\.|(?!(?P=q)).)*(?P=q)"
            r"|(?:bearer\s+)?(?:\[REDACTED\]|[^\s\"',;}&)\[\]]+))"
        ),
        lambda m: m["key"] + (f"{m['q']}{REDACTED}{m['q']}" if m["q"] else REDACTED),
    ),
)


def redact(text: str) -> str:
    """``text`` with bearer tokens, JWTs, URL passwords and secret-named values replaced."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def bind_log_context(**values: Any) -> Token[Mapping[str, Any]]:
    """Add fields (``event_id=...``, ``delivery_id=...``) to every log line written in this
    context until :func:`reset_log_context` is called with the returned token. ``None`` values
    are left out. Asyncio tasks copy the context when created, so a field bound inside one
    delivery's task stays on that delivery's lines."""
    merged = {**_context.get(), **{k: v for k, v in values.items() if v is not None}}
    return _context.set(MappingProxyType(merged))


def reset_log_context(token: Token[Mapping[str, Any]]) -> None:
    """Undo the :func:`bind_log_context` call that returned ``token``."""
    _context.reset(token)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind fields for the lines logged inside the ``with`` block."""
    token = bind_log_context(**values)
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> Mapping[str, Any]:
    """The fields bound in this context."""
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the bound context onto the record, in the thread and task that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.herald_context = _context.get()
        return True


class RedactingFilter(logging.Filter):
    """Redacts the message and the traceback in place, so every formatter and every handler
    after this one sees only the redacted text."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "herald_redacted", False):
            return True
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.herald_redacted = True
        return True


# Celery's loggers for beat's "Sending due task", the worker's "received" and "succeeded" lines.
CELERY_ROUTINE_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class PeriodicTaskFilter(logging.Filter):
    """Demotes Celery's INFO lines about the named tasks to DEBUG: shown only when the logger
    is enabled for DEBUG, and then labelled DEBUG."""

    def __init__(self, task_names: Iterable[str]) -> None:
        super().__init__()
        self.task_names = frozenset(task_names)

    def _names(self, record: logging.LogRecord) -> Iterable[object]:
        args = record.args
        if isinstance(args, Mapping):
            return (args.get("name"),)
        return args or ()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        if not any(name in self.task_names for name in self._names(record)):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_periodic_tasks(task_names: Iterable[str]) -> None:
    """Log Celery's routine lines about ``task_names`` (beat's send, the worker's receipt and
    success) at DEBUG. Replaces the filter a previous call installed."""
    for name in CELERY_ROUTINE_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, PeriodicTaskFilter)]:
            logger.removeFilter(existing)
        logger.addFilter(PeriodicTaskFilter(task_names))


def _context_of(record: logging.LogRecord) -> Mapping[str, Any]:
    context: Mapping[str, Any] | None = getattr(record, "herald_context", None)
    return _context.get() if context is None else context


class TextFormatter(logging.Formatter):
    """``time level logger message key=value...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context_of(record)
        if context:
            line += " " + " ".join(f"{key}={value}" for key, value in context.items())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with a fixed set of fields (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _context_of(record).items():
            entry.setdefault(key, value)
        ids = tracing.current_trace_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry, default=str).decode()


class _HeraldHandler(logging.StreamHandler[TextIO]):
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger through one handler on the root logger: text or JSON lines
    (``settings.log_format``) on stderr, with context fields and secrets redacted.

    Replaces a previous call's handler and ``logging.basicConfig``'s, and makes uvicorn's
    loggers propagate to it; handlers that others installed (pytest's capture) stay.
    """
    handler = _HeraldHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _HeraldHandler) or type(existing) is logging.StreamHandler:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    if settings.log_format == "json":
        # Python warnings print multi-line text to stderr; as records they become one line.
        logging.captureWarnings(True)
    # uvicorn installs its own handlers (plain text) before it builds the app. Its access
    # logger is left alone when it has none: `herald api` turns access logs off (a line per
    # request costs throughput), and propagating would turn them back on.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        if name == "uvicorn.access" and not uvicorn_logger.handlers:
            continue
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    return handler
