"""Campaigns through the GraphQL API: validation, states, schedules and their RedBeat entries.

Runs and fan-out with real beat and worker processes are in tests/pipeline/test_campaigns.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from backend.db.models import Campaign as CampaignRow
from backend.services.campaigns import next_slot
from backend.workers.celery_app import create_celery
from backend.workers.schedules import armed_at
from tests.factories import CREATE_TEMPLATE, template_input, token_for

FIELDS = """__typename
  ... on Campaign { id name status nextRunAt runsStarted category channels templateSlug
    audience { userIds allUsers size } payload
    schedule { at cron timezone everySeconds endAt maxRuns description } }
  ... on Error { code message field }"""

CREATE = "mutation($input: CampaignInput!) { createCampaign(input: $input) { " + FIELDS + " } }"
UPDATE = (
    "mutation($id: ID!, $input: CampaignInput!) { updateCampaign(id: $id, input: $input) { "
    + FIELDS
    + " } }"
)


def _op(name: str) -> str:
    return "mutation($id: ID!) { " + name + "(id: $id) { " + FIELDS + " } }"


def campaign_input(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "name": "Spring sale",
        "templateSlug": "greeting",
        "channels": ["IN_APP"],
        "audience": {"userIds": ["u-1", "u-2"]},
        "payload": {"site": "Herald"},
        "schedule": {"cron": "0 9 * * 1", "timezone": "Europe/Moscow"},
    }
    value.update(overrides)
    return value


@pytest.fixture
async def manager(gql, settings) -> str:
    token = token_for(settings, "manager", sub="mgr-1")
    created = await gql(CREATE_TEMPLATE, {"input": template_input()}, token=token)
    assert created["data"]["createTemplate"]["__typename"] == "Template"
    return token


async def create(gql: Any, token: str, **overrides: Any) -> dict[str, Any]:
    body = await gql(CREATE, {"input": campaign_input(**overrides)}, token=token)
    result: dict[str, Any] = body["data"]["createCampaign"]
    return result


def armed(settings: Any, campaign_id: str) -> datetime | None:
    return armed_at(create_celery(settings), campaign_id)


async def test_recurring_campaign_is_scheduled_and_armed_in_redbeat(gql, settings, manager):
    created = await create(gql, manager)
    assert created["__typename"] == "Campaign", created
    assert created["status"] == "SCHEDULED"
    assert created["schedule"]["description"] == "cron '0 9 * * 1' in Europe/Moscow"
    next_run = datetime.fromisoformat(created["nextRunAt"])
    local = next_run.astimezone(ZoneInfo("Europe/Moscow"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    assert timedelta(0) < next_run - datetime.now(UTC) <= timedelta(days=7)
    assert armed(settings, created["id"]) == next_run

    async def act(operation: str) -> dict[str, Any]:
        body = await gql(_op(operation), {"id": created["id"]}, token=manager)
        return dict(body["data"][operation])

    paused = await act("pauseCampaign")
    assert (paused["status"], paused["nextRunAt"]) == ("PAUSED", None)
    assert armed(settings, created["id"]) is None
    assert (await act("resumeCampaign"))["status"] == "SCHEDULED"
    assert armed(settings, created["id"]) == next_run
    cancelled = await act("cancelCampaign")
    assert (cancelled["status"], cancelled["nextRunAt"]) == ("CANCELLED", None)
    assert armed(settings, created["id"]) is None
    assert (await act("resumeCampaign"))["code"] == "CONFLICT"


async def test_delayed_campaign_is_armed_for_its_time(gql, settings, manager):
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    created = await create(gql, manager, schedule={"at": at.isoformat()})
    assert created["status"] == "SCHEDULED"
    assert datetime.fromisoformat(created["nextRunAt"]) == at
    assert armed(settings, created["id"]) == at


async def test_draft_is_not_armed_until_resumed_and_can_be_edited(gql, settings, manager):
    draft = await create(gql, manager, draft=True, schedule={"everySeconds": 3600})
    assert draft["status"] == "DRAFT" and draft["nextRunAt"] is None
    assert armed(settings, draft["id"]) is None
    updated = await gql(
        UPDATE,
        {"id": draft["id"], "input": campaign_input(name="Renamed", draft=True)},
        token=manager,
    )
    assert updated["data"]["updateCampaign"]["name"] == "Renamed"
    assert updated["data"]["updateCampaign"]["status"] == "DRAFT"
    started = (await gql(_op("resumeCampaign"), {"id": draft["id"]}, token=manager))["data"]
    assert started["resumeCampaign"]["status"] == "SCHEDULED"
    assert armed(settings, draft["id"]) is not None


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"schedule": {"cron": "0 9 * *"}}, "schedule.cron", "5-field cron"),
        ({"schedule": {"cron": "61 9 * * *"}}, "schedule.cron", "5-field cron"),
        ({"schedule": {"cron": "0 9 * * 1", "timezone": "Mars/Base"}}, "schedule.timezone", ""),
        ({"schedule": {"cron": "0 9 * * 1", "everySeconds": 60}}, "schedule", "at most one"),
        ({"schedule": {"at": "2020-01-01T00:00:00Z"}}, "schedule.at", "in the past"),
        ({"schedule": {"maxRuns": 3}}, "schedule", "recurring"),
        ({"schedule": {"everySeconds": 0}}, "schedule.everySeconds", "at least"),
        ({"schedule": {"everySeconds": 60, "maxRuns": 0}}, "schedule.maxRuns", "at least 1"),
        ({"audience": {}}, "audience", "one of them"),
        ({"audience": {"userIds": ["a"], "allUsers": True}}, "audience", "one of them"),
        ({"channels": []}, "channels", "at least one"),
        ({"channels": ["SMS"]}, "channels", "no content for: sms"),
        ({"templateSlug": "nope"}, "templateSlug", "No template"),
        ({"name": " "}, "name", "1-200"),
        ({"category": "Bad Category"}, "category", "lowercase"),
        ({"payload": [1, 2]}, "payload", "JSON object"),
    ],
)
async def test_bad_input_is_a_typed_error_at_its_field(gql, manager, overrides, field, words):
    result = await create(gql, manager, **overrides)
    assert result["__typename"] in ("ValidationError", "NotFoundError"), result
    assert result["field"] == field
    assert words in result["message"]


async def test_only_managers_and_admins_run_campaigns(gql, settings, manager):
    for role in ("user", "service"):
        body = await gql(
            CREATE, {"input": campaign_input()}, token=token_for(settings, role, sub="x")
        )
        assert body["data"]["createCampaign"]["code"] == "FORBIDDEN"
        listed = await gql(
            "{ campaigns { edges { node { id } } } }", token=token_for(settings, role)
        )
        assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_list_filters_by_status_and_name_and_pages(gql, manager):
    # Other tests' committed campaigns share the database: this test's names are its own.
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        await create(gql, manager, name=f"Weekly {tag} {i}")
    await create(gql, manager, name=f"Draft {tag}", draft=True)
    query = """query($f: CampaignFilter, $after: String) {
      campaigns(filter: $f, first: 2, after: $after) {
        edges { node { name status } } pageInfo { hasNextPage endCursor } } }"""
    scheduled = {"statuses": ["SCHEDULED"], "search": tag}
    first = (await gql(query, {"f": scheduled}, token=manager))["data"]
    page = first["campaigns"]
    assert [e["node"]["name"] for e in page["edges"]] == [f"Weekly {tag} 2", f"Weekly {tag} 1"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await gql(query, {"f": scheduled, "after": page["pageInfo"]["endCursor"]}, token=manager)
    assert [e["node"]["name"] for e in rest["data"]["campaigns"]["edges"]] == [f"Weekly {tag} 0"]
    drafts = await gql(query, {"f": {"search": f"draft {tag}"}}, token=manager)
    assert [e["node"]["status"] for e in drafts["data"]["campaigns"]["edges"]] == ["DRAFT"]
    bad = await gql(query, {"after": "garbage"}, token=manager)
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"


async def test_running_campaign_cannot_be_edited_and_unknown_ids_are_not_found(gql, manager):
    missing = await gql(_op("pauseCampaign"), {"id": "not-a-uuid"}, token=manager)
    assert missing["data"]["pauseCampaign"]["code"] == "NOT_FOUND"
    assert (await gql('{ campaign(id: "x") { id } }', token=manager))["data"] == {"campaign": None}


def _row(**kw: Any) -> CampaignRow:
    values: dict[str, Any] = {
        "cron": None,
        "every_seconds": None,
        "timezone": "UTC",
        "end_at": None,
        "max_runs": None,
        "runs_started": 0,
        "anchor_at": datetime(2026, 3, 1, tzinfo=UTC),
    }
    values.update(kw)
    return CampaignRow(**values)


def test_cron_slots_follow_the_time_zone_across_daylight_saving():
    row = _row(cron="30 9 * * *", timezone="America/New_York")
    before = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)  # EST, UTC-5
    first = next_slot(row, before)
    second = next_slot(row, first)  # type: ignore[arg-type]
    third = next_slot(row, second)  # type: ignore[arg-type]
    assert first == datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # DST starts 8 March: UTC-4
    assert second == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)
    assert third == datetime(2026, 3, 10, 13, 30, tzinfo=UTC)
    assert {s.astimezone(ZoneInfo("America/New_York")).hour for s in (first, second)} == {9}


def test_interval_slots_keep_their_grid_and_respect_end_and_max_runs():
    anchor = datetime(2026, 3, 1, tzinfo=UTC)
    row = _row(every_seconds=60, anchor_at=anchor)
    assert next_slot(row, anchor) == anchor + timedelta(seconds=60)
    assert next_slot(row, anchor + timedelta(seconds=150.5)) == anchor + timedelta(seconds=180)
    ended = _row(every_seconds=60, anchor_at=anchor, end_at=anchor + timedelta(seconds=90))
    assert next_slot(ended, anchor + timedelta(seconds=60)) is None
    capped = _row(every_seconds=60, anchor_at=anchor, max_runs=2, runs_started=2)
    assert next_slot(capped, anchor) is None


async def test_a_started_run_is_counted_in_the_metrics(gql, client, manager):
    from tests.deploy.test_metrics import value

    before = value(
        (await client.get("/metrics")).text, "herald_campaign_runs_total", kind="scheduled"
    )
    created = await create(gql, manager, schedule=None)
    assert created["status"] == "RUNNING", created
    after = value(
        (await client.get("/metrics")).text, "herald_campaign_runs_total", kind="scheduled"
    )
    assert (after or 0) - (before or 0) == 1
