"""``<herald-inbox>`` as a page uses it: one script tag from ``/sdk/herald-inbox.js``, a token,
and a real API, worker and browser. Notifications are sent through ``sendEvent`` and delivered
by the worker, as in production."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.admin.conftest import Stack, WorkerStack, graphql, token
from tests.clients.conftest import AXE, kill_api, new_user, start_api

CREATE_TEMPLATE = """mutation($input: CreateTemplateInput!) {
  createTemplate(input: $input) { __typename ... on Error { code message } } }"""
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message } } }"""
INBOX = "{ inbox(first: 50) { edges { node { id title } } } unreadCount }"
# What Chromium prints while the API is down: expected in the restart test only.
DOWN_NOISE = ("WebSocket connection to", "ERR_CONNECTION_REFUSED", "Failed to fetch")


@pytest.fixture(scope="module")
async def template(stack: Stack) -> str:
    """An in-app template showing the payload's title and body (so each item is told apart)."""
    content = [{"channel": "IN_APP", "title": "{{ payload.title }}", "body": "{{ payload.body }}"}]
    return await create_template(stack, f"inbox-{uuid.uuid4().hex[:8]}", "Inbox test", content)


async def create_template(stack: Stack, slug: str, name: str, content: list[dict[str, Any]]) -> str:
    created = await graphql(
        stack,
        CREATE_TEMPLATE,
        {"input": {"slug": slug, "name": name, "content": content}},
        token("inbox-admin", "admin"),
    )
    assert created["createTemplate"]["__typename"] == "Template", created
    return slug


async def send(
    stack: Stack, template: str, user_id: str, title: str, body: str | None = None, **payload: str
) -> str:
    """Send ``user_id`` a notification titled ``title`` (its body "About <title>" unless
    given) in the app."""
    data = await graphql(
        stack,
        SEND,
        {
            "input": {
                "type": "inbox_test",
                "userIds": [user_id],
                "channels": ["IN_APP"],
                "templateSlug": template,
                "payload": {"title": title, "body": body or f"About {title}", **payload},
            }
        },
        token("inbox-service", "service"),
    )
    assert data["sendEvent"]["__typename"] == "EventAccepted", data
    return str(data["sendEvent"]["eventId"])


async def inbox_titles(stack: Stack, user_id: str) -> list[str]:
    data = await graphql(stack, INBOX, {}, token(user_id, "user"))
    return [edge["node"]["title"] for edge in data["inbox"]["edges"]]


async def until(condition: Callable[[], Any], what: str, within: float = 45.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def delivered(stack: Stack, template: str, user_id: str, titles: list[str]) -> None:
    """Send one notification per title and wait until the worker has put all in the inbox."""
    for title in titles:
        await send(stack, template, user_id, title)

    async def arrived() -> bool:
        return set(titles) <= set(await inbox_titles(stack, user_id))

    await until(arrived, f"{titles} in {user_id}'s inbox")


class Tab:
    """One browser tab with the element, signed in as a user; console errors fail the test."""

    def __init__(self, page: Page, ignore: tuple[str, ...] = ()) -> None:
        self.page = page
        self.errors: list[str] = []
        self.ignore = ignore
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.inbox = page.locator("herald-inbox")

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(n in message.text for n in self.ignore):
            self.errors.append(message.text)

    def item(self, title: str) -> Any:
        return self.inbox.locator("li[data-id]", has_text=title)

    def toast(self, title: str) -> Any:
        return self.inbox.locator("[part=toast]", has_text=title)

    async def open_panel(self) -> None:
        await self.inbox.locator("[part=bell]").click()
        await expect(self.inbox.locator("[part=panel]")).to_be_visible()

    async def tab(self, name: str) -> None:
        await self.inbox.get_by_role("tab", name=name).click()
        await expect(self.inbox).to_have_attribute("feed-state", "ready")

    async def record_arrivals(self) -> None:
        """From now on, keep the title of each notification the element announces."""
        await self.page.evaluate(
            """() => {
            window.arrived = [];
            document.querySelector('herald-inbox').addEventListener(
              'herald-notification', (e) => window.arrived.push(e.detail.title));
          }"""
        )

    async def arrivals(self) -> list[str]:
        """The titles announced since :meth:`record_arrivals`, in their order."""
        return list(await self.page.evaluate("window.arrived"))

    def assert_clean(self) -> None:
        assert not self.errors, "console errors:\n" + "\n".join(self.errors)


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1100, "height": 800})
    ctx.set_default_timeout(15_000)
    yield ctx
    await ctx.close()


