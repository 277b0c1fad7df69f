"""Campaigns: one-off, delayed and recurring sends of a template to an audience.

PostgreSQL is the source of truth. A campaign row holds its schedule and ``next_run_at``; the
RedBeat entry that fires it (``CampaignTrigger``) is derived from the row: armed for
``next_run_at`` whenever the row changes, and rebuilt from the rows by ``herald beat`` at start
and after Redis loses its data.

A run is keyed by (campaign, scheduled time): firing inserts the run with ``ON CONFLICT DO
NOTHING``, so a beat restart, two beats, or a retried task never start a run twice. A run's
audience is fanned out one page per task (``claim_page``); each page is handed to the
ordinary dispatch (preferences, quiet hours, one delivery per user and channel, ids derived
from the run's event id), so a page handled twice sends nothing twice. Pausing stops a run
before its next page; resuming continues from there.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.broker import Broker
from backend.channels import Channel
from backend.db.history.base import (
    DeliveryFilter,
    DeliveryStatus,
    EngagementCounts,
    HistoryStore,
)
from backend.db.models import Campaign, CampaignRun
from backend.db.repositories.campaigns import CampaignRepository, CampaignRunRepository
from backend.db.repositories.templates import TemplateRepository
from backend.errors import ConflictError, NotFoundError, ValidationError
from backend.observability import metrics
from backend.services import task_messages, tenants
from backend.services import templates as template_service
from backend.services import topics as topic_service
from backend.services.calendars import check_cron, check_zone, next_cron_time
from backend.services.deliveries import DeliveryContext, DispatchSummary, Envelope
from backend.services.events import TYPE_RE
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_cursor,
    encode_time_cursor,
)
from backend.services.payloads import check_payload
from backend.services.templates import LOCALE_RE

log = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("0b8f5c1e-3a5d-4c2b-9e7f-5d1a2b3c4d5e")
MAX_AUDIENCE_IDS = 100_000
MIN_INTERVAL_SECONDS = 1
# A trigger may come this much early: RedBeat fires at whole seconds, so a one-off ``at`` with
# a fraction is fired at the second before it, and clocks differ a little between hosts. A
# run never starts before its time: the worker waits out what is left (``seconds_early``).
FIRE_TOLERANCE = timedelta(seconds=1)
PAST_AT_TOLERANCE = timedelta(minutes=1)


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RunKind(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    TEST = "test"


ACTIVE = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING)
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED)


@dataclass(frozen=True, slots=True)
class ScheduleData:
    """At most one of ``at``, ``cron`` and ``every_seconds``; none means now."""

    at: datetime | None = None
    cron: str | None = None
    timezone: str = "UTC"
    every_seconds: int | None = None
    end_at: datetime | None = None
    max_runs: int | None = None


@dataclass(frozen=True, slots=True)
class AudienceData:
    """One of: listed user ids, every user, or the members of some topics."""

    user_ids: Sequence[str] | None = None
    all_users: bool = False
    topics: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class CampaignData:
    name: str
    template_slug: str
    channels: Sequence[Channel]
    audience: AudienceData
    payload: Any = None
    locale: str | None = None
    schedule: ScheduleData = field(default_factory=ScheduleData)
    category: str = "campaign"
    draft: bool = False
    # The tenant it sends for (its template overrides and branding; its deliveries carry it).
    tenant_id: str | None = None


class CampaignTrigger(Protocol):
    """What fires a campaign's next run at its time (RedBeat entries in production)."""

    async def arm(self, campaign_id: str, due_at: datetime) -> None: ...

    async def disarm(self, campaign_id: str) -> None: ...


class RunPublisher(Protocol):
    async def publish_page(self, run_id: str, page: int, after: str | None = None) -> None: ...


