"""The maintenance tasks in a real ``herald worker``: a recipient sync started with
``syncRecipients`` and polled with ``recipientSync`` reaches SUCCEEDED; the same job survives
a SIGKILL of its worker mid-job (the redelivered task resumes it from its last committed page,
every user imported once); and ``retention.sweep`` deletes old history and inbox rows while
new ones stay. The auth service is the stand-in under uvicorn, answering each page of its user
list slowly so the kill lands mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.broker import Broker
from backend.db.history.postgres import PostgresHistoryStore
from backend.db.models import InboxItem, RecipientRow, RecipientSync
from backend.services import task_messages
from backend.standins.auth_service import PREFIX as AUTH_PREFIX
from backend.standins.auth_service import create_auth_standin
from tests.conftest import TEST_RABBITMQ_URL, GraphQL, make_settings
from tests.factories import token_for
from tests.history.conftest import make_delivery
from tests.pipeline.servers import eventually
from tests.pipeline.test_faults import SwappableWorker, _children
from tests.processes import Process, ThreadedServer
from tests.test_users import user_record

PREFIX = f"mjob-{uuid.uuid4().hex[:6]}"
USER_COUNT, PAGE_SIZE = 60, 5  # 12 pages
PAGES = USER_COUNT // PAGE_SIZE
LIST_PATH = AUTH_PREFIX + "/users"

SYNC = """mutation { syncRecipients { __typename
  ... on RecipientSync { id status } ... on Error { code message } } }"""
SYNC_STATE = """query($id: ID!) { recipientSync(id: $id) {
  status pagesDone recipientsSynced error resumes stalled heartbeatAt finishedAt } }"""


class SlowUserList:
    """The stand-in, answering each page of the user list after ``delay`` seconds; records
    the pages asked for, in order."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app, self.delay = app, delay
        self.pages: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == LIST_PATH:
            query = parse_qs(scope["query_string"].decode())
            self.pages.append(int(query["page"][0]))
            await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def slow_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SlowUserList]]:
    users = [user_record(f"{PREFIX}-{n:03d}", n) for n in range(1, USER_COUNT + 1)]
    path: Path = tmp_path_factory.mktemp("maintenance") / "users.json"
    path.write_text(json.dumps(users))
    slow = SlowUserList(create_auth_standin(path, make_settings()), delay=0.4)
    with ThreadedServer(slow) as server:
        yield server.url, slow


@pytest.fixture(scope="module")
def jobs_worker(worker: Process, worker_env: dict[str, str], slow_auth) -> Iterator[Process]:
    """The session's worker swapped for one reading the slow stand-in, with inbox retention."""
    env = {
        **worker_env,
        "HERALD_AUTH_URL": slow_auth[0],
        "HERALD_RECIPIENT_SYNC_PAGE_SIZE": str(PAGE_SIZE),
        "HERALD_HISTORY_RETENTION_DAYS": "90",
        "HERALD_INBOX_RETENTION_DAYS": "30",
    }
    with SwappableWorker(worker, env) as process:
        yield process


@pytest.fixture
async def clean(engine: AsyncEngine) -> AsyncIterator[None]:
    """What the worker committed for real is removed after each test."""
    yield
    async with engine.begin() as conn:
        await conn.execute(delete(RecipientRow).where(RecipientRow.user_id.like(f"{PREFIX}-%")))
        await conn.execute(delete(RecipientSync).where(RecipientSync.requested_by == "admin-1"))


async def start_sync(e2e: GraphQL, settings: Any) -> tuple[str, str]:
    token = token_for(settings, "admin", sub="admin-1")
    body = await e2e(SYNC, token=token)
    job = body["data"]["syncRecipients"]
    assert job["__typename"] == "RecipientSync", body
    return job["id"], token


async def sync_state(e2e: GraphQL, job_id: str, token: str) -> dict[str, Any]:
    body = await e2e(SYNC_STATE, {"id": job_id}, token=token)
    state: dict[str, Any] = body["data"]["recipientSync"]
    return state


async def imported(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).where(RecipientRow.user_id.like(f"{PREFIX}-%"))
        )
    return int(count or 0)


async def test_a_sync_started_with_graphql_runs_in_the_worker_to_the_end(
    e2e, settings, jobs_worker, slow_auth, engine, clean
):
    job_id, token = await start_sync(e2e, settings)

    async def finished() -> dict[str, Any] | None:
        state = await sync_state(e2e, job_id, token)
        return state if state["status"] in ("SUCCEEDED", "FAILED") else None

    state = await eventually(finished, timeout=60, interval=0.3)
    assert state["status"] == "SUCCEEDED", state
    assert (state["pagesDone"], state["recipientsSynced"], state["resumes"]) == (PAGES, 60, 0)
    assert state["error"] is None and state["stalled"] is False
    assert await imported(engine) == USER_COUNT


