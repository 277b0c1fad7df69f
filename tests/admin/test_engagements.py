"""Email opens and clicks in the admin page (a real Chromium): a delivery's opens and clicks
in its History timeline, next to its status changes, and a campaign run's opens and clicks in
the campaign's runs table. The opens and clicks are written to the history store as the
tracking endpoints write them (tests/orchestration/test_tracking.py covers the endpoints)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.db.history.base import (
    DeliveryRecord,
    DeliveryStatus,
    Engagement,
    EngagementKind,
    StatusChange,
)
from backend.db.history.postgres import PostgresHistoryStore
from tests.admin.conftest import Stack, WorkerStack, go, graphql, screenshot, sign_in
from tests.admin.test_campaigns import RECIPIENT, create_campaign, email_template
from tests.processes import Process

RUN_EVENTS = """query($id: ID!) { campaign(id: $id) { runs { eventId status
  counts { status count } } } }"""
DELIVERY_IDS = """query($e: ID!) { deliveries(filter: {eventId: $e}) { edges { node { id } } } }"""


async def test_opens_and_clicks_show_in_the_delivery_timeline(
    page: Page, stack: Stack, admin_token: str, engine: AsyncEngine
) -> None:
    store = PostgresHistoryStore(engine)
    at = datetime.now(UTC) - timedelta(minutes=10)
    event_id = str(uuid.uuid4())
    record = DeliveryRecord(
        id=f"d-{uuid.uuid4().hex[:12]}",
        event_id=event_id,
        event_type="movie_added",
        user_id="demo-user-emma",
        channel=Channel.EMAIL,
        created_at=at,
        updated_at=at + timedelta(seconds=2),
        status=DeliveryStatus.SENT,
        subject="New this week",
        timeline=[
            StatusChange(DeliveryStatus.QUEUED, at),
            StatusChange(DeliveryStatus.SENDING, at + timedelta(seconds=1)),
            StatusChange(DeliveryStatus.SENT, at + timedelta(seconds=2)),
        ],
    )
    assert await store.add([record]) == 1
    url = "https://shop.example/films/heat?src=mail"
    await store.add_engagement(
        record.id, Engagement(EngagementKind.OPENED, at + timedelta(minutes=3))
    )
    await store.add_engagement(
        record.id, Engagement(EngagementKind.CLICKED, at + timedelta(minutes=4), url=url)
    )

    await sign_in(page, stack, admin_token)
    await go(page, f"#/history?eventId={event_id}")
    row = page.locator(f"tr[data-delivery-id='{record.id}']")
    await expect(row).to_have_attribute("data-status", "SENT")
    await row.locator("button.link").click()

    timeline = page.locator("#delivery-drawer #delivery-timeline li")
    await expect(timeline).to_have_count(5)
    # Oldest first: the three status changes, then the open, then the click with its URL.
    kinds = [
        await item.get_attribute("data-status") or await item.get_attribute("data-engagement")
        for item in await timeline.all()
    ]
    assert kinds == ["QUEUED", "SENDING", "SENT", "OPENED", "CLICKED"]
    await expect(timeline.nth(3)).to_contain_text("Opened")
    await expect(timeline.nth(4)).to_contain_text("Clicked")
    await expect(timeline.nth(4)).to_contain_text(url)
    # An open is no status: the delivery still reads as sent.
    await expect(row.locator(".badge")).to_have_text("Sent")
    await screenshot(page, "history-drawer-engagements")


async def test_a_campaign_run_shows_its_opens_and_clicks(
    page: Page,
    stack: Stack,
    admin_token: str,
    worker_stack: WorkerStack,
    beat: Process,
    engine: AsyncEngine,
) -> None:
    slug = await email_template(stack, admin_token)
    made = await create_campaign(
        stack,
        admin_token,
        "Tracked",
        slug,
        audience={"userIds": [RECIPIENT, "demo-manager"]},
        payload={"offer": "two for one"},
    )
    await sign_in(page, stack, admin_token, f"#/campaigns/{made['id']}")
    run = page.locator("#runs-table tr.run[data-kind='SCHEDULED']")
    await expect(run).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    sent = run.locator("li[data-channel='EMAIL'] .count[data-status='SENT']")
    await expect(sent).to_have_attribute("data-count", "2", timeout=30_000)
    cell = run.locator("td.engagement")
    await expect(cell).to_have_text("—")

    [found] = (await graphql(stack, RUN_EVENTS, {"id": made["id"]}, admin_token))["campaign"][
        "runs"
    ]
    edges = (await graphql(stack, DELIVERY_IDS, {"e": found["eventId"]}, admin_token))[
        "deliveries"
    ]["edges"]
    first, second = sorted(e["node"]["id"] for e in edges)
    store = PostgresHistoryStore(engine)
    now = datetime.now(UTC)
    for delivery_id, kind in [
        (first, EngagementKind.OPENED),
        (first, EngagementKind.OPENED),
        (first, EngagementKind.CLICKED),
        (second, EngagementKind.OPENED),
    ]:
        url = "https://shop.example/" if kind is EngagementKind.CLICKED else None
        assert await store.add_engagement(delivery_id, Engagement(kind, now, url=url))

    await page.reload()
    await expect(cell).to_have_attribute("data-opens", "3")
    await expect(cell).to_have_attribute("data-unique-opens", "2")
    await expect(cell).to_have_attribute("data-clicks", "1")
    await expect(cell).to_contain_text("3 opens (2 unique)")
    await expect(cell).to_contain_text("1 click (1 unique)")
    # Opens and clicks never move a delivery: still two sent.
    await expect(sent).to_have_attribute("data-count", "2")