class BrokerRunPublisher:
    """Sends fan-out page tasks through the confirming publisher."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish_page(self, run_id: str, page: int, after: str | None = None) -> None:
        await task_messages.campaign_fan_out(run_id, page, after).publish(self.broker)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _whole_second(value: datetime) -> datetime:
    # Recurring slots are whole seconds (a one-off ``at`` keeps its fraction: it must not run
    # before it, and its trigger is armed for the second before, see FIRE_TOLERANCE).
    return value.astimezone(UTC).replace(microsecond=0)


def _zone(name: str) -> ZoneInfo:
    return check_zone(name, field="schedule.timezone")


def run_event_id(campaign_id: uuid.UUID, scheduled_for: datetime, kind: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{campaign_id}/{kind}/{scheduled_for.isoformat()}"))


def is_recurring(campaign: Campaign) -> bool:
    return campaign.cron is not None or campaign.every_seconds is not None


def next_slot(campaign: Campaign, after: datetime) -> datetime | None:
    """The first scheduled time strictly after ``after``, or None when the schedule has ended
    (one-off, ``endAt`` passed, or ``maxRuns`` reached)."""
    if campaign.max_runs is not None and campaign.runs_started >= campaign.max_runs:
        return None
    if campaign.cron is not None:
        nxt = next_cron_time(campaign.cron, after.astimezone(ZoneInfo(campaign.timezone)))
        if nxt is None:  # saved before such crons were refused: the schedule cannot go on
            log.warning("campaign %s: cron '%s' never occurs", campaign.id, campaign.cron)
            return None
        slot = _whole_second(nxt)
    elif campaign.every_seconds is not None:
        step = campaign.every_seconds
        elapsed = (after - campaign.anchor_at).total_seconds()
        k = max(1, math.floor(elapsed / step) + 1)
        slot = _whole_second(campaign.anchor_at + timedelta(seconds=k * step))
    else:
        return None
    if campaign.end_at is not None and slot > campaign.end_at:
        return None
    return slot


def describe_schedule(campaign: Campaign) -> str:
    """The schedule in plain words, for people."""
    if campaign.cron is not None:
        return f"cron '{campaign.cron}' in {campaign.timezone}"
    if campaign.every_seconds is not None:
        return f"every {campaign.every_seconds} s"
    if campaign.run_at is not None:
        return f"once at {campaign.run_at.isoformat()}"
    return "once, now"


def _validate(data: CampaignData, now: datetime) -> None:
    name = data.name.strip()
    if not name or len(name) > 200:
        raise ValidationError("A campaign name is 1-200 characters", field="name")
    if not TYPE_RE.match(data.category):
        raise ValidationError(
            "A category is lowercase letters, digits, '_', '.', '-'", field="category"
        )
    if not data.channels:
        raise ValidationError("Pick at least one channel", field="channels")
    if data.locale is not None and not LOCALE_RE.match(data.locale):
        raise ValidationError(f"'{data.locale}' is not a locale", field="locale")
    check_payload(data.payload, field="payload")
    audience = data.audience
    given = [bool(audience.user_ids), audience.all_users, bool(audience.topics)]
    if sum(given) != 1:
        raise ValidationError(
            "Give the audience as userIds, allUsers: true or topics (one of them)",
            field="audience",
        )
    if audience.user_ids is not None:
        if len(audience.user_ids) > MAX_AUDIENCE_IDS:
            raise ValidationError(
                f"At most {MAX_AUDIENCE_IDS} user ids; use allUsers for everyone",
                field="audience.userIds",
            )
        if any(not u.strip() or len(u) > 200 for u in audience.user_ids):
            raise ValidationError("User ids are 1-200 characters", field="audience.userIds")
    s = data.schedule
    if sum(x is not None for x in (s.at, s.cron, s.every_seconds)) > 1:
        raise ValidationError("Give at most one of at, cron and everySeconds", field="schedule")
    zone = _zone(s.timezone)
    if s.cron is not None:
        check_cron(s.cron, field="schedule.cron", zone=zone, now=now)
    if s.every_seconds is not None and s.every_seconds < MIN_INTERVAL_SECONDS:
        raise ValidationError(
            f"everySeconds is at least {MIN_INTERVAL_SECONDS}", field="schedule.everySeconds"
        )
    recurring = s.cron is not None or s.every_seconds is not None
    if not recurring and (s.end_at is not None or s.max_runs is not None):
        raise ValidationError(
            "endAt and maxRuns apply to recurring schedules (cron or everySeconds)",
            field="schedule",
        )
    if s.max_runs is not None and s.max_runs < 1:
        raise ValidationError("maxRuns is at least 1", field="schedule.maxRuns")
    if s.end_at is not None and _aware(s.end_at) <= now:
        raise ValidationError("endAt is in the past", field="schedule.endAt")
    if s.at is not None and _aware(s.at) < now - PAST_AT_TOLERANCE:
        raise ValidationError("The time to send is in the past", field="schedule.at")


async def _check_template(
    session: AsyncSession, slug: str, channels: Sequence[Channel], tenant_id: str | None
) -> None:
    template = await TemplateRepository(session).effective(slug, tenant_id)
    if template is None:
        raise NotFoundError(f"No template with slug '{slug}'", field="templateSlug")
    present = {c.channel for c in template_service.template_content(template)}
    missing = [c.value for c in channels if c not in present]
    if missing:
        raise ValidationError(
            f"Template '{slug}' has no content for: {', '.join(missing)}", field="channels"
        )


async def _check_topics(session: AsyncSession, audience: AudienceData) -> list[str] | None:
    if not audience.topics:
        return None
    return await topic_service.check_topics(session, audience.topics, field="audience.topics")


def _apply(campaign: Campaign, data: CampaignData, now: datetime, topics: list[str] | None) -> None:
    s = data.schedule
    campaign.name = data.name.strip()
    campaign.category = data.category
    campaign.template_slug = data.template_slug
    campaign.channels = list(dict.fromkeys(c.value for c in data.channels))
    if data.audience.all_users:
        campaign.audience = {"all_users": True}
    elif topics:
        campaign.audience = {"topics": topics}
    else:
        ids = list(dict.fromkeys(u.strip() for u in data.audience.user_ids or ()))
        campaign.audience = {"user_ids": ids}
    campaign.payload = {} if data.payload is None else data.payload
    campaign.locale = data.locale
    campaign.run_at = _aware(s.at).astimezone(UTC) if s.at is not None else None
    campaign.cron = s.cron
    campaign.timezone = s.timezone
    campaign.every_seconds = s.every_seconds
    campaign.end_at = _aware(s.end_at) if s.end_at is not None else None
    campaign.max_runs = s.max_runs
    campaign.anchor_at = _whole_second(now)
    campaign.updated_at = now


def _first_run_at(campaign: Campaign, now: datetime) -> datetime | None:
    if is_recurring(campaign):
        return next_slot(campaign, now)
    if campaign.runs_started > 0:
        return None
    return max(campaign.run_at, _whole_second(now)) if campaign.run_at else _whole_second(now)


@dataclass
class CampaignEffects:
    """What a change asks of the world outside PostgreSQL, done after the commit."""

    arm: dict[str, datetime] = field(default_factory=dict)
    disarm: set[str] = field(default_factory=set)
    pages: list[tuple[str, int]] = field(default_factory=list)

    def schedule(self, campaign: Campaign) -> None:
        key = str(campaign.id)
        if campaign.status in ACTIVE and campaign.next_run_at is not None:
            self.arm[key] = campaign.next_run_at
            self.disarm.discard(key)
        else:
            self.arm.pop(key, None)
            self.disarm.add(key)

    async def apply(self, trigger: CampaignTrigger, publisher: RunPublisher) -> None:
        """Best effort for the trigger: a failed arm is repaired by beat's reconciliation."""
        for campaign_id, due_at in self.arm.items():
            try:
                await trigger.arm(campaign_id, due_at)
            except Exception:
                log.exception("arming campaign %s failed; beat will reconcile it", campaign_id)
        for campaign_id in self.disarm:
            try:
                await trigger.disarm(campaign_id)
            except Exception:
                log.exception("disarming campaign %s failed; beat will reconcile it", campaign_id)
        for run_id, page in self.pages:
            await publisher.publish_page(run_id, page)


