"""Resolvers for campaigns: managers and admins."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal
from backend.errors import HeraldError
from backend.resolvers.units import mutate, read
from backend.schema.campaigns import (
    Campaign,
    CampaignConnection,
    CampaignFilter,
    CampaignInput,
    CampaignResult,
    CampaignRun,
    CampaignRunResult,
    EngagementStats,
    RunCount,
)
from backend.schema.context import Context
from backend.schema.errors import Error
from backend.services import campaigns as campaign_service

Info = strawberry.Info[Context, Any]
M = TypeVar("M")
log = logging.getLogger(__name__)
RUNS_SHOWN = 20


def _data(input: CampaignInput) -> campaign_service.CampaignData:
    s = input.schedule
    return campaign_service.CampaignData(
        name=input.name,
        template_slug=input.template_slug,
        channels=input.channels,
        audience=campaign_service.AudienceData(
            user_ids=[str(u) for u in input.audience.user_ids]
            if input.audience.user_ids is not None
            else None,
            all_users=input.audience.all_users,
            topics=input.audience.topics,
        ),
        payload=input.payload,
        locale=input.locale,
        schedule=campaign_service.ScheduleData(
            at=s.at,
            cron=s.cron,
            timezone=s.timezone,
            every_seconds=s.every_seconds,
            end_at=s.end_at,
            max_runs=s.max_runs,
        )
        if s is not None
        else campaign_service.ScheduleData(),
        category=input.category,
        draft=input.draft,
        tenant_id=input.tenant_id,
    )


def _run(counted: campaign_service.CountedRun) -> CampaignRun:
    counts = [RunCount(channel=c.channel, status=c.status, count=c.count) for c in counted.counts]
    e = counted.engagement
    engagement = EngagementStats(
        opens=e.opens, unique_opens=e.unique_opens, clicks=e.clicks, unique_clicks=e.unique_clicks
    )
    return CampaignRun.from_model(counted.run, counts, engagement)


async def _change(
    info: Info,
    work: Callable[[AsyncSession, Principal, campaign_service.CampaignEffects], Awaitable[M]],
    shape: Callable[[M], Awaitable[Any]],
) -> Any:
    """One campaign change: commit, then arm the trigger and publish the runs it started."""
    effects = campaign_service.CampaignEffects()

    async def unit(session: AsyncSession, actor: Principal) -> M:
        return await work(session, actor, effects)

    result = await mutate(info, MANAGE_TEMPLATES, unit, tenant_scoped=True)
    if isinstance(result, Error):
        return result
    clients = info.context.services.clients
    try:
        await effects.apply(clients.campaign_trigger, clients.run_publisher)
    except HeraldError as exc:
        # Committed: the run's first page is published again by the stalled-run sweep.
        log.warning("a campaign change is saved but its run could not be queued: %s", exc)
    return await shape(result)


async def _campaign(row: campaign_service.Campaign) -> Campaign:
    return Campaign.from_model(row)


class _Step(Protocol):
    def __call__(
        self,
        session: AsyncSession,
        *,
        actor: Principal,
        campaign_id: str,
        effects: campaign_service.CampaignEffects,
    ) -> Awaitable[campaign_service.Campaign]: ...


async def _step(info: Info, id: strawberry.ID, step: _Step) -> Any:
    """A change of one campaign's status (pause, resume, cancel)."""
    return await _change(
        info, lambda s, actor, fx: step(s, actor=actor, campaign_id=str(id), effects=fx), _campaign
    )


def _counted_run(info: Info) -> Callable[[campaign_service.CampaignRun], Awaitable[CampaignRun]]:
    async def shape(row: campaign_service.CampaignRun) -> CampaignRun:
        history = info.context.services.clients.history
        return _run(await campaign_service.count_run(history, row))

    return shape


