"""The Recipients screen: search, a sync from the auth-service stand-in with its progress, one
recipient's profile, addresses (a disabled one with its reason), preferences, topics and recent
deliveries, forgetting a user behind a typed confirmation, and what a manager may not do."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.services import recipients as recipient_service
from tests.admin.conftest import Stack, WorkerStack, go, graphql, screenshot, sign_in, token
from tests.recipients.test_api import web_push

IDENTIFY = """mutation($i: IdentifyRecipientInput!) { identifyRecipient(input: $i) {
  __typename ... on Error { code message field } } }"""
PREFERENCES = """mutation($i: PreferencesInput!) { setPreferences(input: $i) {
  __typename ... on Error { code message field } } }"""
CREATE_TOPIC = """mutation($i: CreateTopicInput!) { createTopic(input: $i) {
  __typename ... on Error { code message } } }"""
ADD_TO_TOPIC = """mutation($k: String!, $ids: [String!]!) { addToTopic(key: $k, userIds: $ids) {
  __typename } }"""
CREATE_TEMPLATE = """mutation($input: CreateTemplateInput!) {
  createTemplate(input: $input) { __typename ... on Error { code message } } }"""
SEND = """mutation($i: EventInput!) { sendEvent(input: $i) {
  __typename ... on EventAccepted { eventId } ... on Error { code message } } }"""
PROFILE = {"email": "james.carter@example.org", "firstName": "James", "lastName": "Carter"}
GONE = "410 Gone: the subscription has expired or was unsubscribed"


def quiet_hours() -> dict[str, str]:
    """An hour of quiet hours (UTC) that starts two hours from now: sends go out meanwhile."""
    start = datetime.now(UTC) + timedelta(hours=2)
    return {"start": f"{start:%H}:00", "end": f"{start + timedelta(hours=1):%H}:00"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def identify(stack: Stack, bearer: str, user_id: str, **fields: Any) -> None:
    result = await graphql(stack, IDENTIFY, {"i": {"userId": user_id, **fields}}, bearer)
    assert result["identifyRecipient"]["__typename"] == "Recipient", result


async def recipient_with_a_disabled_address(
    stack: Stack, engine: AsyncEngine, bearer: str, user_id: str, **profile: str
) -> str:
    """The user with a chat address and a browser whose push service said it is gone, no SMS,
    quiet hours, and in a topic; returns the topic's key."""
    gone = web_push(f"https://push.example.com/send/{uuid.uuid4().hex}")
    addresses = [{"webPush": gone}, {"chat": {"provider": "slack", "chatId": "U42JAMES"}}]
    await identify(stack, bearer, user_id, addresses=addresses, **profile)
    async with AsyncSession(engine) as session:
        disabled = await recipient_service.disable_web_push(
            session, reasons={gone["endpoint"]: GONE}
        )
        await session.commit()
    assert disabled == 1
    prefs = {"userId": user_id, "disabledChannels": ["SMS"], "quietHours": quiet_hours()}
    changed = await graphql(stack, PREFERENCES, {"i": prefs}, bearer)
    assert changed["setPreferences"]["__typename"] == "Preferences", changed
    key = unique("release-notes")
    created = await graphql(
        stack, CREATE_TOPIC, {"i": {"key": key, "name": "Release notes"}}, bearer
    )
    assert created["createTopic"]["__typename"] == "Topic", created
    await graphql(stack, ADD_TO_TOPIC, {"k": key, "ids": [user_id]}, bearer)
    return key


async def send_email(stack: Stack, bearer: str, user_id: str, event_type: str) -> str:
    slug = unique("welcome")
    content = [{"channel": "EMAIL", "subject": "Hi {{ user.first_name }}", "body": "Welcome."}]
    created = await graphql(
        stack, CREATE_TEMPLATE, {"input": {"slug": slug, "name": "Hi", "content": content}}, bearer
    )
    assert created["createTemplate"]["__typename"] == "Template", created
    event = {"type": event_type, "userIds": [user_id], "templateSlug": slug, "channels": ["EMAIL"]}
    sent = await graphql(stack, SEND, {"i": event}, bearer)
    assert sent["sendEvent"]["__typename"] == "EventAccepted", sent
    event_id: str = sent["sendEvent"]["eventId"]
    return event_id


