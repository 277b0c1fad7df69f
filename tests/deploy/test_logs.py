"""Logs: one JSON object a line with the bound event and delivery ids; secrets redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery import Celery

from backend.observability.logs import (
    bind_log_context,
    configure_logging,
    current_log_context,
    log_context,
    reset_log_context,
)
from backend.queues import TASK_DISPATCH, TASK_RELEASE_DUE
from backend.workers.celery_app import HOUSEKEEPING_TASKS, create_celery
from tests.conftest import make_settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_ids(restore_logging):
    stream = io.StringIO()
    configure_logging(make_settings(log_format="json"), stream=stream)
    log = logging.getLogger("herald.test")
    log.info("before")
    with log_context(event_id="ev-1"):
        log.info("dispatching")
        with log_context(delivery_id="dl-9"):
            log.warning("sending %s", "now")
        log.info("after the delivery")
    log.info("outside")
    first, dispatching, sending, after, outside = json_lines(stream)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["logger"] == "herald.test" and first["level"] == "INFO"
    assert first["time"].endswith("+00:00")
    assert dispatching["event_id"] == "ev-1" and "delivery_id" not in dispatching
    assert sending == {
        "time": sending["time"],
        "level": "WARNING",
        "logger": "herald.test",
        "message": "sending now",
        "event_id": "ev-1",
        "delivery_id": "dl-9",
    }
    assert "delivery_id" not in after and after["event_id"] == "ev-1"
    assert "event_id" not in outside


async def test_concurrent_deliveries_keep_their_own_ids(restore_logging):
    stream = io.StringIO()
    configure_logging(make_settings(log_format="json"), stream=stream)
    log = logging.getLogger("herald.test")

    async def deliver(delivery_id: str) -> None:
        token = bind_log_context(delivery_id=delivery_id)
        try:
            for step in range(3):
                log.info("step %s of %s", step, delivery_id)
                await asyncio.sleep(0.001)
        finally:
            reset_log_context(token)

    with log_context(event_id="ev-2"):
        await asyncio.gather(*(deliver(f"dl-{n}") for n in range(4)))
    entries = json_lines(stream)
    assert len(entries) == 12
    for entry in entries:
        assert entry["event_id"] == "ev-2"
        assert entry["message"].endswith(entry["delivery_id"])
    assert current_log_context() == {}


def test_secrets_and_bodies_are_never_written(restore_logging):
    stream = io.StringIO()
    configure_logging(make_settings(log_format="json"), stream=stream)
    log = logging.getLogger("herald.test")
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJlLXZhbHVl"
    log.info("auth header was Authorization: Bearer %s", jwt)
    log.info("connection_init payload {'authorization': 'Bearer abc123def'}")
    log.info("token %s rejected", jwt)
    log.info("connecting to amqp://herald:hunter2@rabbitmq:5672/ and redis://:s3cret@redis:6379/0")
    log.info('settings: HERALD_JWT_SECRET=k9k9k9 smtp_password="pa ss" api_key: zz9')
    log.info("rendered", extra={"body": "Dear Ann, your code is 123456", "html": "<p>x</p>"})
    try:
        raise RuntimeError("login failed with password=letmein")
    except RuntimeError:
        log.exception("unexpected")
    text = stream.getvalue()
    for secret in (
        jwt,
        "abc123def",
        "hunter2",
        "s3cret",
        "k9k9k9",
        "pa ss",
        "zz9",
        "letmein",
        "123456",
        "<p>x</p>",
    ):
        assert secret not in text, secret
    entries = json_lines(stream)
    assert entries[0]["message"] == "auth header was Authorization: [REDACTED]"
    assert entries[3]["message"] == (
        "connecting to amqp://herald:[REDACTED]@rabbitmq:5672/ and redis://:[REDACTED]@redis:6379/0"
    )
    assert set(entries[5]) == {"time", "level", "logger", "message"}
    assert "RuntimeError: login failed with password=[REDACTED]" in entries[6]["exception"]


def test_text_format_and_reconfiguring(restore_logging, capsys):
    first = io.StringIO()
    configure_logging(make_settings(log_format="json"), stream=first)
    second = io.StringIO()
    handler = configure_logging(
        make_settings(log_format="text", log_level="WARNING"), stream=second
    )
    log = logging.getLogger("herald.test")
    log.info("below the level")
    with log_context(event_id="ev-3", delivery_id="dl-3"):
        log.warning("token=abc retrying")
    assert first.getvalue() == ""  # the earlier handler was replaced, not stacked
    assert logging.getLogger().handlers.count(handler) == 1
    line = second.getvalue().strip()
    assert "below the level" not in line
    assert line.endswith(
        "WARNING herald.test token=[REDACTED] retrying event_id=ev-3 delivery_id=dl-3"
    )


def test_uvicorn_lines_join_the_same_stream(restore_logging):
    error, access = logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access")
    saved = {lg: (list(lg.handlers), lg.propagate, lg.level) for lg in (error, access)}
    # As uvicorn leaves them for `herald api` at INFO: its own handler on errors, access logs
    # off. (The level too: a uvicorn server an earlier test ran in this process set another.)
    error.handlers[:], error.propagate = [logging.NullHandler()], False
    error.setLevel(logging.INFO)
    access.handlers[:], access.propagate = [], False
    try:
        stream = io.StringIO()
        configure_logging(make_settings(log_format="json"), stream=stream)
        error.info("Started server process")
        assert json_lines(stream)[0]["logger"] == "uvicorn.error"
        # Propagating would make uvicorn write a line per request again.
        assert access.propagate is False and not access.hasHandlers()
    finally:
        for lg, (handlers, propagate, level) in saved.items():
            lg.handlers[:], lg.propagate = handlers, propagate
            lg.setLevel(level)


def test_celery_task_lines_carry_the_task_and_event(restore_logging):
    from celery import Celery

    from backend.observability.workers import connect_celery_logging

    app = Celery("herald-log-test", set_as_current=False)

    @app.task(name="events.log_test", shared=False)
    def dispatch(event: dict) -> None:
        logging.getLogger("herald.task").info("dispatching")

    stream = io.StringIO()
    settings = make_settings(log_format="json")
    configure_logging(settings, stream=stream)
    disconnect = connect_celery_logging(settings)
    try:
        dispatch.apply(kwargs={"event": {"id": "ev-7", "type": "user_registered"}})
        dispatch.apply(kwargs={"event": {"id": "ev-8"}})
    finally:
        disconnect()
    first, second = [e for e in json_lines(stream) if e["logger"] == "herald.task"]
    assert first["event_id"] == "ev-7" and first["task"] == "events.log_test"
    assert second["event_id"] == "ev-8" and second["task_id"] != first["task_id"]
    assert current_log_context() == {}  # unbound after each task


def run_tasks(level: str) -> str:
    """Run a housekeeping task and a dispatch task through Celery's tracer; the log text."""
    stream = io.StringIO()
    configure_logging(make_settings(log_level=level), stream=stream)
    create_celery(make_settings())  # installs the housekeeping filter, as worker and beat do
    app = Celery("herald-quiet-log-test", set_as_current=False)

    def nothing() -> int:
        return 0

    # shared=False: a shared task (Celery's default) joins every app finalized later, Herald's
    # own included, where it would stand in for the real task of that name.
    app.task(name=TASK_RELEASE_DUE, shared=False)(nothing).apply()
    app.task(name=TASK_DISPATCH, shared=False)(nothing).apply()
    return stream.getvalue()


def test_housekeeping_task_lines_are_debug_and_others_info(restore_logging):
    """Beat's every-second housekeeping stays out of an INFO log (tests/deploy/test_quiet_logs.py
    runs the real processes); other tasks keep their INFO lines."""
    assert TASK_RELEASE_DUE in HOUSEKEEPING_TASKS
    at_info = run_tasks("INFO")
    assert f"INFO celery.app.trace Task {TASK_DISPATCH}[" in at_info
    assert TASK_RELEASE_DUE not in at_info
    at_debug = run_tasks("DEBUG")
    assert f"DEBUG celery.app.trace Task {TASK_RELEASE_DUE}[" in at_debug
    assert f"INFO celery.app.trace Task {TASK_DISPATCH}[" in at_debug
