"""Campaigns with real beat and worker processes: delayed, recurring, paused, restarted.

The worker runs with HERALD_CAMPAIGN_PAGE_SIZE=2, so every audience larger than two users is
fanned out over several page tasks.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import text

from backend.workers.celery_app import create_celery
from backend.workers.schedules import armed_at
from tests.conftest import TEST_REDIS_URL, scalar
from tests.factories import token_for
from tests.pipeline.conftest import in_app_template
from tests.pipeline.servers import eventually
from tests.processes import Process

ALL_USERS = ["u-alice", "u-bruno", "u-chen", "u-dana", "u-emil"]

CREATE = """mutation($input: CampaignInput!) { createCampaign(input: $input) { __typename
  ... on Campaign { id status nextRunAt } ... on Error { code message field } } }"""
CAMPAIGN = """query($id: ID!) { campaign(id: $id) { id status nextRunAt runsStarted
  runs { id kind status scheduledFor startedAt recipients eventId testUserId
         counts { channel status count } } } }"""
SEND_NOW = """mutation($id: ID!, $user: ID) { sendCampaignNow(id: $id, testUserId: $user) {
  __typename ... on CampaignRun { id kind } ... on Error { code message } } }"""


def _op(name: str) -> str:
    return "mutation($id: ID!) { " + name + "(id: $id) { __typename ... on Campaign { status } } }"


@pytest.fixture
def admin(settings: Any) -> str:
    return token_for(settings, "admin", sub="admin-1")


@pytest.fixture
async def template(e2e: Any, admin: str) -> str:
    return await in_app_template(e2e, admin)


async def create(e2e: Any, admin: str, template: str, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "name": f"campaign {uuid.uuid4().hex[:6]}",
        "templateSlug": template,
        "channels": ["IN_APP"],
        "audience": {"userIds": ["u-alice", "u-bruno"]},
        "payload": {"offer": "20% off"},
        "category": "promo",
    }
    value.update(overrides)
    body = await e2e(CREATE, {"input": value}, token=admin)
    result: dict[str, Any] = body["data"]["createCampaign"]
    assert result["__typename"] == "Campaign", result
    return result


async def fetch(e2e: Any, admin: str, campaign_id: str) -> dict[str, Any]:
    body = await e2e(CAMPAIGN, {"id": campaign_id}, token=admin)
    campaign: dict[str, Any] = body["data"]["campaign"]
    return campaign


def sent(run: dict[str, Any]) -> int:
    return sum(c["count"] for c in run["counts"] if c["status"] == "SENT")


def total(run: dict[str, Any]) -> int:
    return sum(c["count"] for c in run["counts"])


async def until_status(
    e2e: Any, admin: str, campaign_id: str, status: str, timeout: float = 30
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        campaign = await fetch(e2e, admin, campaign_id)
        done = all(sent(r) + _skipped(r) == r["recipients"] for r in campaign["runs"])
        return campaign if campaign["status"] == status and done else None

    result: dict[str, Any] = await eventually(check, timeout=timeout, interval=0.2)
    return result


async def ran_once_on_time(
    e2e: Any, admin: str, campaign_id: str, at: datetime, *, within: timedelta
) -> None:
    """The campaign completed with one run, scheduled for ``at`` and started no earlier and
    at most ``within`` later, sending to both its users."""
    campaign = await until_status(e2e, admin, campaign_id, "COMPLETED", timeout=20)
    [run] = campaign["runs"]
    assert datetime.fromisoformat(run["scheduledFor"]) == at
    late = datetime.fromisoformat(run["startedAt"]) - at
    assert timedelta(0) <= late <= within, late
    assert sent(run) == 2


def _skipped(run: dict[str, Any]) -> int:
    return sum(c["count"] for c in run["counts"] if c["status"] == "SKIPPED")


async def run_count(e2e: Any, admin: str, campaign_id: str) -> int:
    return len((await fetch(e2e, admin, campaign_id))["runs"])


def armed(settings: Any, campaign_id: str) -> datetime | None:
    return armed_at(create_celery(settings), campaign_id)


async def test_now_to_all_users_is_fanned_out_in_pages_and_completes(
    e2e, admin, template, beat, engine
):
    async with engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM recipients WHERE user_id = ANY(:ids)"), {"ids": ALL_USERS}
        )
    created = await create(e2e, admin, template, audience={"allUsers": True})
    campaign = await until_status(e2e, admin, created["id"], "COMPLETED")
    [run] = campaign["runs"]
    assert (run["kind"], run["status"], run["recipients"]) == ("SCHEDULED", "COMPLETED", 5)
    assert run["counts"] == [{"channel": "IN_APP", "status": "SENT", "count": 5}]
    # The auth service's list pages the fan-out read were stored as recipients on the way.
    async with engine.connect() as conn:
        stored = await conn.execute(
            text("SELECT user_id, source, email FROM recipients WHERE user_id = ANY(:ids)"),
            {"ids": ALL_USERS},
        )
        rows = sorted(stored.all())
    assert [(r.user_id, r.source) for r in rows] == [(u, "auth") for u in ALL_USERS]
    assert all(r.email for r in rows)


async def test_delayed_campaign_fires_within_two_seconds_of_its_time(
    e2e, admin, template, settings, beat
):
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    created = await create(e2e, admin, template, schedule={"at": at.isoformat()})
    assert created["status"] == "SCHEDULED"
    assert armed(settings, created["id"]) == at
    await ran_once_on_time(e2e, admin, created["id"], at, within=timedelta(seconds=2))
    assert armed(settings, created["id"]) is None


async def test_a_campaign_at_a_time_with_a_fraction_never_runs_before_it(
    e2e, admin, template, settings, beat
):
    # RedBeat fires at whole seconds: this trigger comes 0.9 s before the time asked.
    at = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=900_123)
    created = await create(e2e, admin, template, schedule={"at": at.isoformat()})
    assert datetime.fromisoformat(created["nextRunAt"]) == at
    assert armed(settings, created["id"]) == at.replace(microsecond=0)
    await ran_once_on_time(e2e, admin, created["id"], at, within=timedelta(seconds=1))


async def test_interval_campaign_repeats_and_stops_at_max_runs(
    e2e, admin, template, settings, beat
):
    created = await create(e2e, admin, template, schedule={"everySeconds": 1, "maxRuns": 3})
    campaign = await until_status(e2e, admin, created["id"], "COMPLETED", timeout=30)
    runs = sorted(campaign["runs"], key=lambda r: r["scheduledFor"])
    assert [r["kind"] for r in runs] == ["SCHEDULED"] * 3
    assert [sent(r) for r in runs] == [2, 2, 2]
    slots = [datetime.fromisoformat(r["scheduledFor"]) for r in runs]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(slots)] == [1, 1]
    assert campaign["runsStarted"] == 3 and campaign["nextRunAt"] is None
    await asyncio.sleep(2.5)
    assert await run_count(e2e, admin, created["id"]) == 3
    assert armed(settings, created["id"]) is None


async def test_pause_resume_and_cancel(e2e, admin, template, settings, beat):
    created = await create(e2e, admin, template, schedule={"everySeconds": 1})
    cid = created["id"]
    await eventually(lambda: _at_least(e2e, admin, cid, 1), timeout=15)
    paused = await e2e(_op("pauseCampaign"), {"id": cid}, token=admin)
    assert paused["data"]["pauseCampaign"]["status"] == "PAUSED"
    assert armed(settings, cid) is None
    await asyncio.sleep(0.5)  # a fire already on its way finds the campaign paused
    held = await run_count(e2e, admin, cid)
    await asyncio.sleep(2.5)
    assert await run_count(e2e, admin, cid) == held

    resumed = await e2e(_op("resumeCampaign"), {"id": cid}, token=admin)
    assert resumed["data"]["resumeCampaign"]["status"] in ("SCHEDULED", "RUNNING")
    await eventually(lambda: _at_least(e2e, admin, cid, held + 1), timeout=15)

    cancelled = await e2e(_op("cancelCampaign"), {"id": cid}, token=admin)
    assert cancelled["data"]["cancelCampaign"]["status"] == "CANCELLED"
    assert armed(settings, cid) is None
    await asyncio.sleep(0.5)
    final = await run_count(e2e, admin, cid)
    await asyncio.sleep(2.5)
    assert await run_count(e2e, admin, cid) == final
    campaign = await fetch(e2e, admin, cid)
    assert campaign["status"] == "CANCELLED"
    # Every run that started, sent to each recipient once.
    for run in campaign["runs"]:
        assert total(run) <= 2


async def _at_least(e2e: Any, admin: str, cid: str, n: int) -> bool:
    return await run_count(e2e, admin, cid) >= n


def _flush() -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


async def test_beat_restart_and_redis_flush_lose_and_duplicate_nothing(
    e2e, admin, template, settings, beat
):
    created = await create(
        e2e,
        admin,
        template,
        schedule={"everySeconds": 2, "maxRuns": 4},
        audience={"userIds": ALL_USERS},
    )
    cid = created["id"]
    await eventually(lambda: _at_least(e2e, admin, cid, 1), timeout=15)
    # Beat down and Redis emptied across a scheduled time: the restarted beat rebuilds the
    # entry from PostgreSQL and the missed run goes out late, once.
    await asyncio.to_thread(beat.stop)
    _flush()
    assert armed(settings, cid) is None
    await asyncio.sleep(2.5)
    await asyncio.to_thread(beat.restart)
    await eventually(lambda: _at_least(e2e, admin, cid, 3), timeout=20)
    # Redis emptied under a running beat: it notices and rebuilds without a restart.
    _flush()
    campaign = await until_status(e2e, admin, cid, "COMPLETED", timeout=30)
    runs = campaign["runs"]
    assert len(runs) == 4
    assert len({r["scheduledFor"] for r in runs}) == 4
    assert [(r["recipients"], sent(r), total(r)) for r in runs] == [(5, 5, 5)] * 4
    assert any("Redis has lost the schedule" in line for line in beat.lines)


async def test_two_beats_fire_each_run_once_and_the_second_takes_over(
    e2e, admin, template, settings, worker_env, beat
):
    second = await asyncio.to_thread(Process, ["beat"], worker_env, ready="beat: Starting")
    try:
        created = await create(e2e, admin, template, schedule={"everySeconds": 1, "maxRuns": 3})
        campaign = await until_status(e2e, admin, created["id"], "COMPLETED", timeout=30)
        assert len(campaign["runs"]) == 3
        assert [sent(r) for r in campaign["runs"]] == [2, 2, 2]
        assert not any("Sending due task" in line for line in second.lines)
        # The leader goes away: the second beat takes the lock and fires the next campaign.
        await asyncio.to_thread(beat.stop)
        at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
        later = await create(e2e, admin, template, schedule={"at": at.isoformat()})
        await until_status(e2e, admin, later["id"], "COMPLETED", timeout=30)
        assert any("Sending due task campaign:" in line for line in second.lines)
    finally:
        await asyncio.to_thread(second.stop)
        await asyncio.to_thread(beat.restart)


async def test_test_send_reaches_only_the_tester_even_when_opted_out(
    e2e, admin, template, settings, beat
):
    prefs = """mutation($input: PreferencesInput!) { setPreferences(input: $input) {
      __typename } }"""
    await e2e(prefs, {"input": {"userId": "u-chen", "disabledEventTypes": ["promo"]}}, token=admin)
    created = await create(
        e2e, admin, template, draft=True, audience={"userIds": ["u-alice", "u-chen"]}
    )
    body = await e2e(SEND_NOW, {"id": created["id"], "user": "u-chen"}, token=admin)
    assert body["data"]["sendCampaignNow"]["kind"] == "TEST"

    async def test_run_sent() -> dict[str, Any] | None:
        campaign = await fetch(e2e, admin, created["id"])
        runs = [r for r in campaign["runs"] if r["kind"] == "TEST" and sent(r) == 1]
        return runs[0] if runs else None

    run = await eventually(test_run_sent, timeout=20)
    assert (run["recipients"], run["testUserId"], total(run)) == (1, "u-chen", 1)
    campaign = await fetch(e2e, admin, created["id"])
    assert campaign["status"] == "DRAFT"

    # The real audience: the opted-out user is skipped, the other receives it.
    await e2e(_op("resumeCampaign"), {"id": created["id"]}, token=admin)
    campaign = await until_status(e2e, admin, created["id"], "COMPLETED")
    [scheduled] = [r for r in campaign["runs"] if r["kind"] == "SCHEDULED"]
    assert {(c["status"], c["count"]) for c in scheduled["counts"]} == {
        ("SENT", 1),
        ("SKIPPED", 1),
    }
    await e2e(prefs, {"input": {"userId": "u-chen", "disabledEventTypes": []}}, token=admin)


async def test_quiet_hours_hold_non_critical_deliveries_until_they_end(
    e2e, admin, template, settings, engine, beat
):
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
    }
    prefs = """mutation($input: PreferencesInput!) { setPreferences(input: $input) {
      __typename ... on Preferences { quietHours { start end } timezone } } }"""
    saved = await e2e(
        prefs,
        {"input": {"userId": "u-dana", "quietHours": window, "timezone": "Europe/Lisbon"}},
        token=admin,
    )
    assert saved["data"]["setPreferences"]["quietHours"] == window
    send = """mutation($input: EventInput!) { sendEvent(input: $input) {
      ... on EventAccepted { eventId } } }"""
    accepted = await e2e(
        send,
        {
            "input": {
                "type": "quiet.test",
                "userIds": ["u-dana", "u-alice"],
                "templateSlug": template,
                "channels": ["IN_APP"],
                "payload": {"offer": "later"},
            }
        },
        token=token_for(settings, "service", sub="svc"),
    )
    event_id = accepted["data"]["sendEvent"]["eventId"]
    query = """query($id: ID!) { event(id: $id) { deliveries { userId status
      timeline { status reason } } } }"""

    async def states() -> dict[str, Any]:
        body = await e2e(query, {"id": event_id}, token=admin)
        return {d["userId"]: d for d in body["data"]["event"]["deliveries"]}

    await eventually(lambda: _status_is(states, "u-alice", "SENT"), timeout=20)
    await asyncio.sleep(1.5)
    dana = (await states())["u-dana"]
    assert dana["status"] == "QUEUED"
    assert "quiet hours" in dana["timeline"][0]["reason"]
    sql = "SELECT due_at FROM scheduled_events WHERE envelope->>'id' = :id"
    due = await scalar(engine, sql, id=event_id)
    assert timedelta(minutes=55) < due - now <= timedelta(hours=1, minutes=1)
    async with engine.connect() as conn:
        # Time passes: the window ends now.
        await conn.execute(
            text("UPDATE scheduled_events SET due_at = now() WHERE envelope->>'id' = :id"),
            {"id": event_id},
        )
        await conn.commit()
    await eventually(lambda: _status_is(states, "u-dana", "SENT"), timeout=20)
    await e2e(prefs, {"input": {"userId": "u-dana", "quietHours": None}}, token=admin)


async def _status_is(states: Any, user: str, status: str) -> bool:
    return bool((await states()).get(user, {}).get("status") == status)
