"""Importing the auth service's user list into recipients: the job walks every page with its
progress, running it again changes nothing, a failing auth service fails the job with its
reason; and ``herald recipients sync`` does the same from the command line. The auth service
is the real stand-in under uvicorn."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.broker import Broker
from backend.db.models import RecipientRow, RecipientSync
from backend.services import recipients, task_messages
from backend.services.users import UserDirectory
from tests.conftest import (
    ROOT,
    TEST_RABBITMQ_URL,
    TEST_REDIS_URL,
    herald_process_env,
    make_settings,
)
from tests.recipients.conftest import auth_standin
from tests.test_users import CountingApp, user_record

PREFIX = f"sync-{uuid.uuid4().hex[:6]}"
USERS = [user_record(f"{PREFIX}-{n:02d}", n) for n in range(1, 13)]  # 12 users


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CountingApp]]:
    with auth_standin(tmp_path_factory.mktemp("sync"), USERS) as served:
        yield served


@pytest.fixture
async def directory_for() -> AsyncIterator[object]:
    redis = Redis.from_url(TEST_REDIS_URL)
    async with httpx.AsyncClient() as http:

        def make(url: str) -> UserDirectory:
            settings = make_settings(auth_url=url, auth_retries=0)
            return UserDirectory(settings, http, redis, backoff_base_seconds=0.01)

        yield make
    await redis.aclose()


async def stored(session: AsyncSession) -> list[RecipientRow]:
    rows = await session.execute(
        select(RecipientRow)
        .where(RecipientRow.user_id.like(f"{PREFIX}-%"))
        .order_by(RecipientRow.user_id)
    )
    return list(rows.scalars())


async def run(
    sessionmaker: async_sessionmaker[AsyncSession], users: UserDirectory, *, page_size: int = 5
) -> tuple[RecipientSync, list[tuple[int, int]]]:
    async with sessionmaker() as session:
        job = await recipients.start_sync(session, actor=None)
        await session.commit()
    progress: list[tuple[int, int]] = []
    done = await recipients.run_sync(
        sessionmaker,
        users=users,
        sync_id=job.id,
        page_size=page_size,
        on_page=lambda pages, synced: progress.append((pages, synced)),
    )
    assert done is not None
    return done, progress


async def test_sync_walks_every_page_with_its_progress(
    standin, directory_for, sessionmaker, session
):
    url, counting = standin
    before = counting.paths["/api/v1/auth/users"]
    job, progress = await run(sessionmaker, directory_for(url))

    assert (job.status, job.pages_done, job.recipients_synced, job.error) == (
        "SUCCEEDED",
        3,
        12,
        None,
    )
    assert job.started_at is not None and job.finished_at is not None
    assert progress == [(1, 5), (2, 10), (3, 12)]
    assert counting.paths["/api/v1/auth/users"] == before + 3
    rows = await stored(session)
    assert [r.user_id for r in rows] == [u["id"] for u in USERS]
    assert {(r.source, r.email) for r in rows[:1]} == {("auth", "user1@example.com")}


async def test_sync_again_changes_nothing(standin, directory_for, sessionmaker, session):
    url, _ = standin
    await run(sessionmaker, directory_for(url), page_size=7)
    first = [(r.user_id, r.email, r.first_name, r.phone) for r in await stored(session)]

    job, _ = await run(sessionmaker, directory_for(url), page_size=7)

    session.expire_all()
    again = [(r.user_id, r.email, r.first_name, r.phone) for r in await stored(session)]
    assert job.status == "SUCCEEDED" and job.recipients_synced == 12
    assert again == first and len(again) == 12


async def test_a_failing_auth_service_fails_the_job_with_its_reason(
    directory_for, sessionmaker, session
):
    job, progress = await run(sessionmaker, directory_for("http://127.0.0.1:9"))

    assert job.status == "FAILED"
    assert job.error and "did not answer" in job.error
    assert job.finished_at is not None and progress == []
    row = await session.get(RecipientSync, job.id)
    assert row is not None and row.status == "FAILED"


async def test_the_cli_syncs_every_user(standin, engine: AsyncEngine):
    url, _ = standin
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "recipients", "sync"],
        cwd=ROOT,
        env=herald_process_env(HERALD_AUTH_URL=url, HERALD_RECIPIENT_SYNC_PAGE_SIZE="5"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    mine = RecipientRow.user_id.like(f"{PREFIX}-%")
    try:
        assert result.returncode == 0, result.stderr
        assert "page 3: 12 recipients so far" in result.stdout
        assert "SUCCEEDED, 12 recipients in 3 pages" in result.stdout
        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).where(mine))
        assert count == 12
    finally:
        # The command committed for real: its rows are removed here.
        async with engine.begin() as conn:
            await conn.execute(delete(RecipientRow).where(mine))
            await conn.execute(delete(RecipientSync).where(RecipientSync.requested_by.is_(None)))


@pytest.fixture
async def job_at(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[object]:
    """Makes a RUNNING job (page size 5) whose runner committed ``pages_done`` pages and then
    went quiet ``quiet_for`` seconds ago. Committed for real: removed after the test, so no
    other test finds a stalled job."""
    made: list[uuid.UUID] = []

    async def make(*, pages_done: int, quiet_for: float) -> uuid.UUID:
        now = datetime.now(UTC)
        async with sessionmaker() as session:
            job = await recipients.start_sync(session, actor=None)
            job.status, job.page_size, job.runner = "RUNNING", 5, uuid.uuid4()
            job.started_at = job.heartbeat_at = now - timedelta(seconds=quiet_for)
            job.pages_done, job.recipients_synced = pages_done, 5 * pages_done
            await session.commit()
            made.append(job.id)
            return job.id

    yield make
    async with sessionmaker() as session:
        await session.execute(delete(RecipientSync).where(RecipientSync.id.in_(made)))
        await session.commit()


@pytest.fixture
def run_job(standin, directory_for, sessionmaker):
    """Run a sync job against the stand-in, a job quiet for 60 s counting as stalled."""
    url, _ = standin

    async def run(job_id, *, page_size: int, takeover: bool = False):
        return await recipients.run_sync(
            sessionmaker,
            users=directory_for(url),
            sync_id=job_id,
            page_size=page_size,
            stall_seconds=60,
            takeover=takeover,
        )

    return run


async def test_a_stalled_job_resumes_after_its_last_committed_page(standin, job_at, run_job):
    _, counting = standin
    job_id = await job_at(pages_done=1, quiet_for=600)
    before = counting.paths["/api/v1/auth/users"]

    done = await run_job(job_id, page_size=500)

    assert done is not None
    # Pages 2 and 3 only, at the job's own page size (not the 500 asked for now).
    assert counting.paths["/api/v1/auth/users"] == before + 2
    assert (done.status, done.pages_done, done.recipients_synced, done.resumes) == (
        "SUCCEEDED",
        3,
        12,
        1,
    )


async def test_a_live_job_is_left_to_its_runner_unless_its_task_was_redelivered(
    standin, job_at, run_job
):
    _, counting = standin
    job_id = await job_at(pages_done=1, quiet_for=1)
    before = counting.paths["/api/v1/auth/users"]

    left = await run_job(job_id, page_size=5)
    assert left is not None and (left.status, left.pages_done, left.resumes) == ("RUNNING", 1, 0)
    assert counting.paths["/api/v1/auth/users"] == before

    taken = await run_job(job_id, page_size=5, takeover=True)
    assert taken is not None
    assert (taken.status, taken.recipients_synced, taken.resumes) == ("SUCCEEDED", 12, 1)
    assert counting.paths["/api/v1/auth/users"] == before + 2


async def test_sync_recipients_resumes_a_stalled_job_instead_of_starting_one(sessionmaker, job_at):
    await job_at(pages_done=2, quiet_for=900)
    stalled = await job_at(pages_done=2, quiet_for=600)  # the newer of two
    async with sessionmaker() as session:
        job = await recipients.request_sync(session, actor=None, stall_seconds=60)
        assert job.id == stalled
        await session.rollback()


async def test_beat_resumes_a_stalled_job_once_per_stall_period(sessionmaker, job_at):
    """``resume_stalled`` (beat's release sweep, every second) sends the newest stalled job's
    task once, not every second while the job waits for a worker; nothing when none stalled."""
    stalled = await job_at(pages_done=2, quiet_for=600)
    redis = Redis.from_url(TEST_REDIS_URL)
    broker = Broker(TEST_RABBITMQ_URL)
    await broker.start()
    message = task_messages.recipients_sync(str(stalled))
    try:
        await redis.delete(f"herald:recipient-sync:resume:{stalled}")
        async with sessionmaker() as session:
            first = await recipients.resume_stalled(session, redis, broker, stall_seconds=60)
            again = await recipients.resume_stalled(session, redis, broker, stall_seconds=60)
            assert (first, again) == (stalled, None)
            # A job that is not stalled yet (quiet for 600 s of a 3,600 s stall) is left.
            assert (
                await recipients.resume_stalled(session, redis, broker, stall_seconds=3600) is None
            )
            assert 59 <= await redis.ttl(f"herald:recipient-sync:resume:{stalled}") <= 60
    finally:
        # The task sent (one) is taken off the queue: no worker runs in these tests.
        sent = 0
        connection = await aio_pika.connect(TEST_RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(message.queue, passive=True)
            # Every message is looked at once: others (an earlier package's beat may have left
            # some) stay unacknowledged, and go back to the queue when the channel closes.
            while (got := await queue.get(timeout=2, fail=False)) is not None:
                if got.headers.get("id") == message.task_id:
                    sent += 1
                    await got.ack()
        await broker.close()
        await redis.aclose()
    assert sent == 1