async def create_campaign(
    session: AsyncSession, *, actor: Principal, data: CampaignData, effects: CampaignEffects
) -> Campaign:
    """Create a campaign; unless a draft, schedule it (a campaign for now starts its run)."""
    now = datetime.now(UTC)
    _validate(data, now)
    tenant_id = await tenants.tenant_for_write(session, actor=actor, requested=data.tenant_id)
    await _check_template(session, data.template_slug, data.channels, tenant_id)
    topics = await _check_topics(session, data.audience)
    campaign = Campaign(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        runs_started=0,
        created_by=actor.user_id,
        updated_by=actor.user_id,
        status=CampaignStatus.DRAFT,
        created_at=now,
    )
    _apply(campaign, data, now, topics)
    await CampaignRepository(session).add(campaign)
    if not data.draft:
        await _activate(session, campaign, now, effects)
    return campaign


async def _activate(
    session: AsyncSession, campaign: Campaign, now: datetime, effects: CampaignEffects
) -> None:
    campaign.anchor_at = _whole_second(now)
    campaign.updated_at = now
    campaign.next_run_at = _first_run_at(campaign, now)
    campaign.updated_at = datetime.now(UTC)
    if campaign.next_run_at is None:
        campaign.status = CampaignStatus.COMPLETED
    else:
        campaign.status = CampaignStatus.SCHEDULED
        if campaign.next_run_at <= now:
            # Due now: start the run in this transaction rather than wait for a trigger.
            await _start_due_run(session, campaign, now, effects)
    effects.schedule(campaign)


