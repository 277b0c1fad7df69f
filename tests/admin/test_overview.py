"""The overview, the first screen after sign-in: a seeded history's numbers in its figures,
charts and tables for the last hour, day and week; RabbitMQ's queue depths; and the live
counters moving when a real worker delivers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.db.history.base import DeliveryRecord, DeliveryStatus
from backend.db.history.postgres import PostgresHistoryStore
from backend.queues import WEBHOOKS
from tests.admin.conftest import (
    NARROW,
    Stack,
    WorkerStack,
    create_template,
    graphql,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.factories import tried_delivery

S = DeliveryStatus


def seeded_history(now: datetime) -> list[DeliveryRecord]:
    """Seven deliveries in the last hour, two more in the last day, one more in the week."""

    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    d, C = tried_delivery, Channel
    return [
        d("ov-1", ago(5), C.EMAIL, S.SENT, "user_registered", [("smtp", True)]),
        d("ov-2", ago(5), C.EMAIL, S.SENT, "movie_added",
          [("smtp", False), ("smtp-backup", True)], "c-spring"),
        d("ov-3", ago(12), C.EMAIL, S.FAILED, "movie_added", [("smtp", False)], "c-spring"),
        d("ov-4", ago(20), C.SMS, S.DEAD, "user_registered", [("twilio", False)] * 3),
        d("ov-5", ago(20), C.SMS, S.SENT, "movie_added", [("twilio", True)], "c-spring"),
        d("ov-6", ago(30), C.PUSH, S.SKIPPED, "password_reset", []),
        d("ov-7", ago(40), C.IN_APP, S.SENT, "movie_added", [("redis", True)], "c-autumn"),
        d("ov-8", ago(180), C.EMAIL, S.SENT, "user_registered", [("smtp", True)]),
        d("ov-9", ago(181), C.EMAIL, S.SENT, "user_registered", [("smtp", True)]),
        d("ov-10", ago(3 * 24 * 60), C.EMAIL, S.DEAD, "user_registered", [("smtp", False)] * 3),
    ]  # fmt: skip


@pytest.fixture
async def seeded(engine: AsyncEngine) -> AsyncIterator[datetime]:
    """The history holds only the seed, and two dead letters wait for a replay. Yields the
    seed's "now": the middle of the current minute, clear of the buckets' edges."""
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE deliveries, dead_letters"))
        await conn.execute(
            text(
                "INSERT INTO dead_letters (delivery_id, event_id, event_type, user_id, channel,"
                " envelope, error, attempts) VALUES"
                " ('ov-dl-1', 'e', 't', 'u', 'email', '{}', 'refused', 3),"
                " ('ov-dl-2', 'e', 't', 'u', 'sms', '{}', 'refused', 3)"
            )
        )
    await PostgresHistoryStore(engine).add(seeded_history(now))
    yield now
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM dead_letters WHERE delivery_id LIKE 'ov-%'"))


def minute_of(now: datetime, minutes_ago: float) -> str:
    """The bucket (a minute) of a delivery made ``minutes_ago``, as the page's ISO string."""
    at = now - timedelta(minutes=minutes_ago)
    return at.replace(second=0).strftime("%Y-%m-%dT%H:%M:00.000Z")


async def kpi(page: Page, name: str) -> str:
    return (await page.locator(f"#kpi-{name} .kpi-value").text_content()) or ""


