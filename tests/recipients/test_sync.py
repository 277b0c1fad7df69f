"""Importing the auth service's user list into recipients: the job walks every page with its
progress, running it again changes nothing, a failing auth service fails the job with its
reason; and ``herald recipients sync`` does the same from the command line. The auth service
is the real stand-in under uvicorn."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.db.models import RecipientRow, RecipientSync
from backend.services import recipients
from backend.services.users import UserDirectory
from tests.conftest import ROOT, TEST_REDIS_URL, herald_process_env, make_settings
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
