"""GraphQL types for campaigns and their runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from backend.channels import Channel
from backend.db.history.base import DeliveryStatus
from backend.db.models import Campaign as CampaignModel
from backend.db.models import CampaignRun as CampaignRunModel
from backend.schema.common import Connection
from backend.schema.errors import (
    AccessErrors,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from backend.services.campaigns import CampaignStatus, RunKind, RunStatus, describe_schedule

strawberry.enum(CampaignStatus, name="CampaignStatus", description="Where a campaign stands.")
strawberry.enum(RunStatus, name="CampaignRunStatus", description="Where a run stands.")
strawberry.enum(
    RunKind,
    name="CampaignRunKind",
    description="`scheduled` by the schedule, `manual` from sendCampaignNow, `test` to one user.",
)


@strawberry.input(
    description=(
        "When to send: at most one of `at`, `cron` and `everySeconds`; none means now. "
        "`endAt` and `maxRuns` bound a recurring schedule."
    )
)
class ScheduleInput:
    at: datetime | None = strawberry.field(
        default=None, description="Once, at this time (ISO 8601; UTC if no offset)."
    )
    cron: str | None = strawberry.field(
        default=None, description="A 5-field cron expression, read in `timezone`."
    )
    timezone: str = strawberry.field(default="UTC", description="An IANA zone, e.g. Europe/Moscow.")
    every_seconds: int | None = strawberry.field(
        default=None, description="Every N seconds, counted from when the campaign starts."
    )
    end_at: datetime | None = strawberry.field(default=None, description="No run after this.")
    max_runs: int | None = strawberry.field(default=None, description="At most this many runs.")


@strawberry.input(description="Who receives it: `userIds`, `allUsers: true`, or `topics`.")
class AudienceInput:
    user_ids: list[strawberry.ID] | None = None
    all_users: bool = False
    topics: list[str] | None = strawberry.field(
        default=None,
        description="The members of these topics (a user in several gets one delivery).",
    )


@strawberry.input
class CampaignInput:
    name: str
    template_slug: str
    channels: list[Channel]
    audience: AudienceInput
    payload: JSON | None = strawberry.field(default=None, description="Template variables.")
    locale: str | None = strawberry.field(
        default=None, description="Force a locale; otherwise each user's own, then `en`."
    )
    schedule: ScheduleInput | None = None
    category: str = strawberry.field(
        default="campaign",
        description=(
            "The event type its deliveries carry: users who opted out of it (or of a channel) "
            "are skipped."
        ),
    )
    draft: bool = strawberry.field(
        default=False, description="Save without scheduling; start later with resumeCampaign."
    )
    tenant_id: str | None = strawberry.field(
        default=None,
        description=(
            "The tenant it sends for (its template overrides, its branding); fixed once made. "
            "A caller bound to a tenant always makes its own tenant's campaigns."
        ),
    )


@strawberry.type(description="The schedule as given, and in words.")
class Schedule:
    at: datetime | None
    cron: str | None
    timezone: str
    every_seconds: int | None
    end_at: datetime | None
    max_runs: int | None
    description: str


@strawberry.type
class Audience:
    user_ids: list[strawberry.ID] | None = strawberry.field(
        description="The listed users (null for allUsers)."
    )
    all_users: bool
    topics: list[str] | None = strawberry.field(description="The targeted topics, if any.")
    size: int | None = strawberry.field(
        description="How many listed users (null for allUsers and topics)."
    )


@strawberry.type(description="Deliveries of a run on one channel in one status.")
class RunCount:
    channel: Channel
    status: DeliveryStatus
    count: int


@strawberry.type(description="Opens and clicks of a run's emails (when tracking is on).")
class EngagementStats:
    opens: int = strawberry.field(description="Every recorded open.")
    unique_opens: int = strawberry.field(description="Deliveries opened at least once.")
    clicks: int = strawberry.field(description="Every recorded click.")
    unique_clicks: int = strawberry.field(description="Deliveries with at least one click.")


@strawberry.type(description="One run of a campaign: one scheduled time, or one manual send.")
class CampaignRun:
    id: strawberry.ID
    kind: RunKind
    status: RunStatus
    scheduled_for: datetime
    started_at: datetime
    finished_at: datetime | None
    recipients: int = strawberry.field(description="Users fanned out so far.")
    event_id: strawberry.ID = strawberry.field(
        description="Its deliveries' event id (filter history with it)."
    )
    test_user_id: strawberry.ID | None
    counts: list[RunCount] = strawberry.field(
        description="Deliveries per channel and status, from the history."
    )
    engagement: EngagementStats = strawberry.field(
        description="Opens and clicks of its emails, from the history (email tracking)."
    )

    @classmethod
    def from_model(
        cls,
        row: CampaignRunModel,
        counts: list[RunCount],
        engagement: EngagementStats | None = None,
    ) -> CampaignRun:
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=RunKind(row.kind),
            status=RunStatus(row.status),
            scheduled_for=row.scheduled_for,
            started_at=row.started_at,
            finished_at=row.finished_at,
            recipients=row.recipients,
            event_id=strawberry.ID(row.event_id),
            test_user_id=strawberry.ID(row.test_user_id) if row.test_user_id else None,
            counts=counts,
            engagement=engagement
            or EngagementStats(opens=0, unique_opens=0, clicks=0, unique_clicks=0),
        )


@strawberry.type(description="A planned send of one template to an audience.")
class Campaign:
    id: strawberry.ID
    name: str
    category: str
    template_slug: str
    channels: list[Channel]
    audience: Audience
    payload: JSON
    locale: str | None
    schedule: Schedule
    status: CampaignStatus
    next_run_at: datetime | None
    runs_started: int = strawberry.field(description="Scheduled runs so far (toward maxRuns).")
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    runs: list[CampaignRun] = strawberry.field(
        description="The latest runs, newest first (filled for `campaign(id)` only)."
    )
    tenant_id: str | None = strawberry.field(
        default=None, description="The tenant it sends for; null without one."
    )

    @classmethod
    def from_model(cls, row: CampaignModel, runs: list[CampaignRun] | None = None) -> Campaign:
        ids = row.audience.get("user_ids")
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            category=row.category,
            template_slug=row.template_slug,
            channels=[Channel(c) for c in row.channels],
            audience=Audience(
                user_ids=[strawberry.ID(u) for u in ids] if ids is not None else None,
                all_users=bool(row.audience.get("all_users")),
                topics=row.audience.get("topics"),
                size=len(ids) if ids is not None else None,
            ),
            payload=row.payload,  # type: ignore[arg-type]
            locale=row.locale,
            schedule=Schedule(
                at=row.run_at,
                cron=row.cron,
                timezone=row.timezone,
                every_seconds=row.every_seconds,
                end_at=row.end_at,
                max_runs=row.max_runs,
                description=describe_schedule(row),
            ),
            status=CampaignStatus(row.status),
            tenant_id=row.tenant_id,
            next_run_at=row.next_run_at,
            runs_started=row.runs_started,
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            runs=runs or [],
        )


@strawberry.type(description="Campaigns, newest first.")
class CampaignConnection(Connection[Campaign]):
    pass


@strawberry.input
class CampaignFilter:
    statuses: list[CampaignStatus] | None = None
    search: str | None = strawberry.field(default=None, description="Matches the name.")


CampaignResult = Annotated[
    Campaign | ValidationError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("CampaignResult"),
]

CampaignRunResult = Annotated[
    CampaignRun | ValidationError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("CampaignRunResult"),
]