async def test_the_overview_shows_the_seeded_history(
    page: Page, stack: Stack, admin_token: str, seeded: datetime
) -> None:
    # Two messages wait in a work queue nobody consumes here.
    connection = await aio_pika.connect(stack.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        webhooks = await channel.declare_queue(WEBHOOKS, passive=True)
        await webhooks.purge()
        for n in range(2):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{n}".encode()), routing_key=WEBHOOKS
            )
        try:
            await sign_in(page, stack, admin_token)
            await expect(page.locator("h1")).to_have_text("Overview")
            await expect(page.locator("#overview-window")).to_have_attribute("data-loaded", "hour")
            queue_row = page.locator(f"#queues-table tr[data-queue='{WEBHOOKS}']")
            await expect(queue_row.locator(".messages")).to_have_text("2")
        finally:
            await webhooks.purge()

    # The last hour: the figures...
    assert [await kpi(page, k) for k in ("total", "sent", "failed", "dead", "skipped")] == [
        "7", "4", "1", "1", "1",
    ]  # fmt: skip
    await expect(page.locator("#kpi-failure-rate .kpi-value")).to_have_text("33.3 %")
    await expect(page.locator("#kpi-dead-letters .kpi-value")).to_have_text("2")
    # ...the charts, drawn by uPlot, with one series per status or channel that has deliveries...
    status_chart = page.locator("#chart-status .uplot")
    await expect(status_chart).to_have_attribute("data-series", "SENT FAILED SKIPPED DEAD")
    await expect(status_chart.locator("canvas")).to_have_count(1)
    channel_chart = page.locator("#chart-channel .uplot")
    await expect(channel_chart).to_have_attribute("data-series", "EMAIL SMS PUSH IN_APP")
    # ...whose numbers the table under each chart lists per minute.
    bucket = page.locator(f"#chart-status-table tr[data-bucket='{minute_of(seeded, 20)}']")
    await expect(bucket.locator("[data-series='SENT']")).to_have_text("1")
    await expect(bucket.locator("[data-series='DEAD']")).to_have_text("1")
    await expect(bucket.locator("[data-series='FAILED']")).to_have_text("0")
    email = page.locator(
        f"#chart-channel-table tr[data-bucket='{minute_of(seeded, 5)}'] [data-series='EMAIL']"
    )
    await expect(email).to_have_text("2")
    await expect(page.locator("#chart-status-table tbody tr")).to_have_count(5)

    # Failure rates: failed and dead out of the deliveries with an outcome.
    rates = page.locator("#rates-channel tbody tr")
    await expect(rates).to_have_count(3)  # push has only a skipped delivery: no outcome
    for channel_name, outcomes, failures, rate in [
        ("EMAIL", "3", "1", "33.3 %"),
        ("SMS", "2", "1", "50.0 %"),
        ("IN_APP", "1", "0", "0.0 %"),
    ]:
        row = page.locator(f"#rates-channel tr[data-channel='{channel_name}']")
        assert [
            await row.locator(c).text_content() for c in (".outcomes", ".failures", ".rate")
        ] == [outcomes, failures, rate]
    for provider, rate in [("smtp", "50.0 %"), ("smtp-backup", "0.0 %"), ("twilio", "50.0 %")]:
        row = page.locator(f"#rates-provider tr[data-provider='{provider}'] .rate")
        await expect(row).to_have_text(rate)

    # The busiest event types and campaigns, busiest first.
    types = page.locator("#top-event-types li")
    await expect(types).to_have_count(3)
    assert await types.evaluate_all("(items) => items.map((i) => i.textContent)") == [
        "movie_added4",
        "user_registered2",
        "password_reset1",
    ]
    campaigns = page.locator("#top-campaigns li")
    assert await campaigns.evaluate_all("(items) => items.map((i) => i.dataset.campaignId)") == [
        "c-spring",
        "c-autumn",
    ]
    await expect(
        page.locator("#top-campaigns li[data-campaign-id='c-spring'] a")
    ).to_have_attribute("href", "#/campaigns/c-spring")
    await screenshot(page, "overview", full_page=True)

    # The last day and the last week take in the older deliveries.
    await page.click("[data-range='day']")
    await expect(page.locator("#overview-window")).to_have_attribute("data-loaded", "day")
    assert [await kpi(page, k) for k in ("total", "sent", "dead")] == ["9", "6", "1"]
    await page.click("[data-range='week']")
    await expect(page.locator("#overview-window")).to_have_attribute("data-loaded", "week")
    assert [await kpi(page, k) for k in ("total", "sent", "dead")] == ["10", "6", "2"]
    await expect(page.locator("#kpi-failure-rate .kpi-value")).to_have_text("33.3 %")
    await expect(page.locator("[data-range='week']")).to_have_attribute("aria-pressed", "true")

    # At a tablet's width nothing scrolls sideways.
    await page.set_viewport_size(NARROW)
    await page.click("[data-range='hour']")
    await expect(page.locator("#overview-window")).to_have_attribute("data-loaded", "hour")
    assert await sideways_overflow(page) <= 0


SEND = """mutation($input: EventInput!) {
  sendEvent(input: $input) {
    __typename ... on EventAccepted { eventId } ... on Error { code message }
  }
}"""


async def test_the_live_counters_move_when_a_delivery_happens(
    page: Page, stack: Stack, worker_stack: WorkerStack, admin_token: str, seeded: datetime
) -> None:
    slug = f"overview-{uuid.uuid4().hex[:8]}"
    content = [{"channel": "EMAIL", "subject": "Ping", "body": "Hello {{ user.first_name }}."}]
    await create_template(stack, admin_token, slug, "Ping", content)

    await sign_in(page, stack, admin_token)
    await expect(page.locator("#overview-live-state")).to_have_attribute("data-state", "streaming")
    await expect(page.locator("#live-sent .kpi-value")).to_have_text("0")
    await expect(page.locator("#kpi-total .kpi-value")).to_have_text("7")
    # The worker consumes the email queue.
    consumers = page.locator("#queues-table tr[data-queue='herald.deliver.email'] .consumers")
    await expect(consumers).not_to_have_text("0")

    sent = await graphql(
        stack,
        SEND,
        {"input": {"type": "overview_ping", "userIds": ["demo-user-emma"],
                   "templateSlug": slug, "channels": ["EMAIL"]}},
        admin_token,
    )  # fmt: skip
    assert sent["sendEvent"]["__typename"] == "EventAccepted", sent

    # The counters move as the worker reports each status, without reloading anything.
    await expect(page.locator("#live-sent .kpi-value")).to_have_text("1", timeout=30_000)
    await expect(page.locator("#live-queued .kpi-value")).to_have_text("1")
    await expect(page.locator("#live-sending .kpi-value")).to_have_text("1")
    await expect(page.locator("#live-dead .kpi-value")).to_have_text("0")
    await screenshot(page, "overview-live")
    # Refreshed, the hour counts the new delivery too.
    await page.click("#overview-refresh")
    await expect(page.locator("#kpi-total .kpi-value")).to_have_text("8")
    await expect(page.locator("#kpi-sent .kpi-value")).to_have_text("5")
