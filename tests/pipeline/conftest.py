"""Real processes for the pipeline: a Celery worker, beat, the auth-service stand-in, an SMTP
server and HTTP providers; the API in-process on committed (not rolled-back) sessions."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from backend.broker import purge_work_queues
from backend.channels.push import generate_vapid_keys
from tests import processes
from tests.conftest import (
    TEST_DATABASE_URL,
    TEST_RABBITMQ_URL,
    TEST_REDIS_URL,
    GraphQL,
    LiveServer,
)
from tests.factories import create_template
from tests.pipeline.servers import FAULT_REPORTS, HttpRecorder, start_http, start_smtp
from tests.processes import Process

USERS_FILE = Path(__file__).with_name("users.json")
USER_IDS = [user["id"] for user in json.loads(USERS_FILE.read_text())]
JWT_SECRET = "test-secret-for-the-suite-0123456789abcdef"


@pytest.fixture(scope="session")
def smtp() -> Iterator[Any]:
    controller, sink = start_smtp()
    sink.port = controller.port  # type: ignore[attr-defined]
    yield sink
    controller.stop()


@pytest.fixture(scope="session")
def sms_provider() -> Iterator[HttpRecorder]:
    recorder = HttpRecorder()
    server, url = start_http(recorder)
    recorder.url = url  # type: ignore[attr-defined]
    yield recorder
    server.shutdown()


@pytest.fixture(scope="session")
def push_service() -> Iterator[HttpRecorder]:
    recorder = HttpRecorder(status=201)
    server, url = start_http(recorder)
    recorder.url = url  # type: ignore[attr-defined]
    yield recorder
    server.shutdown()


@pytest.fixture(scope="session")
def vapid_keys() -> tuple[str, str]:
    return generate_vapid_keys()


@pytest.fixture(scope="session")
def auth_standin() -> Iterator[str]:
    with processes.auth_standin("--users", str(USERS_FILE)) as url:
        yield url


@pytest.fixture(scope="session")
def worker_env(engine, smtp, sms_provider, auth_standin, vapid_keys) -> dict[str, str]:
    private, public = vapid_keys
    return {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_DATABASE_URL": TEST_DATABASE_URL,
        "HERALD_RABBITMQ_URL": TEST_RABBITMQ_URL,
        "HERALD_REDIS_URL": TEST_REDIS_URL,
        "HERALD_CAMPAIGN_PAGE_SIZE": "2",
        "HERALD_DISPATCH_PART_SIZE": "100",
        "HERALD_JWT_SECRET": JWT_SECRET,
        "HERALD_SMTP_HOST": "127.0.0.1",
        "HERALD_SMTP_PORT": str(smtp.port),
        "HERALD_SMS_PROVIDER_URL": f"{sms_provider.url}/sms",
        "HERALD_AUTH_URL": auth_standin,
        "HERALD_VAPID_PRIVATE_KEY": private,
        "HERALD_VAPID_PUBLIC_KEY": public,
        "HERALD_RETRY_BASE_SECONDS": "0.3",
        "HERALD_RETRY_MAX_SECONDS": "1",
        "HERALD_DELIVERY_MAX_ATTEMPTS": "4",
        "HERALD_DELIVERY_LEASE_SECONDS": "2",
        "HERALD_LOG_LEVEL": "INFO",
    }


@pytest.fixture(autouse=True)
async def default_preferences(engine) -> None:
    """Each test starts with the stand-in's users on default preferences: one that another
    test opted out of a channel, or gave quiet hours, would skip or hold this test's
    deliveries (dispatch reads preferences from the database for every event)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM user_preferences WHERE user_id = ANY(:ids)"), {"ids": USER_IDS}
        )


# The worker and beat stop when the pipeline's tests end: later tests share the database and
# the broker's vhost, and beat's release sweep would take their due workflow runs and
# scheduled events from under them.
@pytest.fixture(scope="package")
def worker(worker_env) -> Iterator[Process]:
    asyncio.run(purge_work_queues(TEST_RABBITMQ_URL))
    process = Process(["worker", "--concurrency", "2"], worker_env, ready="ready.")
    yield process
    process.stop()


@pytest.fixture(scope="package")
def beat(worker_env, worker) -> Iterator[Process]:
    process = Process(["beat"], worker_env, ready="beat: Starting")
    yield process
    process.stop()


async def in_app_template(graphql: GraphQL, token: str) -> str:
    """A new in-app template ("Hi {{ user.first_name }}", the payload's ``offer``): its slug."""
    slug = f"promo-{uuid.uuid4().hex[:8]}"
    content = [
        {
            "channel": "IN_APP",
            "locale": "en",
            "title": "Hi {{ user.first_name }}",
            "body": "{{ payload.offer }}",
        }
    ]
    return await create_template(graphql, token, slug, content, name="Promo")


@pytest.fixture
async def e2e(app, settings, worker) -> AsyncIterator[GraphQL]:
    """GraphQL on the in-process API whose writes are committed, so the worker sees them."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
        yield GraphQL(client, settings)


@pytest.fixture
async def api(live_server: LiveServer, settings: Any, worker: Process) -> AsyncIterator[GraphQL]:
    """GraphQL over HTTP on a real ``herald api`` process, with the worker running."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=15) as client:
        yield GraphQL(client, settings)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The faults report: what each fault test applied and what became of it."""
    if not FAULT_REPORTS:
        return
    terminalreporter.section("faults report")
    header = ("fault", "load", "accepted", "refused", "delivered", "lost", "duplicated")
    rows = [
        (r.fault, r.load, r.accepted, r.refused, r.delivered, r.lost, r.duplicated)
        for r in FAULT_REPORTS
    ]
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        terminalreporter.write_line(
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        )
