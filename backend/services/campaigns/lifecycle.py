"""A campaign's life: created, changed, paused, resumed, cancelled, sent now, and fired by its
RedBeat entry (``CampaignTrigger``), each run keyed by (campaign, scheduled time)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.db.models import Campaign, CampaignRun
from backend.db.repositories.campaigns import CampaignRepository, CampaignRunRepository
from backend.errors import ConflictError, NotFoundError, ValidationError
from backend.observability import metrics
from backend.services import tenants
from backend.services.campaigns.definitions import (
    ACTIVE,
    EDITABLE,
    FIRE_TOLERANCE,
    CampaignData,
    CampaignStatus,
    RunKind,
    RunStatus,
    apply_data,
    check_template,
    check_topics,
    first_run_at,
    is_recurring,
    next_slot,
    run_event_id,
    validate_data,
    whole_second,
)
from backend.services.pagination import (
    Page,
    check_page_size,
    decode_time_cursor,
    encode_time_cursor,
)

if TYPE_CHECKING:
    from backend.services.campaigns.runs import RunPublisher

log = logging.getLogger(__name__)


class CampaignTrigger(Protocol):
    """What fires a campaign's next run at its time (RedBeat entries in production)."""

    async def arm(self, campaign_id: str, due_at: datetime) -> None: ...

    async def disarm(self, campaign_id: str) -> None: ...


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
    validate_data(data, now)
    tenant_id = await tenants.tenant_for_write(session, actor=actor, requested=data.tenant_id)
    await check_template(session, data.template_slug, data.channels, tenant_id)
    topics = await check_topics(session, data.audience)
    campaign = Campaign(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        runs_started=0,
        created_by=actor.user_id,
        updated_by=actor.user_id,
        status=CampaignStatus.DRAFT,
        created_at=now,
    )
    apply_data(campaign, data, now, topics)
    await CampaignRepository(session).add(campaign)
    if not data.draft:
        await _activate(session, campaign, now, effects)
    return campaign


async def _activate(
    session: AsyncSession, campaign: Campaign, now: datetime, effects: CampaignEffects
) -> None:
    campaign.anchor_at = whole_second(now)
    campaign.updated_at = now
    campaign.next_run_at = first_run_at(campaign, now)
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
    validate_data(data, now)
    if data.tenant_id is not None and data.tenant_id != campaign.tenant_id:
        raise ValidationError("A campaign's tenant cannot change", field="tenantId")
    await check_template(session, data.template_slug, data.channels, campaign.tenant_id)
    apply_data(campaign, data, now, await check_topics(session, data.audience))
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