async def _get(
    session: AsyncSession,
    campaign_id: str,
    *,
    lock: bool = True,
    actor: Principal | None = None,
) -> Campaign:
    """The campaign; for an ``actor`` bound to a tenant, only its tenant's (another tenant's
    is not found, as if it did not exist)."""
    try:
        key = uuid.UUID(campaign_id)
    except ValueError as exc:
        raise NotFoundError(f"No campaign with id '{campaign_id}'", field="id") from exc
    campaign = await CampaignRepository(session).get(key, lock=lock)
    if campaign is None or (actor is not None and not tenants.visible(actor, campaign.tenant_id)):
        raise NotFoundError(f"No campaign with id '{campaign_id}'", field="id")
    return campaign


async def get_campaign(
    session: AsyncSession, *, campaign_id: str, actor: Principal | None = None
) -> Campaign:
    return await _get(session, campaign_id, lock=False, actor=actor)


async def list_campaigns(
    session: AsyncSession,
    *,
    statuses: Sequence[CampaignStatus] | None,
    search: str | None,
    first: int,
    after: str | None,
    actor: Principal | None = None,
) -> Page[Campaign]:
    """Campaigns newest first; a caller bound to a tenant sees its tenant's only."""
    limit = check_page_size(first)
    position = decode_time_cursor("campaign", after)
    rows = await CampaignRepository(session).page(
        tenant_id=tenants.read_scope(actor) if actor is not None else None,
        statuses=[s.value for s in statuses] if statuses else None,
        search=search.strip() if search else None,
        after=position,
        limit=limit + 1,
    )
    items = [(encode_time_cursor("campaign", c.created_at, c.id), c) for c in rows[:limit]]
    return Page(items=items, has_next_page=len(rows) > limit)


async def update_campaign(
    session: AsyncSession,
    *,
    actor: Principal,
    campaign_id: str,
    data: CampaignData,
    effects: CampaignEffects,
) -> Campaign:
    """Change a draft, scheduled or paused campaign; the schedule counts again from now."""
    campaign = await _get(session, campaign_id, actor=actor)
    if campaign.status not in EDITABLE:
        raise ConflictError(
            f"A {campaign.status} campaign cannot be changed; pause it first", field="id"
        )
    now = datetime.now(UTC)
    _validate(data, now)
    if data.tenant_id is not None and data.tenant_id != campaign.tenant_id:
        raise ValidationError("A campaign's tenant cannot change", field="tenantId")
    await _check_template(session, data.template_slug, data.channels, campaign.tenant_id)
    _apply(campaign, data, now, await _check_topics(session, data.audience))
    campaign.updated_by = actor.user_id
    campaign.updated_at = now
    if campaign.status == CampaignStatus.SCHEDULED or (
        campaign.status == CampaignStatus.DRAFT and not data.draft
    ):
        await _activate(session, campaign, now, effects)
    effects.schedule(campaign)
    await session.flush()
    return campaign


async def pause_campaign(
    session: AsyncSession, *, actor: Principal, campaign_id: str, effects: CampaignEffects
) -> Campaign:
    """Stop firing; a run in progress stops before its next page."""
    campaign = await _get(session, campaign_id, actor=actor)
    if campaign.status not in ACTIVE:
        raise ConflictError(f"A {campaign.status} campaign cannot be paused", field="id")
    await _stop(
        session,
        campaign,
        actor,
        effects,
        CampaignStatus.PAUSED,
        RunStatus.PAUSED,
        [RunStatus.RUNNING],
    )
    return campaign