async def open_tab(
    context: BrowserContext,
    stack: Stack,
    user_id: str,
    *,
    page_size: int = 20,
    ignore: tuple[str, ...] = (),
) -> Tab:
    """The demo page (served by the API, under its policy), with the element given a token
    by script as an app would: a function returning it."""
    page = await context.new_page()
    tab = Tab(page, ignore)
    # The demo page's own sign-in is left out: each test has a user of its own.
    await page.add_init_script(path=str(AXE))
    await page.goto(f"{stack.api.url}/demo/inbox")
    await page.evaluate(
        """([jwt, pageSize]) => {
        const inbox = document.querySelector('herald-inbox');
        inbox.setAttribute('page-size', pageSize);
        inbox.setAttribute('toast-seconds', '120');
        inbox.hidden = false;
        inbox.tokenProvider = async () => jwt;
      }""",
        [token(user_id, "user"), str(page_size)],
    )
    await expect(tab.inbox).to_have_attribute("connection", "online")
    await expect(tab.inbox).to_have_attribute("feed-state", "ready")
    return tab


@dataclass
class Reader:
    """A user of this run with an empty inbox, the template their notifications are sent
    with, and the browser context their tabs open in."""

    id: str
    stack: Stack
    template: str
    context: BrowserContext

    async def deliver(self, titles: list[str]) -> None:
        await delivered(self.stack, self.template, self.id, titles)

    async def send(self, title: str) -> None:
        await send(self.stack, self.template, self.id, title)

    async def open_tab(self, **options: Any) -> Tab:
        return await open_tab(self.context, self.stack, self.id, **options)

    async def query(self, document: str, variables: dict[str, Any] | None = None) -> Any:
        """``document`` asked of the API as this user."""
        return await graphql(self.stack, document, variables or {}, token(self.id, "user"))

    async def unread(self) -> int:
        return int((await self.query(INBOX))["unreadCount"])


@pytest.fixture
def reader(
    context: BrowserContext, stack: Stack, worker_stack: WorkerStack, template: str
) -> Reader:
    return Reader(new_user(), stack, template, context)


