"""A run's audience fanned out a page per task (``claim_page``, ``hand_on_page``), the envelope
each page is dispatched with, and what a run and a campaign counted."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

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
from backend.errors import NotFoundError
from backend.observability import metrics
from backend.services import task_messages
from backend.services import topics as topic_service
from backend.services.campaigns.definitions import CampaignStatus, RunKind, RunStatus
from backend.services.campaigns.lifecycle import get_campaign
from backend.services.deliveries import DeliveryContext, DispatchSummary, Envelope

log = logging.getLogger(__name__)


class RunPublisher(Protocol):
    async def publish_page(self, run_id: str, page: int, after: str | None = None) -> None: ...


class BrokerRunPublisher:
    """Sends fan-out page tasks through the confirming publisher."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish_page(self, run_id: str, page: int, after: str | None = None) -> None:
        await task_messages.campaign_fan_out(run_id, page, after).publish(self.broker)


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
        # The run's last page may finish the campaign: its row is locked before the run's,
        # in the order pause, cancel and a firing trigger lock them (campaign, then runs),
        # or this claim and a pause deadlock.
        locked = None
        if not chunk.more:
            locked = await CampaignRepository(session).get(run.campaign_id, lock=True)
        advanced = await runs.advance(
            run.id,
            page=page,
            cursor=chunk.after,
            recipients=len(chunk.user_ids),
            status=RunStatus.RUNNING if chunk.more else RunStatus.COMPLETED,
            now=datetime.now(UTC),
        )
        if advanced and locked is not None:
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
