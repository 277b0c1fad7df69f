"""What a campaign is: its statuses, its schedule (one-off, delayed, recurring: the next slot and
how it reads), its audience, and the checks a campaign passes before it is saved."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import Channel
from backend.db.models import Campaign
from backend.db.repositories.templates import TemplateRepository
from backend.errors import NotFoundError, ValidationError
from backend.services import templates as template_service
from backend.services import topics as topic_service
from backend.services.calendars import check_cron, check_zone, next_cron_time
from backend.services.events import TYPE_RE
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


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def whole_second(value: datetime) -> datetime:
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
        slot = whole_second(nxt)
    elif campaign.every_seconds is not None:
        step = campaign.every_seconds
        elapsed = (after - campaign.anchor_at).total_seconds()
        k = max(1, math.floor(elapsed / step) + 1)
        slot = whole_second(campaign.anchor_at + timedelta(seconds=k * step))
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


def validate_data(data: CampaignData, now: datetime) -> None:
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


async def check_template(
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


async def check_topics(session: AsyncSession, audience: AudienceData) -> list[str] | None:
    if not audience.topics:
        return None
    return await topic_service.check_topics(session, audience.topics, field="audience.topics")


def apply_data(
    campaign: Campaign, data: CampaignData, now: datetime, topics: list[str] | None
) -> None:
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
    campaign.anchor_at = whole_second(now)
    campaign.updated_at = now


def first_run_at(campaign: Campaign, now: datetime) -> datetime | None:
    if is_recurring(campaign):
        return next_slot(campaign, now)
    if campaign.runs_started > 0:
        return None
    return max(campaign.run_at, whole_second(now)) if campaign.run_at else whole_second(now)