async def _stop(
    session: AsyncSession,
    campaign: Campaign,
    actor: Principal,
    effects: CampaignEffects,
    status: CampaignStatus,
    run_status: RunStatus,
    expected: Sequence[RunStatus],
) -> None:
    """Pause or cancel: nothing is due any more (resuming works the next time out again),
    unfinished runs stop before their next page, and the beat entry follows."""
    now = datetime.now(UTC)
    campaign.status = status
    campaign.next_run_at = None
    campaign.updated_by = actor.user_id
    campaign.updated_at = now
    runs = CampaignRunRepository(session)
    await runs.set_status(
        [r.id for r in await runs.unfinished(campaign.id)], run_status, now=now, expected=expected
    )
    effects.schedule(campaign)
    await session.flush()


async def resume_campaign(
    session: AsyncSession, *, actor: Principal, campaign_id: str, effects: CampaignEffects
) -> Campaign:
    """Start a draft or continue a paused campaign: paused runs go on from where they
    stopped; a recurring schedule picks up at its next time after now (missed times are not
    made up); a one-off whose time passed while paused runs now."""
    campaign = await _get(session, campaign_id, actor=actor)
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.PAUSED):
        raise ConflictError(f"A {campaign.status} campaign cannot be resumed", field="id")
    now = datetime.now(UTC)
    campaign.updated_by = actor.user_id
    campaign.updated_at = now
    if campaign.status == CampaignStatus.DRAFT:
        await _activate(session, campaign, now, effects)
        await session.flush()
        return campaign
    runs = CampaignRunRepository(session)
    resumed = await runs.set_status(
        [r.id for r in await runs.unfinished(campaign.id)],
        RunStatus.RUNNING,
        now=now,
        expected=[RunStatus.PAUSED],
    )
    effects.pages.extend((str(r.id), r.next_page) for r in resumed)
    if is_recurring(campaign):
        campaign.next_run_at = next_slot(campaign, now)
    elif campaign.runs_started == 0:
        # A one-off paused before its time: its time stays, or it runs now if that passed.
        await _activate(session, campaign, now, effects)
        await session.flush()
        return campaign
    if resumed:
        campaign.status = CampaignStatus.RUNNING
    elif campaign.next_run_at is not None:
        campaign.status = CampaignStatus.SCHEDULED
    else:
        campaign.status = CampaignStatus.COMPLETED
    effects.schedule(campaign)
    await session.flush()
    return campaign


async def cancel_campaign(
    session: AsyncSession, *, actor: Principal, campaign_id: str, effects: CampaignEffects
) -> Campaign:
    """Stop for good: the schedule is removed and runs in progress stop before their next
    page. Deliveries already queued still go out."""
    campaign = await _get(session, campaign_id, actor=actor)
    if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
        raise ConflictError(f"A {campaign.status} campaign cannot be cancelled", field="id")
    await _stop(
        session,
        campaign,
        actor,
        effects,
        CampaignStatus.CANCELLED,
        RunStatus.CANCELLED,
        [RunStatus.RUNNING, RunStatus.PAUSED],
    )
    return campaign