async def test_search_finds_a_recipient_by_an_email_fragment(
    page: Page, stack: Stack, admin_token: str
) -> None:
    user_id = unique("search")
    fragment = uuid.uuid4().hex[:10]
    await identify(
        stack, admin_token, user_id, email=f"nina.{fragment}@example.org", firstName="Nina"
    )
    await identify(stack, admin_token, unique("other"), email="someone.else@example.org")

    await sign_in(page, stack, admin_token, "#/recipients")
    await expect(page.locator("a[data-nav='recipients']")).to_have_attribute("aria-current", "page")
    await page.fill("#recipient-search", fragment[2:8])
    await page.press("#recipient-search", "Enter")
    rows = page.locator("#recipients-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-user-id", user_id)
    await expect(rows.first).to_contain_text(f"nina.{fragment}@example.org")
    await expect(rows.first).to_contain_text("Nina")
    await expect(rows.first).to_contain_text("identify")
    assert f"search={fragment[2:8]}" in page.url

    await page.fill("#recipient-search", unique("nobody"))
    await page.press("#recipient-search", "Enter")
    await expect(page.locator(".empty-state")).to_contain_text("No recipient matches this search.")


async def test_a_sync_shows_its_progress_and_ends_with_the_count(
    page: Page, stack: Stack, worker_stack: WorkerStack, admin_token: str
) -> None:
    await sign_in(page, stack, admin_token, "#/recipients")
    await page.click("#sync-recipients")
    progress = page.locator("#sync-progress")
    # The job as the mutation returned it, until the first poll a second later.
    await expect(progress).to_have_attribute("data-status", re.compile("PENDING|RUNNING"))
    await expect(progress).to_contain_text(re.compile("Sync queued|Syncing"))
    await expect(page.locator("#sync-recipients")).to_be_disabled()
    await expect(progress).to_have_attribute("data-status", "SUCCEEDED", timeout=30_000)
    # The stand-in's twelve demo users, on one page.
    await expect(progress).to_contain_text("Sync finished: 12 recipients from 1 page.")
    await expect(page.locator("#sync-recipients")).to_be_enabled()
    await expect(page.locator("#recipients-table tr[data-user-id='demo-user-emma']")).to_have_count(
        1
    )
    await screenshot(page, "recipients")

    await page.fill("#recipient-search", "demo-user-")
    await page.press("#recipient-search", "Enter")
    emma = page.locator("#recipients-table tr[data-user-id='demo-user-emma']")
    await expect(emma).to_contain_text("emma.walker@example.com")
    await expect(emma).to_contain_text("auth")


async def test_the_detail_shows_addresses_preferences_topics_and_recent_deliveries(
    page: Page, stack: Stack, engine: AsyncEngine, worker_stack: WorkerStack, admin_token: str
) -> None:
    # A user only a service identified (the auth service does not know them): sends use the
    # profile kept here.
    user_id = unique("james")
    topic = await recipient_with_a_disabled_address(stack, engine, admin_token, user_id, **PROFILE)
    event_type = unique("welcome_back").replace("-", "_")
    event_id = await send_email(stack, admin_token, user_id, event_type)

    await sign_in(page, stack, admin_token, f"#/recipients?search={user_id}")
    await page.click(f"#recipients-table tr[data-user-id='{user_id}'] a")
    await expect(page.locator(".page-title")).to_contain_text(user_id)

    disabled = page.locator("#addresses-table tr[data-state='DISABLED']")
    await expect(disabled).to_have_count(1)
    await expect(disabled).to_contain_text("web push")
    await expect(disabled).to_contain_text("https://push.example.com/…")
    await expect(disabled.locator(".badge")).to_have_text("Disabled")
    await expect(disabled).to_contain_text(GONE)
    await expect(disabled).to_contain_text("since")
    active = page.locator("#addresses-table tr[data-state='ACTIVE']")
    await expect(active).to_have_count(1)
    await expect(active).to_contain_text("slack")
    await expect(active).to_contain_text("U42JAMES")
    # Disabled looks different from active, not only in words.
    colours = [
        await row.evaluate("(tr) => getComputedStyle(tr.querySelector('td')).backgroundColor")
        for row in (disabled, active)
    ]
    assert colours[0] != colours[1], colours

    prefs = page.locator("#recipient-preferences")
    await expect(prefs).to_contain_text("SMS")
    quiet = quiet_hours()
    await expect(prefs).to_contain_text(f"{quiet['start']}\N{EN DASH}{quiet['end']} (UTC)")
    await expect(page.locator("#recipient-topics")).to_contain_text(f"Release notes ({topic})")

    # The event's delivery appears once the worker has sent it (reload until it is there).
    delivered = page.locator(
        f"#recipient-deliveries tr[data-status='SENT']:has-text('{event_type}')"
    )
    for _ in range(30):
        if await delivered.count():
            break
        await page.wait_for_timeout(1000)
        await page.reload()
        await page.wait_for_selector("#recipient-recent")
    await expect(delivered).to_have_count(1)
    await expect(delivered).to_contain_text("Email")
    profile = page.locator("#recipient-profile")
    await expect(profile).to_contain_text("james.carter@example.org")
    await expect(profile).to_contain_text("James Carter")
    await expect(page.locator("#forget-recipient")).to_be_visible()
    await screenshot(page, "recipient-detail", full_page=True)

    # The delivery links to History, filtered by its event.
    await delivered.locator("a").click()
    await expect(page.locator("#filter-eventId")).to_have_value(event_id)
    await go(page, f"#/recipients/{user_id}")
    await page.click("#recipient-history-link")
    await expect(page.locator("#filter-userId")).to_have_value(user_id)