async def test_the_sdk_and_the_demo_page_are_served_under_a_strict_policy(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
        sdk = await client.get("/sdk/herald-inbox.js")
        demo = await client.get("/demo/inbox")
    assert sdk.status_code == 200
    assert sdk.headers["content-type"].startswith("text/javascript")
    assert "customElements" in sdk.text and "graphql-transport-ws" in sdk.text
    assert "script-src 'self'" in sdk.headers["content-security-policy"]
    assert demo.status_code == 200
    policy = demo.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy and "style-src 'self'" in policy
    assert f"connect-src 'self' {stack.auth_url}" in policy
    assert f'data-auth-url="{stack.auth_url}"' in demo.text


async def test_bell_feed_scroll_mark_read_archive_and_a_live_toast(reader: Reader) -> None:
    await reader.deliver(["Apple", "Banana", "Cherry"])
    tab = await reader.open_tab(page_size=2)
    bell = tab.inbox.locator("[part=bell]")
    await expect(bell).to_have_accessible_name("Notifications, 3 unread")
    await expect(tab.inbox.locator("[part=badge]")).to_have_text("3")

    await tab.open_panel()
    items = tab.inbox.locator("li[data-id]")
    # Two on the first page, newest first; scrolling to the end loads the third.
    await expect(items.first).to_contain_text("Cherry")
    await tab.inbox.locator("[part=feed]").evaluate("(feed) => feed.scrollTo(0, 1e6)")
    await expect(items).to_have_count(3)
    await expect(items.nth(2)).to_contain_text("Apple")

    await tab.item("Banana").locator("[part=item-open]").click()
    await expect(tab.item("Banana")).to_have_attribute("data-read", "true")
    await expect(bell).to_have_accessible_name("Notifications, 2 unread")
    await tab.item("Apple").get_by_role("button", name="Archive: Apple").click()
    await expect(tab.item("Apple")).to_have_count(0)
    # The keyboard stays in the list: on the archived item's neighbour.
    await expect(tab.item("Banana").locator("[part=archive]")).to_be_focused()
    await expect(bell).to_have_accessible_name("Notifications, 1 unread")

    await tab.tab("Archived")
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("Apple")
    await tab.tab("All")
    await expect(items).to_have_count(2)
    await tab.tab("Unread")
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("Cherry")

    # The server agrees with what the page shows.
    data = await reader.query(INBOX)
    assert data["unreadCount"] == 1
    assert [e["node"]["title"] for e in data["inbox"]["edges"]] == ["Cherry", "Banana"]

    await reader.send("Live one")
    await expect(tab.toast("Live one")).to_be_visible(timeout=30_000)
    await expect(tab.item("Live one")).to_have_count(1)
    await expect(items.first).to_contain_text("Live one")
    await expect(bell).to_have_accessible_name("Notifications, 2 unread")

    await tab.inbox.get_by_role("button", name="Mark all read").click()
    await expect(bell).to_have_accessible_name("Notifications")
    await expect(tab.inbox.locator("li[data-read=false]")).to_have_count(0)
    assert await reader.unread() == 0
    tab.assert_clean()


async def test_relative_times_follow_the_locale_and_empty_states_show(reader: Reader) -> None:
    tab = await reader.open_tab()
    await tab.open_panel()
    await expect(tab.inbox.locator("[part=state]")).to_have_text("You are all caught up.")
    await tab.tab("Archived")
    await expect(tab.inbox.locator("[part=state]")).to_have_text("Nothing archived.")
    await tab.tab("All")
    await tab.inbox.evaluate("(el) => el.setAttribute('locale', 'de')")
    await reader.send("Zeit")
    await expect(tab.item("Zeit").locator("time")).to_have_text("jetzt", timeout=30_000)
    tab.assert_clean()


async def test_mark_read_on_view_marks_what_the_open_feed_shows(reader: Reader) -> None:
    await reader.deliver(["Seen one", "Seen two"])
    tab = await reader.open_tab()
    await expect(tab.inbox.locator("[part=bell]")).to_have_accessible_name(
        "Notifications, 2 unread"
    )
    # Closed, nothing is marked; opened with the attribute, what shows is marked read.
    await tab.inbox.evaluate("(el) => el.setAttribute('mark-read-on-view', '')")
    await tab.page.wait_for_timeout(1500)
    assert await reader.unread() == 2
    await tab.open_panel()
    await expect(tab.inbox.locator("[part=bell]")).to_have_accessible_name("Notifications")
    await expect(tab.inbox.locator("li[data-read=true]")).to_have_count(2)
    assert await reader.unread() == 0
    tab.assert_clean()


async def test_two_tabs_of_one_user_keep_read_state_in_step(reader: Reader) -> None:
    await reader.deliver(["Alpha", "Beta"])
    first = await reader.open_tab()
    second = await reader.open_tab()
    for tab in (first, second):
        await tab.open_panel()
        await tab.tab("All")
    await first.item("Alpha").locator("[part=item-open]").click()
    await expect(second.item("Alpha")).to_have_attribute("data-read", "true")
    await expect(second.inbox.locator("[part=bell]")).to_have_accessible_name(
        "Notifications, 1 unread"
    )
    await second.item("Beta").get_by_role("button", name="Archive: Beta").click()
    await expect(first.item("Beta")).to_have_count(0)
    await expect(first.inbox.locator("[part=bell]")).to_have_accessible_name("Notifications")
    # A live item reaches both tabs, once each.
    await reader.send("Gamma")
    for tab in (first, second):
        await expect(tab.toast("Gamma")).to_have_count(1, timeout=30_000)
        await expect(tab.item("Gamma")).to_have_count(1)
        tab.assert_clean()


async def test_an_item_sent_across_an_api_restart_arrives_exactly_once(reader: Reader) -> None:
    await reader.deliver(["Before"])
    listed = await reader.query("{ inbox { position } }")
    position = listed["inbox"]["position"]
    tab = await reader.open_tab(ignore=DOWN_NOISE)
    page = tab.page
    await tab.record_arrivals()
    subscribes: list[dict[str, Any]] = []

    def watch(socket: Any) -> None:
        def sent(frame: Any) -> None:
            message = json.loads(frame)
            if message.get("type") == "subscribe":
                subscribes.append(message["payload"]["variables"])

        socket.on("framesent", sent)

    page.on("websocket", watch)
    await tab.open_panel()
    await tab.tab("All")

    kill_api(reader.stack.api)
    await expect(tab.inbox).to_have_attribute("connection", "offline")
    await expect(tab.inbox.locator("[part=connection]")).to_contain_text("Offline")
    await asyncio.to_thread(start_api, reader.stack.api)
    # Sent as soon as the API is back: the page is most likely still waiting to reconnect,
    # so the item is stored while it is away and comes back through `since`.
    await reader.send("After restart")
    await expect(tab.item("After restart")).to_have_count(1, timeout=45_000)
    await expect(tab.inbox).to_have_attribute("connection", "online")
    await page.wait_for_timeout(1500)  # room for a double to show up
    await expect(tab.item("After restart")).to_have_count(1)
    await expect(tab.toast("After restart")).to_have_count(1)
    await expect(tab.item("Before")).to_have_count(1)
    assert await tab.arrivals() == ["After restart"]
    # Recorded from after the page's first subscription: the resubscription went out with
    # the newest cursor the page had (the inbox's position: no live item came before).
    assert subscribes and subscribes[0]["since"] == position, subscribes
    tab.assert_clean()


async def test_no_accessibility_violations(reader: Reader) -> None:
    """axe-core (from clients/inbox's npm lock) on the page, panel open, with items and a toast."""
    await reader.deliver(["Read me", "Archive me"])
    tab = await reader.open_tab()
    await tab.open_panel()
    await tab.item("Read me").locator("[part=item-open]").click()
    await reader.send("Toast me")
    await expect(tab.toast("Toast me")).to_be_visible(timeout=30_000)
    results = await tab.page.evaluate(
        "async () => (await axe.run(document, { resultTypes: ['violations'] })).violations"
    )
    summary = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results]
    assert results == [], summary
    # Keyboard: from the bell, Tab reaches the panel's controls in order.
    await tab.inbox.locator("[part=bell]").focus()
    order = []
    for _ in range(4):
        await tab.page.keyboard.press("Tab")
        order.append(
            await tab.page.evaluate(
                "() => { const a = document.querySelector('herald-inbox').shadowRoot"
                ".activeElement; return a ? (a.getAttribute('part') || a.tagName) : null; }"
            )
        )
    assert order == ["mark-all-read", "tab", "item-open", "archive"], order
    await tab.page.keyboard.press("Escape")
    await expect(tab.inbox.locator("[part=panel]")).to_be_hidden()
    tab.assert_clean()