async def send_campaign_now(
    session: AsyncSession,
    *,
    actor: Principal,
    campaign_id: str,
    test_user_id: str | None,
    effects: CampaignEffects,
) -> CampaignRun:
    """An extra run now, outside the schedule: to the whole audience, or, with
    ``test_user_id``, a test send to that one user. Neither counts toward ``maxRuns``."""
    campaign = await _get(session, campaign_id, actor=actor)
    if campaign.status == CampaignStatus.CANCELLED:
        raise ConflictError("A cancelled campaign sends nothing", field="id")
    if test_user_id is not None and not (0 < len(test_user_id.strip()) <= 200):
        raise ValidationError("A test user id is 1-200 characters", field="testUserId")
    now = datetime.now(UTC)
    kind = RunKind.TEST if test_user_id is not None else RunKind.MANUAL
    slot = now.replace(microsecond=(now.microsecond // 1000) * 1000)
    run = await CampaignRunRepository(session).start(
        CampaignRun(
            id=uuid.uuid4(),
            campaign_id=campaign.id,
            scheduled_for=slot,
            event_id=run_event_id(campaign.id, slot, kind),
            kind=kind,
            test_user_id=test_user_id.strip() if test_user_id else None,
            status=RunStatus.RUNNING,
        )
    )
    if run is None:
        raise ConflictError("A send of this campaign started this very moment; retry", field="id")
    if kind is RunKind.MANUAL and campaign.status in (
        CampaignStatus.COMPLETED,
        CampaignStatus.DRAFT,
    ):
        campaign.status = CampaignStatus.RUNNING
        campaign.updated_at = now
    effects.pages.append((str(run.id), 0))
    metrics.record_campaign_run(kind)
    return run


async def _start_due_run(
    session: AsyncSession, campaign: Campaign, now: datetime, effects: CampaignEffects
) -> CampaignRun | None:
    """Start the run for ``next_run_at`` (once per slot) and move the schedule on."""
    assert campaign.next_run_at is not None
    slot = campaign.next_run_at
    run = await CampaignRunRepository(session).start(
        CampaignRun(
            id=uuid.uuid4(),
            campaign_id=campaign.id,
            scheduled_for=slot,
            event_id=run_event_id(campaign.id, slot, RunKind.SCHEDULED),
            kind=RunKind.SCHEDULED,
            status=RunStatus.RUNNING,
        )
    )
    if run is not None:
        campaign.runs_started += 1
        effects.pages.append((str(run.id), 0))
        metrics.record_campaign_run(RunKind.SCHEDULED)
    campaign.next_run_at = next_slot(campaign, max(slot, now)) if is_recurring(campaign) else None
    campaign.status = CampaignStatus.RUNNING
    campaign.updated_at = now
    effects.schedule(campaign)
    return run


async def seconds_early(session: AsyncSession, *, campaign_id: str) -> float:
    """How long before the campaign's ``next_run_at`` a trigger came, when it came early by
    at most FIRE_TOLERANCE (0 otherwise): the caller waits that long, outside any transaction,
    before it calls :func:`fire_campaign`."""
    try:
        key = uuid.UUID(campaign_id)
    except ValueError:
        return 0.0
    due_at = await CampaignRepository(session).next_run_at(key)
    if due_at is None:
        return 0.0
    early = (due_at - datetime.now(UTC)).total_seconds()
    return early if 0 < early <= FIRE_TOLERANCE.total_seconds() else 0.0


async def fire_campaign(
    session: AsyncSession, *, campaign_id: str, effects: CampaignEffects
) -> CampaignRun | None:
    """What a trigger calls: start the due run, if the campaign is active and its
    ``next_run_at`` has come. Anything else (paused, cancelled, a stale, early or duplicate
    trigger) starts nothing, but re-arms the trigger to match the row."""
    # Read the clock before the transaction starts: the run's start time is the
    # transaction's, and it must not be before next_run_at.
    now = datetime.now(UTC)
    try:
        campaign = await _get(session, campaign_id)
    except NotFoundError:
        effects.disarm.add(campaign_id)
        return None
    due = (
        campaign.status in ACTIVE
        and campaign.next_run_at is not None
        and campaign.next_run_at <= now
    )
    if not due:
        effects.schedule(campaign)
        return None
    return await _start_due_run(session, campaign, now, effects)


@dataclass(frozen=True, slots=True)
class AudiencePage:
    user_ids: list[str]
    more: bool
    profiles: dict[str, Any] | None = None  # the users' profiles, when the listing gave them
    # Where the next page starts, for audiences read in keyset order (topics: the last user id).
    after: str | None = None


class AudienceSource(Protocol):
    """Every user of the platform, a page at a time (the auth service's list)."""

    async def list_page(
        self, page: int, page_size: int, *, cache: bool = True
    ) -> tuple[list[Any], bool]: ...


async def audience_page(
    session: AsyncSession,
    campaign: Campaign,
    run: CampaignRun,
    page: int,
    size: int,
    users: AudienceSource,
    *,
    after: str | None = None,
) -> AudiencePage:
    """One page of a run's audience. Topics are read in keyset order over the union of their
    members (``after`` is the last user id of the page before), so a user in two of them is
    on one page only."""
    if run.kind == RunKind.TEST:
        return AudiencePage([run.test_user_id] if page == 0 and run.test_user_id else [], False)
    topics: list[str] | None = campaign.audience.get("topics")
    if topics:
        found = await topic_service.members_page(
            session, topic_keys=topics, after=after, size=size + 1
        )
        members = found[:size]
        return AudiencePage(members, len(found) > size, after=members[-1] if members else None)
    if campaign.audience.get("all_users"):
        # In-app deliveries are written by this task with these profiles; other channels'
        # senders look users up later, so those profiles go to the cache.
        cache = any(c != Channel.IN_APP.value for c in campaign.channels)
        profiles, more = await users.list_page(page + 1, size, cache=cache)
        return AudiencePage([p.id for p in profiles], more, {p.id: p for p in profiles})
    ids: list[str] = campaign.audience.get("user_ids") or []
    chunk = ids[page * size : (page + 1) * size]
    return AudiencePage(chunk, (page + 1) * size < len(ids))


def run_envelope(campaign: Campaign, run: CampaignRun, user_ids: list[str]) -> Envelope:
    """The event a run's page is dispatched as: every page of a run shares its event id."""
    return Envelope(
        id=run.event_id,
        type=campaign.category,
        user_ids=tuple(user_ids),
        payload=campaign.payload,
        template_slug=campaign.template_slug,
        channels=tuple(Channel(c) for c in campaign.channels),
        locale=campaign.locale,
        # A test send reaches the tester whatever their preferences say.
        critical=run.kind == RunKind.TEST,
        created_at=run.started_at.isoformat(),
        send_at=None,
        actor=campaign.created_by,
        campaign_id=str(campaign.id),
        # Reached through topics: users' topic opt-outs apply.
        topics=tuple(campaign.audience.get("topics") or ()) or None,
        via_topics=bool(campaign.audience.get("topics")) and run.kind != RunKind.TEST,
        tenant_id=campaign.tenant_id,
    )


async def finish_run(session: AsyncSession, *, campaign: Campaign, run_id: uuid.UUID) -> None:
    """After a run's last page: a campaign with no run left and no next time is complete."""
    if campaign.status != CampaignStatus.RUNNING:
        return
    if await CampaignRunRepository(session).count_unfinished(campaign.id):
        return
    campaign.updated_at = datetime.now(UTC)
    if campaign.next_run_at is None:
        campaign.status = CampaignStatus.COMPLETED
    else:
        campaign.status = CampaignStatus.SCHEDULED


async def stalled_runs(
    session: AsyncSession, *, stall: timedelta, limit: int = 100
) -> list[tuple[str, int]]:
    """Runs whose next page task was lost (published after a commit that a crash cut short):
    their next page, to publish again. Touched, so that they are not picked again at once."""
    now = datetime.now(UTC)
    repo = CampaignRunRepository(session)
    runs = await repo.stalled(now - stall, limit)
    await repo.touch([r.id for r in runs], now)
    return [(str(r.id), r.next_page) for r in runs]


@dataclass(frozen=True, slots=True)
class RunCount:
    channel: Channel
    status: DeliveryStatus
    count: int


async def run_counts(history: HistoryStore, run: CampaignRun) -> list[RunCount]:
    counts = await history.count_by_status(DeliveryFilter(event_id=run.event_id))
    return [
        RunCount(channel, status, n)
        for (channel, status), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


async def list_runs(
    session: AsyncSession, *, campaign_id: uuid.UUID, limit: int
) -> list[CampaignRun]:
    return await CampaignRunRepository(session).for_campaign(campaign_id, limit)


@dataclass(frozen=True, slots=True)
class CountedRun:
    """A run with its deliveries counted by channel and status, from the history store."""

    run: CampaignRun
    counts: list[RunCount]
    # Opens and clicks of its emails (when tracking is on).
    engagement: EngagementCounts = field(default_factory=EngagementCounts)


async def count_run(history: HistoryStore, run: CampaignRun) -> CountedRun:
    """A run with its deliveries counted by channel and status, and its opens and clicks."""
    return CountedRun(
        run=run,
        counts=await run_counts(history, run),
        engagement=await history.engagement_counts(DeliveryFilter(event_id=run.event_id)),
    )


@dataclass(frozen=True, slots=True)
class CampaignOverview:
    campaign: Campaign
    runs: list[CountedRun]  # newest first


async def campaign_overview(
    session: AsyncSession,
    *,
    history: HistoryStore,
    campaign_id: str,
    runs: int,
    actor: Principal | None = None,
) -> CampaignOverview | None:
    """A campaign with its latest ``runs`` runs and their counts; None when there is none
    (or, for a caller bound to a tenant, when it is another tenant's)."""
    try:
        campaign = await get_campaign(session, campaign_id=campaign_id, actor=actor)
    except NotFoundError:
        return None
    rows = await list_runs(session, campaign_id=campaign.id, limit=runs)
    return CampaignOverview(campaign=campaign, runs=[await count_run(history, r) for r in rows])


@dataclass(frozen=True, slots=True)
class PageOutcome:
    recipients: int
    queued: int
    skipped: int
    more: bool
    stopped: str | None = None  # why the run stopped before this page, if it did


@dataclass(frozen=True, slots=True)
class ClaimedPage:
    """One page of a run's audience, claimed: whom to dispatch to, and whether this task
    moved the run past the page (only then does it hand the next page on)."""

    run_id: str
    page: int
    envelope: Envelope | None = None
    chunk: AudiencePage | None = None
    fresh: bool = False
    advanced: bool = False
    stopped: str | None = None

    def outcome(self, summary: DispatchSummary) -> PageOutcome:
        if self.chunk is None:
            return PageOutcome(0, 0, 0, False, stopped=self.stopped)
        return PageOutcome(
            len(self.chunk.user_ids),
            summary.queued,
            summary.skipped,
            self.chunk.more and self.advanced,
        )


async def claim_page(
    ctx: DeliveryContext,
    session: AsyncSession,
    *,
    run_id: str,
    page: int,
    users: AudienceSource,
    after: str | None = None,
) -> ClaimedPage:
    """Claim one page of a run's audience, for the caller to commit, then hand on the next
    page (``hand_on_page``) and dispatch this one: pages of a run go out in parallel over the
    worker processes.

    The claim (``next_page`` moving past this page) is a compare-and-set, so of two tasks for
    a page only one hands on the next; a page already claimed (its task redelivered after a
    crash, or published again by the stalled-run sweep) is dispatched again without handing
    anything on, which sends nothing twice: dispatch is idempotent per event, user and
    channel.

    A keyset audience (topics) starts a page after the run's stored cursor when the page is
    the run's next one, else after the ``after`` its task message carries."""
    size = ctx.settings.campaign_page_size
    runs = CampaignRunRepository(session)
    run = await runs.get(uuid.UUID(run_id))
    if run is None or page > run.next_page:
        why = "gone" if run is None else f"page {page} is not claimable yet"
        return ClaimedPage(run_id, page, stopped=why)
    campaign = await CampaignRepository(session).get(run.campaign_id)
    assert campaign is not None
    fresh = page == run.next_page
    if fresh and run.status != RunStatus.RUNNING:
        return ClaimedPage(run_id, page, stopped=str(run.status))
    if fresh and campaign.status in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED):
        status = (
            RunStatus.PAUSED if campaign.status == CampaignStatus.PAUSED else RunStatus.CANCELLED
        )
        await runs.set_status([run.id], status, now=datetime.now(UTC), expected=[RunStatus.RUNNING])
        return ClaimedPage(run_id, page, stopped=str(campaign.status))
    start = run.cursor if fresh else after
    chunk = await audience_page(session, campaign, run, page, size, users, after=start)
    advanced = False
    if fresh:
        advanced = await runs.advance(
            run.id,
            page=page,
            cursor=chunk.after,
            recipients=len(chunk.user_ids),
            status=RunStatus.RUNNING if chunk.more else RunStatus.COMPLETED,
            now=datetime.now(UTC),
        )
        if advanced and not chunk.more:
            locked = await CampaignRepository(session).get(run.campaign_id, lock=True)
            if locked is not None:
                await finish_run(session, campaign=locked, run_id=run.id)
    return ClaimedPage(
        run_id,
        page,
        envelope=run_envelope(campaign, run, chunk.user_ids),
        chunk=chunk,
        fresh=fresh,
        advanced=advanced,
    )


async def hand_on_page(claimed: ClaimedPage, publisher: RunPublisher) -> None:
    """Once the claim committed: count the page's recipients and publish the next page."""
    if not claimed.advanced or claimed.chunk is None:
        return
    metrics.record_campaign_recipients(len(claimed.chunk.user_ids))
    if claimed.chunk.more:
        await publisher.publish_page(claimed.run_id, claimed.page + 1, claimed.chunk.after)