async def test_forgetting_needs_the_typed_id_then_the_user_is_gone(
    page: Page, stack: Stack, admin_token: str
) -> None:
    user_id = unique("leaving")
    chat = [{"chat": {"provider": "telegram", "chatId": "1234567"}}]
    await identify(stack, admin_token, user_id, email="leaving@example.org", addresses=chat)

    await sign_in(page, stack, admin_token, f"#/recipients/{user_id}")
    await expect(page.locator("#recipient-profile")).to_contain_text("leaving@example.org")
    await page.click("#forget-recipient")
    dialog = page.locator("#forget-dialog")
    await expect(dialog).to_be_visible()
    confirm = dialog.locator("#forget-confirm")
    await expect(confirm).to_be_disabled()
    await page.fill("#forget-confirm-id", user_id[:-1])
    await expect(confirm).to_be_disabled()
    await page.fill("#forget-confirm-id", user_id)
    await expect(confirm).to_be_enabled()
    await confirm.click()

    result = page.locator("#forget-result")
    await expect(result).to_contain_text(f"{user_id} was forgotten")
    await expect(result.locator("[data-count='recipients']")).to_have_text("1")
    await expect(result.locator("[data-count='addresses']")).to_have_text("1")
    await expect(page.locator("#forget-recipient")).to_have_count(0)

    await result.locator("a[href='#/recipients']").click()
    await page.fill("#recipient-search", user_id)
    await page.press("#recipient-search", "Enter")
    await expect(page.locator(".empty-state")).to_contain_text("No recipient matches this search.")
    await go(page, f"#/recipients/{user_id}")
    await expect(page.locator(".empty-state")).to_contain_text("No such recipient.")


async def test_a_manager_sees_a_recipient_but_cannot_forget_or_sync(
    page: Page, stack: Stack, engine: AsyncEngine, admin_token: str
) -> None:
    user_id = unique("managed")
    topic = await recipient_with_a_disabled_address(stack, engine, admin_token, user_id)

    await sign_in(page, stack, token("manager-tester", "manager"), "#/recipients")
    await expect(page.locator("#recipients-table")).to_be_visible()
    await expect(page.locator("#sync-recipients")).to_have_count(0)
    await go(page, f"#/recipients/{user_id}")
    await expect(page.locator("#addresses-table tr[data-state='DISABLED']")).to_contain_text(GONE)
    await expect(page.locator("#recipient-preferences")).to_contain_text("SMS")
    await expect(page.locator("#recipient-topics")).to_contain_text(topic)
    await expect(page.locator("#recipient-recent")).to_contain_text("Nothing delivered")
    await expect(page.locator("#forget-recipient")).to_have_count(0)
