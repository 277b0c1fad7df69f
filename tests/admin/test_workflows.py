"""The workflow editor from the admin page: a three-step workflow (in-app, a delay, a branch on
the in-app message left unread that sends an email) built, reordered from the keyboard, refused
with a typed error at the step and field it names, saved, dry-run; then an event sent through a
real worker and beat, its run followed on its timeline to the email."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.admin.conftest import (
    WIDE,
    Stack,
    WorkerStack,
    go,
    graphql,
    screenshot,
    sign_in,
    token,
)
from tests.factories import CREATE_TEMPLATE
from tests.processes import Process

REGISTER = """mutation($input: RegisterEventTypeInput!) { registerEventType(input: $input) {
  __typename ... on Error { code message field } } }"""
WORKFLOW = """query($type: String!) { workflow(eventType: $type) { version steps cancels }
  workflowVersions(eventType: $type) { version current } }"""
SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message field } } }"""
RECIPIENT = "demo-user-emma"  # in the stand-in's bundled demo users
RECIPIENT_EMAIL = "emma.walker@example.com"


async def event_type(stack: Stack, bearer: str) -> tuple[str, str]:
    """A new event type sending in-app, its template holding in-app and email content."""
    suffix = uuid.uuid4().hex[:8]
    slug = f"wfa-{suffix}"
    content = [
        {"channel": "IN_APP", "locale": "en", "title": "Hi {{ user.first_name }}", "body": "b"},
        {
            "channel": "EMAIL",
            "locale": "en",
            "subject": "Still there, {{ user.first_name }}? {{ payload.item }}",
            "body": "You have an unread message.",
        },
    ]
    created = await graphql(
        stack,
        CREATE_TEMPLATE,
        {"input": {"slug": slug, "name": f"Reminder {suffix}", "content": content}},
        bearer,
    )
    assert created["createTemplate"]["__typename"] == "Template", created
    name = f"wfa.{suffix}"
    registered = await graphql(
        stack,
        REGISTER,
        {"input": {"name": name, "templateSlug": slug, "channels": ["IN_APP"]}},
        bearer,
    )
    assert registered["registerEventType"]["__typename"] == "EventType", registered
    return name, slug


async def step_types(page: Page, selector: str = "#wf-steps > .wf-list > ol > li") -> list[str]:
    types: list[str] = await page.locator(selector).evaluate_all(
        "items => items.map(i => i.dataset.type)"
    )
    return types


