"""Webhook endpoints from the admin page: registered (a refused URL named at its field), the
signing secret shown, status changes posted by a real worker to a real HTTP server and
verified with that secret, each POST listed in the endpoint's log, paused, edited, and
deleted; a manager's navigation has no webhooks screen."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import Page, expect
from standardwebhooks import Webhook

from tests.admin.conftest import Stack, admin_screen, graphql, screenshot, sign_in, token
from tests.factories import CREATE_TEMPLATE, template_input
from tests.http_stubs import QuietHandler, serve
from tests.pipeline.servers import eventually
from tests.processes import Process

RECIPIENT = "demo-user-emma"  # in the stand-in's bundled demo users
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message } } }"""
ENDPOINTS = "{ webhookEndpoints { id url } }"
LOG = "query($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id } } } }"
DELETE = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename } }"


class Receiver:
    """A real HTTP server recording each POST (headers, body); answers 204."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.posts.append(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                    )
                self.reply(204, b"")

        self.server, self.url = serve(Handler)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts)


@pytest.fixture
def receiver(stack: Stack, admin_token: str) -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    # An endpoint the test left (it failed before deleting it) must not outlive it: the
    # database is shared with other suites' workers.
    admin = token("hooks-cleanup", "admin")

    async def cleanup() -> None:
        for endpoint in (await graphql(stack, ENDPOINTS, {}, admin))["webhookEndpoints"]:
            if endpoint["url"].startswith(server.url):
                await graphql(stack, DELETE, {"id": endpoint["id"]}, admin)

    asyncio.run(cleanup())


@pytest.fixture
def worker(stack: Stack) -> Iterator[Process]:
    """A worker beside the stack's API (same database, RabbitMQ virtual host and Redis),
    reading the webhook endpoints afresh every 0.2 s."""
    env = {
        **stack.api.env,
        "HERALD_WEBHOOK_CACHE_SECONDS": "0.2",
        "HERALD_WORKER_METRICS_PORT": "0",
        "HERALD_LOG_LEVEL": "INFO",
    }
    process = Process(["worker", "--concurrency", "1"], env, ready="ready.")
    yield process
    process.stop()


async def test_an_endpoint_is_registered_hears_a_delivery_and_is_paused_edited_and_deleted(
    page: Page, stack: Stack, receiver: Receiver, worker: Process
) -> None:
    event_type = f"hooks.{uuid.uuid4().hex[:8]}"
    admin = token("hooks-admin", "admin")
    await admin_screen(page, stack, admin, "webhooks", "Webhooks")

    # A URL the API refuses: the error at its field, the dialog still open.
    await page.click("#new-webhook")
    await page.fill("#webhook-url", "ftp://example.com/hooks")
    await page.click("#webhook-save")
    await expect(page.locator("#webhook-url-error")).to_contain_text("absolute")
    await expect(page.locator("#webhook-url")).to_have_attribute("aria-invalid", "true")
    url = f"{receiver.url}/hooks/{uuid.uuid4().hex[:6]}"
    await page.fill("#webhook-url", url)
    await page.fill("#webhook-description", "Order service")
    await page.fill("#webhook-event-types", event_type)
    await page.check("#webhook-engagement-clicked")
    await page.click("#webhook-save")

    # The signing secret, with a way to copy it.
    secret_box = page.locator("#webhook-secret")
    await expect(secret_box).to_have_value(re.compile(r"^whsec_[A-Za-z0-9+/=]{32,}$"))
    secret = await secret_box.input_value()
    await screenshot(page, "webhook-registered")
    await page.click("#webhook-secret-done")
    await expect(page.locator("#webhook-secret-dialog")).to_have_count(0)

    row = page.locator("#webhooks-table tr", has_text=url)
    await expect(row.locator(".endpoint-url")).to_contain_text("Order service")
    await expect(row.locator(".endpoint-types")).to_have_text(event_type)
    await expect(row.locator(".endpoint-statuses")).to_have_text("All")
    await expect(row.locator(".endpoint-engagements")).to_have_text("Clicks")
    await expect(row.locator(".endpoint-state")).to_have_text("Active")
    endpoint_id = await row.get_attribute("data-endpoint-id")
    # The secret can be read again by an admin.
    await row.locator(".show-secret").click()
    await expect(page.locator("#webhook-secret")).to_have_value(secret)
    await page.click("#webhook-secret-done")

    # A delivery of that event type: the worker posts its status changes, signed.
    slug = f"hooks-{uuid.uuid4().hex[:8]}"
    content = [
        {"channel": "IN_APP", "locale": "en", "title": "Order shipped", "body": "On its way."}
    ]
    created = await graphql(
        stack, CREATE_TEMPLATE, {"input": template_input(slug, content=content)}, admin
    )
    assert created["createTemplate"]["__typename"] == "Template", created
    event = {
        "type": event_type,
        "userIds": [RECIPIENT],
        "templateSlug": slug,
        "channels": ["IN_APP"],
    }
    sent = await graphql(stack, SEND, {"input": event}, token("orders", "service"))
    assert sent["sendEvent"]["__typename"] == "EventAccepted", sent
    event_id = sent["sendEvent"]["eventId"]

    async def delivered_posted() -> list[dict[str, Any]]:
        changes = [
            item
            for post in receiver.received()
            for item in json.loads(post["body"])["data"]
            if item["event_id"] == event_id
        ]
        return changes if any(c["status"] in ("sent", "delivered") for c in changes) else []

    changes = await eventually(delivered_posted, timeout=30, interval=0.2)
    assert {(c["event_type"], c["user_id"]) for c in changes} == {(event_type, RECIPIENT)}
    for post in receiver.received():
        Webhook(secret).verify(post["body"], post["headers"])  # raises if not signed with it

    # The log lists each POST, with the endpoint's answer (the worker writes its log row
    # once the answer is in: the page is opened when the API lists them all).
    posts = len(receiver.received())

    async def all_logged() -> bool:
        log = await graphql(stack, LOG, {"id": endpoint_id}, admin)
        return len(log["webhookDeliveries"]["edges"]) == posts

    await eventually(all_logged, timeout=30, interval=0.2)
    await row.locator(".show-log").click()
    log_rows = page.locator("#webhook-log-table tbody tr")
    await expect(log_rows.first).to_be_visible()
    await expect(log_rows).to_have_count(posts)
    await expect(log_rows.first.locator(".attempt-result")).to_have_text("HTTP 204")
    message_ids = {p["headers"]["webhook-id"] for p in receiver.received()}
    shown = {await r.get_attribute("data-message-id") for r in await log_rows.all()}
    assert shown == message_ids
    await screenshot(page, "webhook-log")
    await page.locator("#webhook-log-dialog .dialog-actions .btn.primary").click()

    # Paused: it gets nothing until resumed.
    await row.locator(".toggle-endpoint").click()
    await expect(row.locator(".endpoint-state")).to_have_text("Paused")
    await expect(row.locator(".toggle-endpoint")).to_have_text("Resume")

    # Edited: the statuses narrowed; the secret stays as it was.
    await row.locator(".edit-endpoint").click()
    await expect(page.locator("#webhook-url")).to_have_value(url)
    await expect(page.locator("#webhook-engagement-clicked")).to_be_checked()
    await page.check("#webhook-status-dead")
    await page.click("#webhook-save")
    await expect(row.locator(".endpoint-statuses")).to_have_text("Failed for good")
    await row.locator(".show-secret").click()
    await expect(page.locator("#webhook-secret")).to_have_value(secret)
    await page.click("#webhook-secret-done")
    await screenshot(page, "webhooks")

    # Deleted after a confirmation.
    await row.locator(".delete-endpoint").click()
    await page.click("#webhook-delete-confirm")
    await expect(
        page.locator(f"#webhooks-table tr[data-endpoint-id='{endpoint_id}']")
    ).to_have_count(0)
    left = (await graphql(stack, ENDPOINTS, {}, admin))["webhookEndpoints"]
    assert endpoint_id not in {e["id"] for e in left}


async def test_a_manager_has_no_webhooks_screen(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, token("hooks-manager", "manager"), "#/overview")
    await expect(page.locator(".nav a[data-nav='overview']")).to_be_visible()
    await expect(page.locator(".nav a[data-nav='webhooks']")).to_be_hidden()