@strawberry.mutation(
    description=(
        "Create a campaign: sent now, at a time, or on a recurring schedule (cron in a time "
        "zone, or every N seconds). `draft: true` saves it unscheduled. Managers."
    )
)
async def create_campaign(info: Info, input: CampaignInput) -> CampaignResult:
    data = _data(input)
    return await _change(
        info,
        lambda s, actor, fx: campaign_service.create_campaign(
            s, actor=actor, data=data, effects=fx
        ),
        _campaign,
    )


@strawberry.mutation(description="Change a draft, scheduled or paused campaign. Managers.")
async def update_campaign(info: Info, id: strawberry.ID, input: CampaignInput) -> CampaignResult:
    data = _data(input)
    return await _change(
        info,
        lambda s, actor, fx: campaign_service.update_campaign(
            s, actor=actor, campaign_id=str(id), data=data, effects=fx
        ),
        _campaign,
    )


@strawberry.mutation(
    description="Stop firing; a run in progress stops before its next batch. Managers."
)
async def pause_campaign(info: Info, id: strawberry.ID) -> CampaignResult:
    return await _step(info, id, campaign_service.pause_campaign)


@strawberry.mutation(
    description=(
        "Start a draft, or continue a paused campaign from where it stopped; missed "
        "recurring times are not made up. Managers."
    )
)
async def resume_campaign(info: Info, id: strawberry.ID) -> CampaignResult:
    return await _step(info, id, campaign_service.resume_campaign)


@strawberry.mutation(description="Stop for good and remove the schedule. Managers.")
async def cancel_campaign(info: Info, id: strawberry.ID) -> CampaignResult:
    return await _step(info, id, campaign_service.cancel_campaign)


@strawberry.mutation(
    description=(
        "An extra run now, outside the schedule; with `testUserId`, a test send to that "
        "user only (their opt-outs ignored). Managers."
    )
)
async def send_campaign_now(
    info: Info,
    id: strawberry.ID,
    test_user_id: Annotated[
        strawberry.ID | None, strawberry.argument(description="Send only to this user, as a test.")
    ] = None,
) -> CampaignRunResult:
    return await _change(
        info,
        lambda s, actor, fx: campaign_service.send_campaign_now(
            s,
            actor=actor,
            campaign_id=str(id),
            test_user_id=str(test_user_id) if test_user_id is not None else None,
            effects=fx,
        ),
        _counted_run(info),
    )


@strawberry.field(description="Campaigns, newest first, by status and name. Managers.")
async def campaigns(
    info: Info,
    filter: CampaignFilter | None = None,
    first: int = 20,
    after: str | None = None,
) -> CampaignConnection:
    async def work(session: AsyncSession, actor: Principal) -> CampaignConnection:
        page = await campaign_service.list_campaigns(
            session,
            actor=actor,
            statuses=filter.statuses if filter else None,
            search=filter.search if filter else None,
            first=first,
            after=after,
        )
        return CampaignConnection.from_page(page, Campaign.from_model)

    return await read(info, MANAGE_TEMPLATES, work, tenant_scoped=True)


@strawberry.field(
    description="One campaign with its latest runs and their counts, or null. Managers."
)
async def campaign(info: Info, id: strawberry.ID) -> Campaign | None:
    history = info.context.services.clients.history

    async def work(session: AsyncSession, actor: Principal) -> Campaign | None:
        overview = await campaign_service.campaign_overview(
            session, history=history, campaign_id=str(id), runs=RUNS_SHOWN, actor=actor
        )
        if overview is None:
            return None
        return Campaign.from_model(overview.campaign, [_run(r) for r in overview.runs])

    return await read(info, MANAGE_TEMPLATES, work, tenant_scoped=True)


Query = create_type("Query", [campaigns, campaign])
Mutation = create_type(
    "Mutation",
    [
        create_campaign,
        update_campaign,
        pause_campaign,
        resume_campaign,
        cancel_campaign,
        send_campaign_now,
    ],
)
