"""``<herald-inbox>`` in a real headless Chromium against real processes: a ``herald api``
serving ``/sdk/herald-inbox.js`` and the demo page (on a port it can be restarted on), the
auth-service stand-in, and a Celery worker delivering in-app notifications.

The browser, the worker and the helpers are the admin page suite's (tests/admin/conftest.py);
this package's ``stack`` replaces that suite's so the API can be killed and started again.
"""

from __future__ import annotations

import itertools
import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.admin.conftest import (  # noqa: F401  (fixtures used by this package's tests)
    JWT_SECRET,
    REDIS_URL,
    Stack,
    _rabbitmq_url,
    browser,
    worker_stack,
)
from tests.conftest import (
    ROOT,
    LiveServer,
    free_port,
    herald_process_env,
    make_settings,
    start_herald,
    start_live_server,
    stop_live_server,
)
from tests.factories import token_for
from tests.processes import auth_standin, wait_http

# Users of this run only (the stand-in knows them; the worker skips unknown users), so each
# test starts from an empty inbox although suites share the database.
RUN = uuid.uuid4().hex[:8]
_USERS = (f"inbox-{RUN}-{n}" for n in itertools.count())
SDK_BUILD = ROOT / "backend" / "sdk_assets" / "herald-inbox.js"
AXE = ROOT / "clients" / "inbox" / "node_modules" / "axe-core" / "axe.min.js"


def start_api(server: LiveServer) -> None:
    """Start ``herald api`` for ``server`` (again), on its port, and wait until it is ready."""
    port = server.url.rsplit(":", 1)[1]
    server.process = start_herald("api", "--port", port, env=server.env)
    wait_http(f"{server.url}/readyz", seconds=60)


def kill_api(server: LiveServer) -> None:
    """Kill the API process outright (SIGKILL: no graceful close of its sockets)."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)


def new_user() -> str:
    """A user of this run, with an empty inbox."""
    return next(_USERS)


def _users_file(directory: Path) -> Path:
    """The stand-in's bundled demo users, plus this run's."""
    from backend.standins.auth_service import DEMO_USERS_FILE

    users = json.loads(DEMO_USERS_FILE.read_text())
    for n in range(40):
        users.append(
            {
                "id": f"inbox-{RUN}-{n}",
                "email": f"inbox-{RUN}-{n}@example.com",
                "first_name": "Inbox",
                "last_name": f"Tester {n}",
                "login": f"inbox-{RUN}-{n}",
                "locale": "en",
                "roles": ["user"],
            }
        )
    path = directory / "users.json"
    path.write_text(json.dumps(users))
    return path


@pytest.fixture(scope="session")
def stack(engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not SDK_BUILD.is_file() or not AXE.is_file():
        pytest.fail("<herald-inbox> is not built: run scripts/setup.sh test")
    rabbitmq_url = _rabbitmq_url()
    api_url = f"http://127.0.0.1:{free_port()}"
    users = _users_file(tmp_path_factory.mktemp("inbox"))
    # The API does not need the stand-in to start; both start at once.
    with auth_standin("--users", str(users), wait=False) as auth_url:
        yield from _stack_with_api(api_url, auth_url, rabbitmq_url)


def _stack_with_api(api_url: str, auth_url: str, rabbitmq_url: str) -> Iterator[Stack]:
    env = herald_process_env(
        HERALD_ALLOWED_ORIGINS=f'["{api_url}"]',
        HERALD_LOG_LEVEL="WARNING",
        HERALD_SERVE_DEMO="true",
        HERALD_AUTH_URL=auth_url,
        HERALD_RABBITMQ_URL=rabbitmq_url,
        HERALD_REDIS_URL=REDIS_URL,
    )
    api = LiveServer(api_url, None, env)  # type: ignore[arg-type]
    start_api(api)
    try:
        wait_http(f"{auth_url}/healthz")
        yield Stack(api=api, auth_url=auth_url, rabbitmq_url=rabbitmq_url)
    finally:
        if api.process.poll() is None:
            api.process.terminate()
            api.process.wait(10)


# --- the typed clients' tests ----------------------------------------------------------------


@pytest.fixture(scope="package")
def api(engine: AsyncEngine) -> Iterator[LiveServer]:
    """A ``herald api`` of its own with a small event rate limit: two events at once, then two
    a second, so a burst of three meets RATE_LIMITED."""
    server = start_live_server(
        {"HERALD_EVENT_RATE_PER_SECOND": "2", "HERALD_EVENT_RATE_BURST": "2"}
    )
    try:
        yield server
    finally:
        stop_live_server(server)


def service_token() -> str:
    """A service and manager token of its own caller (its own rate-limit bucket)."""
    return token_for(make_settings(), "service", "manager", sub=f"svc-{uuid.uuid4().hex[:8]}")
