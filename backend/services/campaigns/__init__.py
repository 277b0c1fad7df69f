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

The package: ``definitions`` (statuses, schedules, audiences, the checks before saving),
``lifecycle`` (create, change, pause, resume, cancel, send now, fire) and ``runs`` (pages of a
run's audience, the counts of a run and a campaign)."""

# The rows callers are handed (resolvers read them through this package).
from backend.db.models import Campaign, CampaignRun
from backend.services.campaigns.definitions import (
    ACTIVE,
    EDITABLE,
    FIRE_TOLERANCE,
    MAX_AUDIENCE_IDS,
    MIN_INTERVAL_SECONDS,
    PAST_AT_TOLERANCE,
    AudienceData,
    CampaignData,
    CampaignStatus,
    RunKind,
    RunStatus,
    ScheduleData,
    describe_schedule,
    is_recurring,
    next_slot,
    run_event_id,
)
from backend.services.campaigns.lifecycle import (
    CampaignEffects,
    CampaignTrigger,
    cancel_campaign,
    create_campaign,
    fire_campaign,
    get_campaign,
    list_campaigns,
    pause_campaign,
    resume_campaign,
    seconds_early,
    send_campaign_now,
    update_campaign,
)
from backend.services.campaigns.runs import (
    AudiencePage,
    AudienceSource,
    BrokerRunPublisher,
    CampaignOverview,
    ClaimedPage,
    CountedRun,
    PageOutcome,
    RunCount,
    RunPublisher,
    audience_page,
    campaign_overview,
    claim_page,
    count_run,
    finish_run,
    hand_on_page,
    list_runs,
    run_counts,
    run_envelope,
    stalled_runs,
)

__all__ = [
    "ACTIVE",
    "EDITABLE",
    "FIRE_TOLERANCE",
    "MAX_AUDIENCE_IDS",
    "MIN_INTERVAL_SECONDS",
    "PAST_AT_TOLERANCE",
    "AudienceData",
    "AudiencePage",
    "AudienceSource",
    "BrokerRunPublisher",
    "Campaign",
    "CampaignData",
    "CampaignEffects",
    "CampaignOverview",
    "CampaignRun",
    "CampaignStatus",
    "CampaignTrigger",
    "ClaimedPage",
    "CountedRun",
    "PageOutcome",
    "RunCount",
    "RunKind",
    "RunPublisher",
    "RunStatus",
    "ScheduleData",
    "audience_page",
    "campaign_overview",
    "cancel_campaign",
    "claim_page",
    "count_run",
    "create_campaign",
    "describe_schedule",
    "finish_run",
    "fire_campaign",
    "get_campaign",
    "hand_on_page",
    "is_recurring",
    "list_campaigns",
    "list_runs",
    "next_slot",
    "pause_campaign",
    "resume_campaign",
    "run_counts",
    "run_envelope",
    "run_event_id",
    "seconds_early",
    "send_campaign_now",
    "stalled_runs",
    "update_campaign",
]