async def test_the_demo_page_signs_in_as_a_demo_user(
    context: BrowserContext, stack: Stack, worker_stack: WorkerStack
) -> None:
    page = await context.new_page()
    tab = Tab(page)
    violations: list[str] = []

    def report(violation: str) -> None:
        violations.append(violation)

    await page.expose_function("reportViolation", report)
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation', "
        "(e) => window.reportViolation(`${e.effectiveDirective} ${e.blockedURI}`));"
    )
    await page.goto(f"{stack.api.url}/demo/inbox")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await page.get_by_label("Demo user").select_option("demo-user-olga")
    await page.get_by_role("button", name="Sign in").click()
    await expect(tab.inbox).to_have_attribute("connection", "online")
    await expect(tab.inbox).to_have_attribute("feed-state", "ready")
    await page.get_by_role("button", name="Send me a test notification").click()
    await expect(page.locator("#sent")).to_have_text("Sent.")
    await expect(tab.inbox.locator("[part=toast]")).to_have_count(1, timeout=30_000)
    assert violations == []
    tab.assert_clean()


async def test_a_notification_s_actions_are_a_link_and_a_named_action_the_app_handles(
    context: BrowserContext, stack: Stack, worker_stack: WorkerStack
) -> None:
    slug = f"inbox-actions-{uuid.uuid4().hex[:8]}"
    content = [
        {
            "channel": "IN_APP",
            "title": "{{ payload.title }}",
            "body": "{{ payload.body }}",
            "actions": [
                {"label": "Track order {{ payload.order }}", "url": "/orders/{{ payload.order }}"},
                {"label": "Remind me later", "name": "snooze"},
            ],
        }
    ]
    await create_template(stack, slug, "Inbox actions", content)
    user_id = new_user()
    await send(stack, slug, user_id, "Shipped", body="On its way", order="42")

    async def arrived() -> bool:
        return "Shipped" in await inbox_titles(stack, user_id)

    await until(arrived, "the item with actions")
    tab = await open_tab(context, stack, user_id)
    await tab.page.evaluate(
        """() => { window.heraldActions = [];
        document.querySelector('herald-inbox').addEventListener('herald-action',
          (e) => window.heraldActions.push([e.detail.name, e.detail.notification.title])); }"""
    )
    await tab.open_panel()
    item = tab.item("Shipped")
    primary = item.locator("[part~=action-primary]")
    await expect(primary).to_have_text("Track order 42")
    assert await primary.evaluate("(a) => a.tagName") == "A"
    await expect(primary).to_have_attribute("href", "/orders/42")
    secondary = item.get_by_role("button", name="Remind me later")
    await expect(secondary).to_have_attribute("part", "action action-secondary")
    # The action buttons pass axe-core too (contrast, names).
    results = await tab.page.evaluate(
        "async () => (await axe.run(document, { resultTypes: ['violations'] })).violations"
    )
    assert results == [], [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in results]
    await secondary.click()
    await expect(item).to_have_attribute("data-read", "true")
    assert await tab.page.evaluate("window.heraldActions") == [["snooze", "Shipped"]]
    tab.assert_clean()


