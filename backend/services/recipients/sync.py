"""Syncs: the auth service's user list imported page by page into recipients, a job that
records its progress and is resumed when its runner died or stalled."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.auth import Principal
from backend.broker import Broker
from backend.config import Settings
from backend.db.models import RecipientSync
from backend.db.repositories.recipients import RecipientRepository, RecipientSyncRepository
from backend.db.session import create_engine, create_sessionmaker
from backend.errors import NotFoundError, UnavailableError, ValidationError
from backend.services import task_messages
from backend.services.recipients.profiles import profile_row
from backend.services.users import UserDirectory

log = logging.getLogger(__name__)


class SyncStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


async def start_sync(session: AsyncSession, *, actor: Principal | None) -> RecipientSync:
    """A pending sync job; :func:`queue_sync` hands it to a worker once committed."""
    return await RecipientSyncRepository(session).add(
        RecipientSync(
            status=SyncStatus.PENDING.value,
            requested_by=actor.user_id if actor is not None else None,
        )
    )


async def queue_sync(broker: Broker, sync_id: uuid.UUID) -> None:
    await task_messages.recipients_sync(str(sync_id)).publish(broker)


async def get_sync(session: AsyncSession, sync_id: str) -> RecipientSync | None:
    try:
        ident = uuid.UUID(sync_id)
    except ValueError as exc:
        raise ValidationError("Not a sync id", field="id") from exc
    return await RecipientSyncRepository(session).get(ident)


def is_stalled(sync: RecipientSync, *, now: datetime, stall_seconds: float) -> bool:
    """A running job whose runner committed no page (nor took the job) for ``stall_seconds``:
    its worker died or hangs, and another may take it over."""
    if sync.status != SyncStatus.RUNNING.value:
        return False
    last = sync.heartbeat_at or sync.started_at or sync.created_at
    return last < now - timedelta(seconds=stall_seconds)


async def request_sync(
    session: AsyncSession, *, actor: Principal | None, stall_seconds: float
) -> RecipientSync:
    """What ``syncRecipients`` hands to a worker: the newest stalled job, to be resumed from its
    last committed page (its task is sent again, and the worker that takes it counts a resume),
    or else a new pending job."""
    now = datetime.now(UTC)
    stalled = await RecipientSyncRepository(session).newest_running(
        quiet_since=now - timedelta(seconds=stall_seconds)
    )
    if stalled is not None:
        log.warning("recipient sync %s stalled; resuming it", stalled.id)
        return stalled
    return await start_sync(session, actor=actor)


def _resume_mark(sync_id: uuid.UUID) -> str:
    return f"herald:recipient-sync:resume:{sync_id}"


async def resume_stalled(
    session: AsyncSession, redis: Redis, broker: Broker, *, stall_seconds: float
) -> uuid.UUID | None:
    """Beat's part, every second: the newest stalled job is handed to a worker again, so one
    whose runner hangs (alive: its message is not redelivered) is resumed without waiting for
    the next ``syncRecipients``. At most once per ``stall_seconds`` for a job (a Redis mark that
    lapses: a resume that never started is asked for again). The job resumed, or None."""
    now = datetime.now(UTC)
    stalled = await RecipientSyncRepository(session).newest_running(
        quiet_since=now - timedelta(seconds=stall_seconds)
    )
    if stalled is None:
        return None
    try:
        fresh = await redis.set(
            _resume_mark(stalled.id), "1", nx=True, ex=max(1, math.ceil(stall_seconds))
        )
    except (RedisError, OSError) as exc:
        log.warning("recipient sync %s stalled; not resumed now (Redis: %s)", stalled.id, exc)
        return None
    if not fresh:
        return None
    log.warning(
        "recipient sync %s stalled (no page for %gs); resuming it", stalled.id, stall_seconds
    )
    try:
        await queue_sync(broker, stalled.id)
    except UnavailableError:
        # Not sent (the broker is down): the next sweep asks again.
        await redis.delete(_resume_mark(stalled.id))
        raise
    return stalled.id


async def run_sync(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    users: UserDirectory,
    sync_id: uuid.UUID,
    page_size: int,
    stall_seconds: float = 120.0,
    takeover: bool = False,
    on_page: Callable[[int, int], None] | None = None,
) -> RecipientSync | None:
    """Walk the auth service's user list page by page into ``recipients``.

    This is the job's own boundary (the Celery task and the CLI run it): each page commits
    with the job's progress and heartbeat, so ``recipientSync`` shows it while the job runs,
    and a job stopped half way has kept the pages it did. A job already running is resumed
    from the page after its last committed one when ``takeover`` is set (the task was
    redelivered: its worker died) or when it is stalled (no page for ``stall_seconds``);
    otherwise it is left to the runner that holds it. Each runner takes the job with a token
    of its own and checks it, under the row's lock, before every page it stores: a runner
    that was taken over stops without writing. Storing a page again rewrites the same rows.
    ``None``: no such job (its request was rolled back).
    """
    runner = uuid.uuid4()
    async with sessionmaker() as session:
        claimed = await _claim(
            session,
            sync_id,
            runner=runner,
            page_size=page_size,
            stall_seconds=stall_seconds,
            takeover=takeover,
        )
        await session.commit()
    if claimed is None:
        log.warning("recipient sync %s does not exist; nothing to run", sync_id)
        return None
    sync = claimed
    if sync.status != SyncStatus.RUNNING.value or sync.runner != runner:
        return sync
    size = sync.page_size or page_size
    page = sync.pages_done + 1
    error: str | None = None
    while True:
        try:
            profiles, more = await users.list_page(page, size, cache=False, store=False)
        except UnavailableError as exc:
            error = exc.message
            break
        async with sessionmaker() as session:
            sync = await _locked(session, sync_id)
            if sync.runner != runner:
                log.warning("recipient sync %s was taken over; this runner stops", sync_id)
                return sync
            now = datetime.now(UTC)
            await RecipientRepository(session).store_profiles(
                [profile_row(p) for p in profiles], source="auth", refreshed_at=now
            )
            sync.pages_done = page
            sync.recipients_synced += len(profiles)
            sync.heartbeat_at = now
            await session.commit()
        if on_page is not None:
            on_page(sync.pages_done, sync.recipients_synced)
        if not more:
            break
        page += 1
    async with sessionmaker() as session:
        sync = await _locked(session, sync_id)
        if sync.runner != runner:
            return sync
        sync.status = (SyncStatus.FAILED if error else SyncStatus.SUCCEEDED).value
        sync.error = error
        sync.finished_at = datetime.now(UTC)
        await session.commit()
    return sync


async def fail_sync(session: AsyncSession, *, sync_id: uuid.UUID, error: str) -> None:
    """Mark a job failed that never ran (it could not be queued)."""
    sync = await _locked(session, sync_id)
    sync.status = SyncStatus.FAILED.value
    sync.error = error
    sync.finished_at = datetime.now(UTC)


async def _claim(
    session: AsyncSession,
    sync_id: uuid.UUID,
    *,
    runner: uuid.UUID,
    page_size: int,
    stall_seconds: float,
    takeover: bool,
) -> RecipientSync | None:
    """Start a pending job, or take over a running one whose runner died (``takeover``) or
    stalled, for ``runner``; a job finished, or running live elsewhere, is left as it is."""
    sync = await RecipientSyncRepository(session).get(sync_id, for_update=True)
    if sync is None:
        return None
    now = datetime.now(UTC)
    if sync.status == SyncStatus.PENDING.value:
        sync.status = SyncStatus.RUNNING.value
        sync.started_at = now
        sync.page_size = sync.page_size or page_size
    elif sync.status == SyncStatus.RUNNING.value and (
        takeover or is_stalled(sync, now=now, stall_seconds=stall_seconds)
    ):
        log.warning(
            "recipient sync %s: resuming after page %d (%d recipients so far)",
            sync_id,
            sync.pages_done,
            sync.recipients_synced,
        )
        sync.resumes += 1
        sync.page_size = sync.page_size or page_size
    else:
        return sync
    sync.runner = runner
    sync.heartbeat_at = now
    return sync


async def _locked(session: AsyncSession, sync_id: uuid.UUID) -> RecipientSync:
    sync = await RecipientSyncRepository(session).get(sync_id, for_update=True)
    if sync is None:
        raise NotFoundError(f"No recipient sync {sync_id}")
    return sync


async def sync_now(
    settings: Settings, *, on_page: Callable[[int, int], None] | None = None
) -> RecipientSync:
    """Run one sync in this process, with its own clients (``herald recipients sync``): the
    job is recorded like one the ``syncRecipients`` mutation started."""
    engine = create_engine(settings, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    redis = Redis.from_url(settings.redis_url)
    try:
        async with httpx.AsyncClient(timeout=settings.auth_timeout_seconds) as http:
            async with sessionmaker() as session:
                sync = await start_sync(session, actor=None)
                await session.commit()
            done = await run_sync(
                sessionmaker,
                users=UserDirectory(settings, http, redis),
                sync_id=sync.id,
                page_size=settings.recipient_sync_page_size,
                stall_seconds=settings.recipient_sync_stall_seconds,
                on_page=on_page,
            )
            assert done is not None  # committed just above
            return done
    finally:
        await redis.aclose()
        await engine.dispose()