async def test_a_three_step_workflow_is_built_saved_dry_run_and_followed_through_a_run(
    page: Page, stack: Stack, worker_stack: WorkerStack, beat: Process
) -> None:
    manager = token("workflows-manager", "manager")
    name, slug = await event_type(stack, manager)

    # The list: the new type with its one-step workflow, linking to its editor.
    await sign_in(page, stack, manager, "#/workflows")
    await expect(page.locator(".nav a[data-nav='workflows']")).to_have_attribute(
        "aria-current", "page"
    )
    listed = page.locator(f"#workflows-table tr[data-event-type='{name}']")
    await expect(listed.locator(".workflow-version")).to_have_text("v1")
    await expect(listed.locator(".workflow-steps")).to_have_text("send")
    await listed.locator("a.workflow-link").click()
    await expect(page).to_have_url(re.compile(f"#/workflows/{re.escape(name)}$"))
    await expect(page.locator("#wf-save-status")).to_have_text("Version 1 is current.")
    await expect(page.locator("#step-0-channel-in_app")).to_be_checked()
    await expect(page.locator("#wf-versions-table tr[data-version='1']")).to_contain_text("current")

    # Build: name the in-app send, add a delay and a branch whose `then` sends an email.
    await page.fill("#step-0-name", "inapp")
    await page.select_option("#add-step-type-root", "delay")
    await page.click("#add-step-root")
    await page.fill("#step-1-duration", "2s")
    await page.select_option("#add-step-type-root", "branch")
    await page.click("#add-step-root")
    await page.fill("#step-2-name", "unread")
    await page.fill("#step-2-condition", "steps.inapp.read ==")
    await page.select_option("#add-step-type-2-then", "send")
    await page.click("#add-step-2-then")
    branch = page.locator("#step-2")
    await expect(branch.locator(".wf-arm[data-arm='then'] li.wf-step")).to_have_count(1)
    await page.fill("#step-2-then-0-name", "email")
    await page.uncheck("#step-2-then-0-channel-in_app")
    await page.check("#step-2-then-0-channel-email")
    await page.select_option("#step-2-then-0-template", slug)
    assert await step_types(page) == ["send", "delay", "branch"]

    # Reorder from the keyboard: the delay up to the top, then back down.
    await page.focus("#step-1-up")
    await page.keyboard.press("Enter")
    assert await step_types(page) == ["delay", "send", "branch"]
    # At the top its "up" is disabled, so focus is on its "down".
    await expect(page.locator("#step-0-down")).to_be_focused()
    await page.keyboard.press("Enter")
    assert await step_types(page) == ["send", "delay", "branch"]
    await expect(page.locator("#step-1-duration")).to_have_value("2s")

    # A bad condition: the API's typed error at the branch's condition field.
    await page.click("#wf-save")
    error = page.locator("#step-2-condition-error")
    await expect(error).to_contain_text("Syntax error")
    await expect(page.locator("#step-2-condition")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#wf-save-status")).to_have_text("Not saved.")
    assert (await graphql(stack, WORKFLOW, {"type": name}, manager))["workflow"]["version"] == 1

    # Fixed, saved as version 2: the steps the API holds are the ones built.
    await page.fill("#step-2-condition", "steps.inapp.read == false")
    await page.click("#wf-save")
    await expect(page.locator("#wf-save-status")).to_have_text("Saved as version 2.")
    await expect(error).to_be_hidden()
    await expect(page.locator("#wf-versions-table tr[data-version='2']")).to_contain_text("current")
    saved = await graphql(stack, WORKFLOW, {"type": name}, manager)
    steps = saved["workflow"]["steps"]
    assert saved["workflow"]["version"] == 2
    assert [s["type"] for s in steps] == ["send", "delay", "branch"]
    assert steps[0]["name"] == "inapp" and steps[0]["channels"] == ["in_app"]
    assert steps[1]["duration"] == 2
    assert steps[2]["condition"] == "steps.inapp.read == false"
    assert steps[2]["then"][0]["name"] == "email"
    assert steps[2]["then"][0]["channels"] == ["email"]
    assert steps[2]["then"][0]["template"] == slug
    assert saved["workflowVersions"] == [
        {"version": 2, "current": True},
        {"version": 1, "current": False},
    ]

    # The dry run: the branch's condition is true (a dry run takes in-app as unread), its
    # email rendered with the payload.
    await page.fill("#wf-preview-payload", "{not json")
    await page.click("#wf-preview-run")
    await expect(page.locator("#wf-preview-payload-error")).to_contain_text("not valid JSON")
    await page.fill("#wf-preview-payload", json.dumps({"item": "a lamp"}))
    await page.fill("#wf-preview-user", "nobody-known")
    await page.click("#wf-preview-run")
    preview = page.locator("#wf-preview")
    await expect(preview.locator("li[data-path='2'] .wf-condition")).to_have_text("Condition: true")
    await expect(preview.locator("li[data-path='0'] .wf-message-title")).to_have_text("Hi Ada")
    await expect(preview.locator("li[data-path='2.then.0'] .wf-message-subject")).to_have_text(
        "Still there, Ada? a lamp"
    )
    assert await preview.locator("li").evaluate_all("l => l.map(i => i.dataset.path)") == [
        "0",
        "1",
        "2",
        "2.then.0",
    ]
    # Unsaved steps are what the dry run tries: an `if` over a missing variable names its step.
    await page.fill("#step-1-if", "payload.vip")
    await page.click("#wf-preview-run")
    await expect(page.locator("#step-1-if-error")).to_contain_text("payload.vip")
    await page.fill("#step-1-if", "")
    await page.click("#wf-preview-run")
    await expect(page.locator("#step-1-if-error")).to_be_hidden()
    await expect(preview.locator("li[data-path='2.then.0'] .wf-message-subject")).to_be_visible()
    await page.evaluate("window.scrollTo(0, 0)")
    await page.set_viewport_size({"width": 1280, "height": 1500})
    await screenshot(page, "workflow-editor")
    await page.set_viewport_size(WIDE)

    # An event through the real worker and beat: the in-app message is left unread, so after
    # the delay the branch sends the email.
    code = uuid.uuid4().hex[:6]
    service = token("workflows-service", "service")
    sent = await graphql(
        stack,
        SEND,
        {"input": {"type": name, "userIds": [RECIPIENT], "payload": {"item": code}}},
        service,
    )
    assert sent["sendEvent"]["__typename"] == "EventAccepted", sent
    event_id = sent["sendEvent"]["eventId"]

    # The editor's runs list: the new run, opened on its timeline.
    await page.click("#wf-runs-refresh")
    run_row = page.locator(f"#wf-runs-table tr:has(td:text-is('{RECIPIENT}'))").first
    for _ in range(50):
        if await run_row.count():
            break
        await asyncio.sleep(0.2)
        await page.click("#wf-runs-refresh")
    await run_row.locator("a.run-link").click()
    # The dry run's `if` edits left the editor changed since the save: leaving asks first.
    await expect(page.locator("#leave-dialog")).to_contain_text("not saved")
    await page.click("#leave-anyway")
    await expect(page).to_have_url(re.compile("#/workflow-runs/[0-9a-f-]+$"))
    await expect(page.locator("#run-detail")).to_contain_text(event_id)
    timeline = page.locator("#run-timeline")
    await expect(timeline.locator("li[data-path='0']")).to_have_attribute(
        "data-status", "done", timeout=30_000
    )
    # The delay, then the branch taking `then`, then the email: the run completes.
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
    assert await timeline.locator("li").evaluate_all("l => l.map(i => i.dataset.path)") == [
        "0",
        "1",
        "2",
        "2.then.0",
    ]
    await expect(timeline.locator("li[data-path='2.then.0']")).to_have_attribute(
        "data-outcome", "sent"
    )
    await expect(timeline.locator("li[data-path='2'] .wf-summary")).to_have_text(
        "Condition true: took then."
    )
    await expect(timeline.locator("li[data-path='2.then.0'] .wf-summary")).to_have_text(
        "email: sent"
    )
    await screenshot(page, "workflow-run")

    mails: list[Any] = []
    for _ in range(100):
        mails = [m for m in worker_stack.smtp.to(RECIPIENT_EMAIL) if code in m["Subject"]]
        if mails:
            break
        await asyncio.sleep(0.1)
    assert len(mails) == 1
    assert mails[0]["Subject"] == f"Still there, Emma? {code}"

    # From the timeline to the email's delivery in the history.
    await timeline.locator("li[data-path='2.then.0'] a.run-deliveries").click()
    await expect(page).to_have_url(re.compile("#/history\\?eventId="))
    await expect(page.locator("#history-table tbody tr")).to_have_count(1)
    await expect(page.locator("#history-table tbody tr")).to_contain_text(RECIPIENT)
    # And from the delivery's drawer back to the run that sent it.
    await page.locator("#history-table tbody tr button.link").click()
    await expect(page.locator("#delivery-run")).to_contain_text("Sent by step email")
    await page.click("#delivery-run-link")
    await expect(page).to_have_url(re.compile("#/workflow-runs/[0-9a-f-]+$"))
    await expect(page.locator("#run-status")).to_have_text("completed")

    # Back on the list: version 2 and its steps.
    await go(page, "#/workflows")
    await expect(listed.locator(".workflow-version")).to_have_text("v2")
    await expect(listed.locator(".workflow-steps")).to_have_text("send → delay → branch")


async def test_every_step_type_has_its_form_and_errors_find_nested_fields(
    page: Page, stack: Stack
) -> None:
    manager = token("workflows-manager", "manager")
    name, slug = await event_type(stack, manager)
    other, _ = await event_type(stack, manager)
    # More types than one query may ask for (30 aliases; the page asks for 20 a query): the
    # list still shows each one's version.
    types = (await graphql(stack, "{ eventTypes { name } }", {}, manager))["eventTypes"]
    for _ in range(max(0, 32 - len(types))):
        await event_type(stack, manager)
    count = len((await graphql(stack, "{ eventTypes { name } }", {}, manager))["eventTypes"])
    assert count > 30  # the API allows 30 aliases a query
    await sign_in(page, stack, manager, "#/workflows")
    rows = page.locator("#workflows-table tbody tr")
    await expect(rows).to_have_count(count)
    versions = await rows.locator(".workflow-version").all_text_contents()
    assert all(re.fullmatch(r"v\d+", v) for v in versions), versions
    await go(page, f"#/workflows/{name}")
    await expect(page.locator("#wf-save-status")).to_have_text("Version 1 is current.")

    # Remove the one send; add one step of each other type, a fetch inside a branch's `else`.
    await page.click("#step-0-remove")
    await expect(page.locator("#wf-steps > .wf-list > .wf-none")).to_have_text("No steps.")
    for kind in ["throttle", "digest", "delay", "delay", "branch"]:
        await page.select_option("#add-step-type-root", kind)
        await page.click("#add-step-root")
    assert await step_types(page) == ["throttle", "digest", "delay", "delay", "branch"]
    await page.fill("#step-0-limit", "3")
    await page.fill("#step-0-window", "1d")
    await page.fill("#step-1-window", "15m")
    await page.select_option("#step-2-mode", "until")
    await page.fill("#step-2-until", "payload.appointment_at")
    await page.fill("#step-2-offset", "-1h")
    await page.select_option("#step-3-mode", "at")
    await page.fill("#step-3-at", "09:30")
    await page.fill("#step-4-condition", "payload.vip")
    await page.select_option("#add-step-type-4-else", "fetch")
    await page.click("#add-step-4-else")
    await page.fill("#step-4-else-0-name", "crm")
    await page.fill("#step-4-else-0-url", "https://crm.example.com/users/{{ user.id }}")
    await page.select_option("#step-4-else-0-method", "POST")
    await page.fill("#step-4-else-0-timeout", "4")
    await page.select_option("#add-step-type-4-then", "delay")
    await page.click("#add-step-4-then")
    await page.fill("#step-4-then-0-name", "wait")
    await page.fill("#step-4-then-0-duration", "soon")

    # A bad duration two levels down: at its own field. An unknown type to cancel: at cancels.
    await page.click("#wf-save")
    await expect(page.locator("#step-4-then-0-duration-error")).to_contain_text(
        "'soon' is not a duration"
    )
    await page.fill("#step-4-then-0-duration", "90")
    await page.fill("#wf-cancels", "no.such.type")
    await page.click("#wf-save")
    await expect(page.locator("#step-4-then-0-duration-error")).to_be_hidden()
    await expect(page.locator("#wf-cancels-error")).to_contain_text("no.such.type")
    await page.fill("#wf-cancels", other)
    await page.click("#wf-save")
    await expect(page.locator("#wf-save-status")).to_have_text("Saved as version 2.")

    saved = (await graphql(stack, WORKFLOW, {"type": name}, manager))["workflow"]
    steps = saved["steps"]
    assert saved["cancels"] == [other]
    assert [s["type"] for s in steps] == ["throttle", "digest", "delay", "delay", "branch"]
    assert (steps[0]["limit"], steps[0]["window"]) == (3, 86400)
    assert steps[1]["window"] == 900
    assert steps[2]["until"] == "payload.appointment_at" and steps[2]["offset"] == -3600
    assert steps[3]["at"] == "09:30"
    assert steps[4]["condition"] == "payload.vip"
    assert steps[4]["then"][0]["duration"] == 90
    fetch = steps[4]["else"][0]
    assert fetch["name"] == "crm" and fetch["method"] == "POST" and fetch["timeout"] == 4
    assert fetch["url"] == "https://crm.example.com/users/{{ user.id }}"

    # An old version loaded into the editor and saved again becomes version 3.
    await page.click("#wf-versions-table tr[data-version='1'] button")
    assert await step_types(page) == ["send"]
    await expect(page.locator("#step-0-template")).to_have_value(slug)
    await page.click("#wf-save")
    await expect(page.locator("#wf-save-status")).to_have_text("Saved as version 3.")
    again = (await graphql(stack, WORKFLOW, {"type": name}, manager))["workflow"]
    assert again["version"] == 3 and [s["type"] for s in again["steps"]] == ["send"]