async def test_items_replayed_after_a_drop_keep_what_happened_to_them_meanwhile(
    reader: Reader,
) -> None:
    """Three items reach the inbox while the page is offline; on another device one is
    archived and one read. Back online, the page gets all three through `since`: the archived
    one only on the Archived tab, the read one without a toast, the unread one as news."""
    await reader.deliver(["Before"])
    tab = await reader.open_tab(ignore=DOWN_NOISE)
    page = tab.page
    await tab.record_arrivals()
    await tab.open_panel()
    await tab.tab("All")
    # Offline first, so the page cannot reconnect until it is told the network is back.
    await reader.context.set_offline(True)
    kill_api(reader.stack.api)
    await expect(tab.inbox).to_have_attribute("connection", "offline")
    await asyncio.to_thread(start_api, reader.stack.api)
    titles = ["Archived elsewhere", "Opened elsewhere", "Still new"]
    await reader.deliver(titles)
    listed = await reader.query(INBOX)
    ids = {edge["node"]["title"]: edge["node"]["id"] for edge in listed["inbox"]["edges"]}
    elsewhere = """mutation($a: [ID!]!, $r: [ID!]!) {
      a: archive(ids: $a) { __typename } r: markRead(ids: $r) { __typename } }"""
    variables = {"a": [ids["Archived elsewhere"]], "r": [ids["Opened elsewhere"]]}
    changed = await reader.query(elsewhere, variables)
    assert changed == {"a": {"__typename": "InboxChange"}, "r": {"__typename": "InboxChange"}}

    await reader.context.set_offline(False)
    await expect(tab.inbox).to_have_attribute("connection", "online", timeout=30_000)
    await expect(tab.item("Still new")).to_have_count(1, timeout=30_000)
    await expect(tab.item("Opened elsewhere")).to_have_count(1)
    await page.wait_for_timeout(1500)  # room for anything misplaced to show up
    await expect(tab.item("Archived elsewhere")).to_have_count(0)
    await expect(tab.toast("Still new")).to_have_count(1)
    await expect(tab.toast("Opened elsewhere")).to_have_count(0)
    await expect(tab.toast("Archived elsewhere")).to_have_count(0)
    await expect(tab.inbox).to_have_attribute("unread-count", "2")  # Before, Still new
    # In the order the worker stored them, which need not be the order they were sent in.
    assert sorted(await tab.arrivals()) == ["Opened elsewhere", "Still new"]
    await tab.tab("Archived")
    await expect(tab.item("Archived elsewhere")).to_have_count(1)
    tab.assert_clean()
