"""RedBeat entries for campaigns, and the beat scheduler that keeps them true to PostgreSQL.

Each scheduled campaign has one RedBeat entry, ``campaign:<id>``, that fires ``campaigns.fire``
once at the campaign's ``next_run_at`` (an rrule with a single occurrence). Firing starts the
run and moves ``next_run_at`` on; the worker then re-arms the entry for the new time. The entry
is only a trigger: what runs, and whether, is decided by the row. RedBeat's rrule has whole
seconds, so a time with a fraction is armed for the whole second before it (``trigger_time``)
and the worker waits out the fraction: a run never starts before its time.

``HeraldScheduler`` is RedBeat's scheduler plus three things: it rebuilds every campaign entry
from PostgreSQL at start; it notices when Redis lost its data (restart, flush) and rebuilds the
static and campaign entries then, without a restart; and every ``campaign_reconcile_seconds``
it compares entries with rows, which repairs an entry an API process failed to write. Two
beats may run: RedBeat's lock lets one lead, and a leader that loses the lock (Redis restarted)
waits to take it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis
from redbeat.schedules import rrule
from redis.exceptions import LockError, RedisError

from backend.config import Settings, get_settings
from backend.db.repositories.campaigns import CampaignRepository
from backend.db.session import create_engine, create_sessionmaker
from backend.frameworks.redbeat_scheduling import maybe_due_kwargs
from backend.services import task_messages

log = logging.getLogger(__name__)

ENTRY_PREFIX = "campaign:"
RESTORED_MARKER = "herald:redbeat:restored"
RESTORE_RETRY_SECONDS = 5.0


def trigger_time(due_at: datetime) -> datetime:
    """When the entry for ``due_at`` fires: the whole second at or before it (the rrule drops
    the fraction; firing after it would make a run up to a second late)."""
    return due_at.astimezone(UTC).replace(microsecond=0)


def _entry(app: Celery, campaign_id: str, due_at: datetime) -> RedBeatSchedulerEntry:
    ensure_conf(app)
    message = task_messages.campaign_fire(campaign_id)
    return RedBeatSchedulerEntry(
        name=ENTRY_PREFIX + campaign_id,
        task=message.task,
        schedule=rrule("SECONDLY", dtstart=trigger_time(due_at), count=1, app=app),
        args=list(message.args),
        options={"queue": message.queue, "routing_key": message.queue},
        app=app,
    )


def arm_entry(app: Celery, campaign_id: str, due_at: datetime) -> None:
    """Make the campaign's entry fire once at ``due_at`` (at once if that has passed)."""
    entry = _entry(app, campaign_id, due_at)
    entry.save()
    # The entry's single occurrence comes after its last run; set that just before it,
    # whatever an earlier arming left there.
    entry.reschedule(last_run_at=min(datetime.now(UTC), due_at) - timedelta(seconds=1))


def disarm_entry(app: Celery, campaign_id: str) -> None:
    ensure_conf(app)
    RedBeatSchedulerEntry(name=ENTRY_PREFIX + campaign_id, app=app).delete()


def armed_at(app: Celery, campaign_id: str) -> datetime | None:
    """When the campaign's entry will fire, or None if it has no entry."""
    ensure_conf(app)
    key = RedBeatSchedulerEntry.generate_key(app, ENTRY_PREFIX + campaign_id)
    try:
        entry = RedBeatSchedulerEntry.from_key(key, app=app)
    except KeyError:
        return None
    schedule = entry.schedule
    return schedule.dtstart if isinstance(schedule, rrule) else None


class RedBeatTrigger:
    """The API's side: arms and disarms entries as campaigns change. RedBeat's client is
    synchronous, so each call runs in a thread."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    async def arm(self, campaign_id: str, due_at: datetime) -> None:
        await asyncio.to_thread(arm_entry, self.app, campaign_id, due_at)

    async def disarm(self, campaign_id: str) -> None:
        await asyncio.to_thread(disarm_entry, self.app, campaign_id)


async def _wanted(settings: Settings) -> dict[str, datetime]:
    engine = create_engine(settings, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await CampaignRepository(session).scheduled()
            return {str(c.id): c.next_run_at for c in rows if c.next_run_at is not None}
    finally:
        await engine.dispose()


def reconcile_campaigns(app: Celery, settings: Settings) -> tuple[int, int]:
    """Make the campaign entries in Redis match PostgreSQL: (armed, removed)."""
    wanted = asyncio.run(_wanted(settings))
    ensure_conf(app)
    client = get_redis(app)
    prefix = app.redbeat_conf.key_prefix + ENTRY_PREFIX
    present = {
        (k.decode() if isinstance(k, bytes) else k)[len(prefix) :]
        for k in client.scan_iter(match=prefix + "*", count=500)
    }
    armed = removed = 0
    for campaign_id, due_at in wanted.items():
        current = armed_at(app, campaign_id) if campaign_id in present else None
        if current is None or current != trigger_time(due_at):
            arm_entry(app, campaign_id, due_at)
            armed += 1
    for campaign_id in present - wanted.keys():
        disarm_entry(app, campaign_id)
        removed += 1
    return armed, removed


class HeraldScheduler(RedBeatScheduler):
    """RedBeat, kept true to PostgreSQL (see the module docstring)."""

    def __init__(self, app: Celery, **kwargs: Any) -> None:
        self.settings = get_settings()
        self._reconciled_at = 0.0
        self._restore_tried_at = 0.0
        super().__init__(app, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self._reconcile(reason="start")

    def _reconcile(self, reason: str) -> None:
        try:
            armed, removed = reconcile_campaigns(self.app, self.settings)
            get_redis(self.app).set(RESTORED_MARKER, str(time.time()))
        except Exception:
            # PostgreSQL or Redis down: entries already in Redis keep firing; try again later.
            log.exception("beat: reconciling campaign entries failed (%s)", reason)
        else:
            if armed or removed or reason != "periodic":
                log.info(
                    "beat: campaign entries reconciled (%s): %d armed, %d removed",
                    reason,
                    armed,
                    removed,
                )
        self._reconciled_at = time.monotonic()

    def _restore(self, reason: str) -> None:
        self._restore_tried_at = time.monotonic()
        log.warning("beat: %s; restoring the schedule from configuration and PostgreSQL", reason)
        super().setup_schedule()
        self._reconcile(reason="restore")

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if self.lock_key and self.lock is not None:
                try:
                    self.lock.extend(int(self.lock_timeout))
                except LockError:
                    log.warning("beat: lost the leader lock (Redis restarted?); waiting for it")
                    self.lock.acquire()
                    log.info("beat: leading again")
            client = get_redis(self.app)
            if not client.exists(RESTORED_MARKER):
                if time.monotonic() - self._restore_tried_at > RESTORE_RETRY_SECONDS:
                    self._restore("Redis has lost the schedule")
            elif time.monotonic() - self._reconciled_at > self.settings.campaign_reconcile_seconds:
                self._reconcile(reason="periodic")
            remaining: list[float] = []
            for entry in self.schedule.values():
                next_time_to_run = self.maybe_due(entry, **maybe_due_kwargs(self))
                if next_time_to_run:
                    remaining.append(next_time_to_run)
        except (RedisError, OSError) as exc:
            # Redis is down or restarting: keep beating, and look again shortly.
            log.warning("beat: Redis unavailable (%s); retrying", exc)
            return 1.0
        return float(min([*remaining, self.max_interval]))
