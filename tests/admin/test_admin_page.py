"""The admin page in a real Chromium: sign-in, templates (preview, errors, versions), dead
letters, and layout at laptop and tablet widths."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import timedelta

from playwright.async_api import Page, Request, WebSocketRoute, expect

from tests.admin.conftest import (
    NARROW,
    Stack,
    go,
    graphql,
    open_admin,
    open_token_paste,
    screenshot,
    sideways_overflow,
    sign_in,
    token,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- sign in -----------------------------------------------------------------------------


async def test_sign_in_with_a_pasted_token(page: Page, stack: Stack, admin_token: str) -> None:
    await open_admin(page, stack)
    await expect(page.locator("h1")).to_have_text("Sign in to Herald")
    await screenshot(page, "sign-in")

    await open_token_paste(page)
    await page.fill("#token", "not-a-token")
    await page.click("#token-form button[type=submit]")
    error = page.locator("#token-error")
    await expect(error).to_contain_text("This token was not accepted")
    await expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")

    await page.fill("#token", token("someone", "user"))
    await page.click("#token-form button[type=submit]")
    await expect(error).to_contain_text("needs the admin or manager role")
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "false")

    await page.fill("#token", f"Bearer {admin_token}")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
    # The overview is the first screen after signing in.
    await expect(page.locator("h1")).to_have_text("Overview")
    await expect(page.locator("#who")).to_contain_text("admin-tester")
    # The header's indicator turns live on the first heartbeat over graphql-transport-ws.
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # Templates are listed (the seeded ones at least; which come first, in slug order, depends
    # on what the suite's other tests have added).
    await go(page, "#/templates")
    await expect(page.locator("#templates-table tr[data-slug]").first).to_be_visible()

    # A reload keeps the session; signing out ends it.
    await page.reload()
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
    await page.click("#sign-out")
    await expect(page.locator("h1")).to_have_text("Sign in to Herald")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "off")


async def test_the_session_ends_when_the_token_expires(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, token("short-lived", "manager", ttl=timedelta(seconds=4)))
    await expect(page.locator("#who")).to_contain_text("short-lived")
    await expect(page.locator(".alert-warning")).to_contain_text(
        "Your sign-in has expired", timeout=8_000
    )
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "false")


async def test_sign_in_by_picking_a_demo_user(page: Page, stack: Stack) -> None:
    await open_admin(page, stack, "#/send")
    await page.click("#demo-users summary")
    manager = page.locator("[data-user-id='demo-manager']")
    await expect(manager).to_contain_text("Mariana Costa")
    # Users without an admin or manager role cannot use the page, and say so.
    await expect(page.locator("[data-user-id='demo-user-emma']")).to_be_disabled()
    await screenshot(page, "sign-in-demo-users")

    await manager.click()
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
    await expect(page.locator("#who")).to_contain_text("demo-manager")
    # Back where the visitor was going.
    await expect(page.locator("h1")).to_have_text("Send a message")


# --- templates ---------------------------------------------------------------------------


async def test_create_a_template_with_live_preview_and_versions(
    page: Page, stack: Stack, admin_token: str
) -> None:
    slug = unique("preview")
    await sign_in(page, stack, admin_token, "#/templates/new")
    await expect(page.locator("h1")).to_contain_text("New template")

    await page.fill("#template-slug", slug)
    await page.fill("#template-name", "Movie night")
    await page.fill("#field-subject", "Hello {{ user.first_name }}")
    await page.fill("#field-body", "Tonight: {{ payload.movie.title }}")

    # The variables the content reads, and a sample for each.
    await expect(page.locator("#variables")).to_contain_text("payload.movie.title")
    await expect(page.locator("#variables")).to_contain_text("user.first_name")
    # The preview is rendered by the API: the sample user is Ada.
    preview = page.locator("#preview")
    await expect(preview.locator(".rendered-subject")).to_have_text("Hello Ada")
    await expect(preview.locator(".rendered-body")).to_have_text("Tonight: Sample title")

    await page.fill("#sample-variables", '{"payload": {"movie": {"title": "Dune"}}}')
    await expect(preview.locator(".rendered-body")).to_have_text("Tonight: Dune")

    # A variable missing from the sample is explained in the preview, not a crash.
    await page.fill("#sample-variables", '{"payload": {}}')
    await expect(preview).to_contain_text("'payload.movie.title', which is missing")
    await page.fill("#sample-variables", '{"payload": {"movie": {"title": "Dune"}}}')

    # In-app content in a second tab.
    await page.click("#tab-IN_APP")
    await page.click("#add-channel")
    await page.fill("#field-title", "Movie night")
    await page.fill("#field-body", "{{ payload.movie.title }} tonight")
    await expect(preview.locator(".rendered-title")).to_have_text("Movie night")
    await expect(preview.locator(".rendered-body")).to_have_text("Dune tonight")

    await page.click("#save-template")
    await expect(page).to_have_url(f"{stack.admin_url}#/templates/edit/{slug}")
    await expect(page.locator("h1")).to_contain_text("Edit “Movie night”")
    await expect(page.locator("h1 .badge")).to_have_text("version 1")
    await expect(page.locator("#tab-IN_APP .tab-count")).to_have_text("1")
    await screenshot(page, "template-editor")

    # Every save is a version; an old one can be viewed and restored.
    await page.click("#tab-EMAIL")
    await page.fill("#field-body", "Tonight only: {{ payload.movie.title }}")
    await page.click("#save-template")
    await expect(page.locator("h1 .badge")).to_have_text("version 2")
    await page.click("#versions li[data-version='1'] button")
    dialog = page.locator("#version-dialog")
    await expect(dialog).to_contain_text("Tonight: {{ payload.movie.title }}")
    await screenshot(page, "template-version")
    await dialog.locator("#restore-version").click()
    await expect(page.locator("h1 .badge")).to_have_text("version 3")
    await expect(page.locator("#field-body")).to_have_value("Tonight: {{ payload.movie.title }}")

    # The API agrees.
    data = await graphql(
        stack,
        "query($s: String!) { template(slug: $s) { version versions { version } } }",
        {"s": slug},
        admin_token,
    )
    assert data["template"]["version"] == 3
    assert [v["version"] for v in data["template"]["versions"]] == [3, 2, 1]

    # Search finds it; the list links to the editor.
    await go(page, "#/templates")
    await page.fill("#template-search", "movie night")
    row = page.locator(f"#templates-table tr[data-slug='{slug}']")
    await expect(row).to_be_visible()
    await expect(page.locator("#templates-table tr[data-slug='welcome']")).to_have_count(0)
    await screenshot(page, "templates")
    await page.fill("#template-search", "no-such-template-anywhere")
    await expect(page.locator(".empty-state")).to_contain_text("No templates match")


async def test_a_syntax_error_is_shown_at_its_line(
    page: Page, stack: Stack, admin_token: str
) -> None:
    await sign_in(page, stack, admin_token, "#/templates/new")
    await page.fill("#template-slug", unique("syntax"))
    await page.fill("#template-name", "Syntax")
    await page.fill("#field-subject", "Hi")
    await page.fill("#field-body", "Line one\n{{ user.first_name }\nLine three")

    error = page.locator("#field-body-error")
    await expect(error).to_contain_text("Line 2:")
    await expect(error).to_contain_text("unexpected '}'")
    await expect(page.locator("#field-body")).to_have_attribute("aria-invalid", "true")
    # The gutter marks line 2, and only line 2.
    marked = page.locator(".code-field:has(#field-body) .error-line")
    await expect(marked).to_have_count(1)
    await expect(marked).to_have_attribute("data-line", "2")
    await expect(page.locator("#tab-EMAIL")).to_have_class("tab tab-error")
    await expect(page.locator("#preview")).to_contain_text("Fix the mistake in Body (line 2)")
    await screenshot(page, "template-syntax-error")

    # Saving is refused by the API at the same place.
    await page.click("#save-template")
    await expect(error).to_contain_text("Line 2:")
    await expect(page.locator(".save-status")).to_contain_text("Not saved")

    # Fixing it clears the error and the preview comes back.
    await page.fill("#field-body", "Line one\n{{ user.first_name }}\nLine three")
    await expect(page.locator("#preview .rendered-body")).to_have_text("Line one\nAda\nLine three")
    await expect(error).to_be_hidden()
    await expect(page.locator(".error-line")).to_have_count(0)


async def test_a_validation_error_is_shown_at_its_field(
    page: Page, stack: Stack, admin_token: str
) -> None:
    await sign_in(page, stack, admin_token, "#/templates/new")
    await page.fill("#template-slug", "Not A Slug!")
    await page.fill("#template-name", "Bad slug")
    await page.fill("#field-subject", "Hi")
    await page.click("#save-template")

    slug_error = page.locator("#template-slug-error")
    await expect(slug_error).to_contain_text("A slug is 1-100 lowercase letters")
    await expect(page.locator("#template-slug")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#template-slug")).to_be_focused()
    await screenshot(page, "template-validation-error")

    # A content field the API names (content[0].subject) lands at that field, in its tab.
    await page.fill("#template-slug", unique("valid"))
    await page.fill("#field-subject", "")
    await page.fill("#field-body", "Body")
    await page.click("#save-template")
    await expect(page.locator("#field-subject-error")).to_contain_text(
        "email content needs a subject"
    )
    await expect(slug_error).to_be_hidden()

    # Leaving with unsaved changes asks first; staying keeps them.
    await go(page, "#/send")
    leave = page.locator("#leave-dialog")
    await expect(leave).to_contain_text("not saved yet")
    await leave.get_by_role("button", name="Stay").click()
    await expect(page.locator("#field-body")).to_have_value("Body")
    await expect(page).to_have_url(f"{stack.admin_url}#/templates/new")
    await go(page, "#/send")
    await page.click("#leave-anyway")

    # The send form: the API refuses an empty recipient list, next to the recipients.
    await page.select_option("#send-template", "welcome")
    await page.check("#send-channel-EMAIL")
    await page.click("#send-submit")
    await expect(page.locator("#send-recipients-error")).to_contain_text(
        "Give 1 or more user ids, or topics to send to"
    )
    await expect(page.locator("#send-recipients")).to_be_focused()
    # Bad JSON is caught before it is sent.
    await page.fill("#send-recipients", "demo-user-emma")
    await page.fill("#send-payload", "{not json")
    await page.click("#send-submit")
    await expect(page.locator("#send-payload-error")).to_contain_text("not valid JSON")
    await expect(page.locator("#send-recipients-error")).to_be_hidden()
    # An event type's payload schema, checked by the API, in words.
    await page.check("#what-event-type")
    await page.select_option("#send-event-type", "movie_added")
    await expect(page.locator("#send-channel-PUSH")).to_be_checked()
    await page.fill("#send-payload", '{"movie": {"title": "Dune"}}')
    await page.click("#send-submit")
    await expect(page.locator("#send-payload-error")).to_have_text("The payload needs movie.url.")


# --- dead letters, roles -----------------------------------------------------


async def test_dead_letters_show_an_empty_state(page: Page, stack: Stack, admin_token: str) -> None:
    await sign_in(page, stack, admin_token, "#/dead-letters")
    await expect(page.locator("h1")).to_have_text("Dead letters")
    await expect(page.locator(".empty-state")).to_contain_text("No dead letters.")
    await expect(page.locator("#dead-letters-table")).to_be_hidden()
    await expect(page.locator("#replay-selected")).to_be_disabled()
    await screenshot(page, "dead-letters")


async def test_a_manager_is_told_dead_letters_need_an_admin(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, token("a-manager", "manager"), "#/dead-letters")
    await expect(page.locator(".alert-error")).to_contain_text(
        "Your account is not allowed to do this: it needs to be an administrator"
    )


# --- the live feed's fallback and reconnects ---------------------------------------------


async def until(check: Callable[[], bool], seconds: float = 10) -> None:
    """Wait for something the test records from the browser's events."""
    for _ in range(int(seconds * 20)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still false after {seconds} s")


async def test_the_live_feed_polls_while_the_subscription_fails(
    page: Page, stack: Stack, admin_token: str
) -> None:
    """The first `deliveryUpdates` subscription is answered with an error (the rest of the
    socket's traffic, the heartbeat too, goes through to the real API)."""
    refused: list[str] = []
    polls: list[str] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/graphql") and "deliveries(" in (request.post_data or ""):
            polls.append(request.url)

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            parsed = json.loads(message)
            query = (parsed.get("payload") or {}).get("query", "")
            if parsed.get("type") == "subscribe" and "deliveryUpdates" in query and not refused:
                refused.append(parsed["id"])
                error = {
                    "message": "Live updates are down for maintenance",
                    "extensions": {"code": "UNAVAILABLE"},
                }
                ws.send(json.dumps({"id": parsed["id"], "type": "error", "payload": [error]}))
                return
            server.send(message)

        ws.on_message(from_page)

    page.on("request", on_request)
    await page.route_web_socket("**/graphql", route)
    await sign_in(page, stack, admin_token, "#/live")
    state = page.locator("#live-state")
    await expect(state).to_have_attribute("data-state", "polling")
    await expect(state).to_have_attribute("data-mode", "poll")
    await expect(state).to_contain_text("Checking every 1 s")
    await expect(page.locator("#live-mode")).to_contain_text(
        "Streaming is unavailable: Live updates are down for maintenance. "
        "The feed checks for changes every 1 s instead."
    )
    await expect(page.locator(".feed-health")).to_contain_text("Up to date at")
    assert refused and polls
    # The rest of the socket is fine: the header's heartbeat is live.
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    # Streaming again: the polling stops.
    await page.click("#live-retry")
    await expect(state).to_have_attribute("data-state", "streaming")
    await expect(page.locator("#live-retry")).to_be_hidden()
    polled = len(polls)
    await page.wait_for_timeout(2_500)  # more than two poll intervals
    assert len(polls) == polled


async def test_the_live_feed_reconnects_and_catches_up_once(
    page: Page, stack: Stack, admin_token: str
) -> None:
    sockets: list[WebSocketRoute] = []
    reads: list[str] = []

    def on_request(request: Request) -> None:
        if request.url.endswith("/graphql") and "deliveries(" in (request.post_data or ""):
            reads.append(request.url)

    def route(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    page.on("request", on_request)
    await page.route_web_socket("**/graphql", route)
    await sign_in(page, stack, admin_token, "#/live")
    state = page.locator("#live-state")
    await expect(state).to_have_attribute("data-state", "streaming")
    await page.evaluate(
        """() => {
          window.liveStates = [];
          const el = document.getElementById("live-state");
          new MutationObserver(() => window.liveStates.push(el.dataset.state))
            .observe(el, {attributes: true, attributeFilter: ["data-state"]});
        }"""
    )
    assert len(sockets) == 1 and not reads

    # The socket drops (a code that is worth retrying): the feed says so, reconnects on its own,
    # and reads the newest deliveries once for what it may have missed; it does not poll.
    await sockets[0].close(code=4000, reason="dropped by the test")
    await until(lambda: len(sockets) == 2)
    await expect(state).to_have_attribute("data-state", "streaming")
    assert await page.evaluate("window.liveStates") == ["reconnecting", "streaming"]
    await until(lambda: len(reads) == 1)
    await page.wait_for_timeout(2_500)  # more than two poll intervals
    assert len(reads) == 1


# --- layout and keyboard -----------------------------------------------------------------


SCREENS = [
    "#/templates",
    "#/templates/edit/welcome",
    "#/send",
    "#/send?when=recurring",
    "#/campaigns",
    "#/history",
    "#/dead-letters",
    "#/live",
]


async def test_every_screen_fits_a_tablet_width(page: Page, stack: Stack, admin_token: str) -> None:
    await page.set_viewport_size(NARROW)
    await sign_in(page, stack, admin_token)
    for route in SCREENS:
        await go(page, route)
        await expect(page.locator("h1")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        overflow = await sideways_overflow(page)
        assert overflow <= 0, f"{route} scrolls sideways by {overflow}px at 800px"
    await go(page, "#/templates/edit/welcome")
    await expect(page.locator("#preview .rendered-subject")).to_contain_text("Ada")
    await screenshot(page, "template-editor-800px")


async def test_the_page_is_keyboard_reachable(page: Page, stack: Stack, admin_token: str) -> None:
    await sign_in(page, stack, admin_token, "#/templates/edit/welcome")
    await expect(page.locator("#preview .rendered-subject")).to_contain_text("Ada")
    # The heading takes focus after navigation; tabs move with the arrow keys.
    await page.focus("#tab-EMAIL")
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#tab-SMS")).to_be_focused()
    await expect(page.locator("#tab-SMS")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#add-channel")).to_be_visible()
    # The main navigation is reachable with Tab from the top of the page (the skip link).
    await page.focus(".skip-link")
    reached = set()
    for _ in range(13):
        await page.keyboard.press("Tab")
        reached.add(await page.evaluate("document.activeElement.dataset.nav || ''"))
    assert {
        "templates",
        "send",
        "campaigns",
        "workflows",
        "topics",
        "recipients",
        "history",
        "dead-letters",
        "live",
    } <= reached
    # The skip link jumps past the header to the screen.
    await page.focus(".skip-link")
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
