"""Send a message from the admin page and watch it arrive: in the live feed, in history with
its timeline and attempts, and in a real mailbox."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from playwright.async_api import BrowserContext, Page, Request, WebSocket, expect

from tests.admin.conftest import (
    Console,
    Stack,
    WorkerStack,
    create_template,
    go,
    new_tab,
    screenshot,
    sign_in,
)

RECIPIENT = "demo-user-emma"  # in the stand-in's bundled demo users
RECIPIENT_EMAIL = "emma.walker@example.com"


async def test_send_a_message_and_watch_it_in_the_live_feed_and_history(
    page: Page,
    context: BrowserContext,
    console: Console,
    stack: Stack,
    worker_stack: WorkerStack,
    admin_token: str,
) -> None:
    slug = f"admin-e2e-{uuid.uuid4().hex[:8]}"
    code = uuid.uuid4().hex[:6]
    content = [
        {
            "channel": "EMAIL",
            "subject": "Hello {{ user.first_name }}",
            "body": "Your code is {{ payload.code }}.",
        }
    ]
    await create_template(stack, admin_token, slug, "Your code", content)

    # The live feed is open in another tab before anything is sent. Everything that tab asks
    # over HTTP, and every message its WebSocket receives, is recorded.
    feed = await new_tab(context, console)
    queries: list[str] = []
    streamed: list[dict[str, Any]] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/graphql") and request.method == "POST":
            queries.append(json.loads(request.post_data or "{}").get("query", ""))

    def on_frame(frame: str | bytes) -> None:
        message = json.loads(frame)
        update = (message.get("payload") or {}).get("data", {}) or {}
        if message.get("type") == "next" and "deliveryUpdates" in update:
            streamed.append(update["deliveryUpdates"])

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framereceived", on_frame)

    feed.on("request", on_request)
    feed.on("websocket", on_websocket)
    await sign_in(feed, stack, admin_token, "#/live")
    state = feed.locator("#live-state")
    await expect(state).to_have_attribute("data-state", "streaming")
    await expect(state).to_have_attribute("data-mode", "subscription")
    await expect(feed.locator("#live-mode")).to_contain_text("stream in as the workers report")

    await sign_in(page, stack, admin_token, "#/send")
    await page.select_option("#send-template", slug)
    # Only the template's channels can be picked.
    await expect(page.locator("#send-channel-SMS")).to_be_disabled()
    await page.check("#send-channel-EMAIL")
    await page.fill("#send-recipients", RECIPIENT)
    await page.fill("#send-payload", f'{{"code": "{code}"}}')
    await page.click("#send-submit")
    event_id = await page.locator("#sent-event-id").text_content()
    assert event_id
    await expect(page.locator("#send-result")).to_contain_text(
        "Accepted for delivery to 1 recipient"
    )
    await screenshot(page, "send", full_page=True)

    # The live feed shows the delivery, and its row moves through the statuses to "sent".
    item = feed.locator(f".feed-item[data-event-id='{event_id}']")
    await expect(item).to_have_attribute("data-status", "SENT", timeout=30_000)
    await expect(item).to_have_count(1)
    await expect(item).to_have_attribute("data-trail", "QUEUED SENDING SENT")
    await expect(item.locator(".badge")).to_have_text("Sent")
    await expect(item.locator(".feed-trail")).to_have_text(" · Queued → Sending → Sent")
    await expect(item).to_contain_text(RECIPIENT)
    await expect(feed.locator(".feed-health")).to_contain_text("Last update at")
    await expect(state).to_have_attribute("data-state", "streaming")
    # ...from the subscription: every status came over the WebSocket, and the feed never polled.
    mine = [u for u in streamed if u["eventId"] == event_id]
    assert [u["status"] for u in mine] == ["QUEUED", "SENDING", "SENT"], streamed
    assert {u["userId"] for u in mine} == {RECIPIENT}
    assert queries, "the feed tab's requests were not recorded"
    assert not [q for q in queries if "deliveries" in q], queries
    await screenshot(feed, "live-feed")

    # History, filtered by the event, has it with its timeline and attempts.
    await page.click("#sent-history-link")
    row = page.locator(f"#history-table tr[data-event-id='{event_id}']")
    await expect(row).to_have_count(1)
    await expect(row).to_have_attribute("data-status", "SENT")
    await expect(page.locator("#filter-eventId")).to_have_value(event_id)
    await screenshot(page, "history")
    await row.locator("button.link").click()
    drawer = page.locator("#delivery-drawer")
    await expect(drawer).to_be_visible()
    await expect(drawer.locator("#drawer-title")).to_be_focused()
    await expect(drawer.locator("#delivery-timeline li[data-status='SENT']")).to_have_count(1)
    await expect(drawer.locator("#delivery-timeline li[data-status='QUEUED']")).to_have_count(1)
    await expect(drawer.locator("#delivery-attempts tbody tr")).to_have_count(1)
    await expect(drawer.locator("#delivery-attempts")).to_contain_text("Delivered")
    await expect(drawer).to_contain_text("1 delivery for event")
    await screenshot(page, "history-drawer")
    await page.keyboard.press("Escape")
    await expect(drawer).to_have_count(0)
    await expect(row.locator("button.link")).to_be_focused()

    # And the mail really went out.
    for _ in range(50):
        if worker_stack.smtp.to(RECIPIENT_EMAIL):
            break
        await asyncio.sleep(0.1)
    mails = [m for m in worker_stack.smtp.to(RECIPIENT_EMAIL) if code in m.as_string()]
    assert len(mails) == 1
    assert mails[0]["Subject"] == "Hello Emma"

    # A filter that matches nothing says so.
    await go(page, "#/history?eventId=00000000-0000-0000-0000-000000000000")
    await expect(page.locator(".empty-state")).to_contain_text("No deliveries match these filters.")
    # Still no polling, however long the feed stayed open.
    assert not [q for q in queries if "deliveries" in q], queries
    await feed.close()