async def test_a_sync_whose_worker_is_killed_resumes_in_the_next_worker(
    e2e, settings, jobs_worker, slow_auth, engine, clean
):
    _, slow = slow_auth
    slow.pages.clear()
    job_id, token = await start_sync(e2e, settings)

    async def some_pages_done() -> bool:
        return (await sync_state(e2e, job_id, token))["pagesDone"] >= 3

    await eventually(some_pages_done, timeout=60, interval=0.1)
    main = jobs_worker.process.pid
    pool = _children(main)
    os.kill(main, signal.SIGKILL)
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    jobs_worker.process.wait(10)
    await asyncio.sleep(1)  # a page in flight in a dying process commits nothing more
    at_kill = await sync_state(e2e, job_id, token)
    assert at_kill["status"] == "RUNNING" and at_kill["pagesDone"] < PAGES, at_kill

    jobs_worker.restart()  # a new worker; RabbitMQ redelivers the unacknowledged task to it

    async def finished() -> dict[str, Any] | None:
        state = await sync_state(e2e, job_id, token)
        return state if state["status"] in ("SUCCEEDED", "FAILED") else None

    state = await eventually(finished, timeout=90, interval=0.3)
    assert state["status"] == "SUCCEEDED", state
    assert (state["pagesDone"], state["recipientsSynced"]) == (PAGES, USER_COUNT)
    assert state["resumes"] == 1
    assert await imported(engine) == USER_COUNT
    # Resumed, not started over: every page was asked for, and only the one in flight at the
    # kill twice.
    assert set(slow.pages) == set(range(1, PAGES + 1)), slow.pages
    assert len(slow.pages) - PAGES <= 1, slow.pages
    log = "".join(jobs_worker.lines)
    assert f"recipient sync {job_id}: resuming after page {at_kill['pagesDone']}" in log


async def test_a_stalled_sync_is_resumed_by_beat_without_another_sync_recipients(
    e2e, settings, jobs_worker, beat, slow_auth, engine, clean
):
    """A runner that hangs (alive, so RabbitMQ redelivers nothing) leaves its job RUNNING with
    no page committed for longer than HERALD_RECIPIENT_SYNC_STALL_SECONDS: beat's release sweep
    hands it to a worker again, which resumes it after its last committed page."""
    _, slow = slow_auth
    slow.pages.clear()
    quiet_since = datetime.now(UTC) - timedelta(minutes=10)  # the stall is 120 s
    async with engine.begin() as conn:
        job_id = uuid.uuid4()
        values = {
            "id": job_id,
            "status": "RUNNING",
            "requested_by": "admin-1",
            "runner": uuid.uuid4(),
            "page_size": PAGE_SIZE,
            "pages_done": 3,
            "recipients_synced": 3 * PAGE_SIZE,
            "started_at": quiet_since,
            "heartbeat_at": quiet_since,
        }
        await conn.execute(RecipientSync.__table__.insert().values(**values))
    token = token_for(settings, "admin", sub="admin-1")

    async def finished() -> dict[str, Any] | None:
        state = await sync_state(e2e, str(job_id), token)
        return state if state["status"] in ("SUCCEEDED", "FAILED") else None

    state = await eventually(finished, timeout=60, interval=0.3)
    assert state["status"] == "SUCCEEDED", state
    assert (state["pagesDone"], state["recipientsSynced"], state["resumes"]) == (
        PAGES,
        USER_COUNT,
        1,
    )
    # After its last committed page: pages 4 to 12, each asked for once.
    assert sorted(slow.pages) == list(range(4, PAGES + 1)), slow.pages
    log = "".join(jobs_worker.lines)
    assert f"recipient sync {job_id} stalled (no page for 120s); resuming it" in log


async def test_the_retention_sweep_runs_in_the_worker(jobs_worker, engine):
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    history = PostgresHistoryStore(engine)
    old_delivery, new_delivery = f"old-{tag}", f"new-{tag}"
    await history.add(
        [
            make_delivery(old_delivery, user_id=f"u-{tag}", created_at=now - timedelta(days=91)),
            make_delivery(new_delivery, user_id=f"u-{tag}", created_at=now - timedelta(days=89)),
        ]
    )
    async with engine.begin() as conn:
        await conn.execute(
            InboxItem.__table__.insert(),
            [
                {
                    "delivery_id": f"{age}-inbox-{tag}",
                    "user_id": f"u-{tag}",
                    "seq": seq,
                    "event_id": "e",
                    "event_type": "t",
                    "data": {},
                    "created_at": now - timedelta(days=days),
                }
                for seq, (age, days) in enumerate((("old", 31), ("new", 29)), start=1)
            ],
        )

    broker = Broker(TEST_RABBITMQ_URL)
    await broker.start()
    try:
        await task_messages.retention_sweep().publish(broker)
    finally:
        await broker.close()

    async def left() -> list[str] | None:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT id FROM deliveries WHERE id LIKE :p UNION ALL "
                    "SELECT delivery_id FROM inbox_items WHERE delivery_id LIKE :p"
                ),
                {"p": f"%{tag}"},
            )
            ids = sorted(rows.scalars())
        return ids if len(ids) == 2 else None

    try:
        assert await eventually(left, timeout=30, interval=0.2) == sorted(
            [f"new-inbox-{tag}", new_delivery]
        )
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM deliveries WHERE id LIKE :p"), {"p": f"%{tag}"})
            await conn.execute(
                text("DELETE FROM inbox_items WHERE user_id = :u"), {"u": f"u-{tag}"}
            )
