"""Campaigns from the admin page: planned on the send screen (with the schedule echoed in words
by the browser), listed with their next run, sent now and recurring with a real worker and
``herald beat``, test-sent, paused, resumed and cancelled from the detail view."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect

from tests.admin.conftest import (
    NARROW,
    Stack,
    WorkerStack,
    create_template,
    go,
    graphql,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.processes import Process

CREATE_CAMPAIGN = """mutation($input: CampaignInput!) { createCampaign(input: $input) {
  __typename ... on Campaign { id status nextRunAt } ... on Error { code message field } } }"""
CANCEL = """mutation($id: ID!) {
  cancelCampaign(id: $id) { __typename ... on Campaign { status } } }"""
CAMPAIGN = """query($id: ID!) { campaign(id: $id) { status nextRunAt runsStarted
  runs { kind status recipients counts { channel status count } } } }"""
RECIPIENT = "demo-user-emma"  # in the stand-in's bundled demo users
RECIPIENT_EMAIL = "emma.walker@example.com"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def email_template(stack: Stack, bearer: str, name: str = "Weekly picks") -> str:
    slug = unique("picks")
    content = [
        {
            "channel": "EMAIL",
            "subject": "Hello {{ user.first_name }}",
            "body": "This week: {{ payload.offer }}",
        }
    ]
    return await create_template(stack, bearer, slug, name, content)


async def create_campaign(
    stack: Stack, bearer: str, name: str, template_slug: str, **values: Any
) -> dict[str, Any]:
    """Create an email campaign to RECIPIENT named ``name`` (made unique) sending
    ``template_slug``; ``values`` add to or replace the rest of its input."""
    input = {
        "name": unique(name),
        "templateSlug": template_slug,
        "channels": ["EMAIL"],
        "audience": {"userIds": [RECIPIENT]},
        **values,
    }
    data = await graphql(stack, CREATE_CAMPAIGN, {"input": input}, bearer)
    result: dict[str, Any] = data["createCampaign"]
    assert result["__typename"] == "Campaign", result
    return result


async def campaign(stack: Stack, bearer: str, campaign_id: str) -> dict[str, Any]:
    data = await graphql(stack, CAMPAIGN, {"id": campaign_id}, bearer)
    found: dict[str, Any] = data["campaign"]
    return found


async def fill_template_and_channel(page: Page, slug: str) -> None:
    await page.select_option("#send-template", slug)
    await page.check("#send-channel-EMAIL")
    await page.fill("#send-payload", '{"offer": "20% off"}')


async def send_form(page: Page, stack: Stack, bearer: str, route: str) -> str:
    """A new email template, chosen (with the email channel) on the send form at ``route``;
    its slug."""
    slug = await email_template(stack, bearer)
    await sign_in(page, stack, bearer, route)
    await fill_template_and_channel(page, slug)
    return slug


async def test_a_recurring_campaign_is_echoed_in_words_and_listed_with_its_next_run(
    page: Page, stack: Stack, admin_token: str
) -> None:
    slug = await email_template(stack, admin_token)
    name = unique("Weekly picks")
    # Two more, so the list has something to filter.
    await create_campaign(stack, admin_token, "Spring sale draft", slug, draft=True)
    await create_campaign(
        stack,
        admin_token,
        "Hourly digest",
        slug,
        audience={"allUsers": True},
        schedule={"cron": "0 * * * 1-5", "timezone": "UTC", "maxRuns": 40},
    )

    await sign_in(page, stack, admin_token, "#/send")
    await fill_template_and_channel(page, slug)
    await page.check("#recipients-all")
    await expect(page.locator("#send-recipients")).to_be_hidden()
    await page.check("#when-recurring")
    # A recurring send, or one to all users, is a campaign.
    await expect(page.locator("#send-as-campaign")).to_be_checked()
    await expect(page.locator("#send-as-campaign")).to_be_disabled()
    await expect(page.locator("#send-submit")).to_have_text("Create campaign")
    await page.fill("#campaign-name", name)

    # The schedule is said back in words as it is typed, with its next time in the zone.
    echo = page.locator("#schedule-echo")
    await page.fill("#send-cron", "*/15 9-17 * * *")
    await page.fill("#send-timezone", "Europe/Moscow")
    await expect(echo).to_contain_text("Every 15 minutes from 09:00 to 17:45, Europe/Moscow time.")
    await page.click("button[data-cron='0 9 * * 1']")
    await expect(page.locator("#send-cron")).to_have_value("0 9 * * 1")
    await expect(echo).to_contain_text("Every Monday at 09:00, Europe/Moscow time.")
    await expect(echo).to_contain_text("Next:")
    await expect(echo).to_have_attribute("data-state", "ok")
    browser_next = instant(await echo.get_attribute("data-next") or "")
    moscow = browser_next.astimezone(ZoneInfo("Europe/Moscow"))
    assert (moscow.weekday(), moscow.hour, moscow.minute) == (0, 9, 0), moscow
    await screenshot(page, "send-recurring", full_page=True)

    await page.click("#send-submit")
    created = page.locator("#campaign-created")
    await expect(created).to_contain_text(f"Campaign “{name}” created: scheduled.")
    await expect(created).to_contain_text("Every Monday at 09:00, Europe/Moscow time.")
    # The server's next run, shown too, is the one the browser computed.
    server_next = await page.locator("#created-next-run").get_attribute("datetime")
    assert server_next and instant(server_next) == browser_next
    campaign_id = await created.get_attribute("data-campaign-id")

    # Listed, newest first, with its schedule in words and its next run.
    await page.click("#campaign-created >> text=All campaigns")
    await expect(page.locator("h1")).to_have_text("Campaigns")
    row = page.locator(f"#campaigns-table tr[data-campaign-id='{campaign_id}']")
    await expect(row).to_have_attribute("data-status", "SCHEDULED")
    await expect(row.locator(".badge")).to_have_text("Scheduled")
    await expect(row.locator(".schedule-words")).to_have_text(
        "Every Monday at 09:00, Europe/Moscow time"
    )
    await expect(row.locator(".next-run time")).to_have_attribute("datetime", server_next)
    await expect(row).to_contain_text("All users")
    await expect(page.locator("#campaigns-table tbody tr").first).to_have_attribute(
        "data-campaign-id", campaign_id or ""
    )
    await screenshot(page, "campaigns")

    # Status filters, from the keyboard: Paused alone hides it; Scheduled brings it back.
    await page.focus("#campaign-status-PAUSED")
    await page.keyboard.press("Space")
    await expect(page.locator("#campaign-status-PAUSED")).to_be_checked()
    await expect(row).to_have_count(0)
    await expect(page).to_have_url(f"{stack.admin_url}#/campaigns?status=PAUSED")
    await page.check("#campaign-status-SCHEDULED")
    await expect(row).to_have_count(1)
    await expect(page.locator("#campaigns-table tr[data-status='DRAFT']")).to_have_count(0)
    # Name search; a search that matches nothing says so.
    await page.fill("#campaign-search", name.upper())
    await expect(page.locator("#campaigns-table tbody tr")).to_have_count(1)
    await page.fill("#campaign-search", "no campaign is called this")
    await expect(page.locator(".empty-state")).to_contain_text("No campaigns match these filters.")
    await page.click("#campaign-filters-clear")
    await expect(row).to_have_count(1)
    await expect(page.locator("#campaigns-table tr[data-status='DRAFT']")).not_to_have_count(0)

    # The filters are in the URL: a reload keeps them.
    await go(page, "#/campaigns?status=DRAFT")
    await expect(page.locator("#campaign-status-DRAFT")).to_be_checked()
    await expect(page.locator("#campaigns-table tbody tr[data-status='DRAFT']")).not_to_have_count(
        0
    )
    await expect(page.locator("#campaigns-table tr[data-status='SCHEDULED']")).to_have_count(0)


async def test_schedule_errors_are_shown_at_their_fields(
    page: Page, stack: Stack, admin_token: str
) -> None:
    slug = await email_template(stack, admin_token)
    await sign_in(page, stack, admin_token, "#/send?when=recurring")
    await expect(page.locator("#when-recurring")).to_be_checked()
    await fill_template_and_channel(page, slug)
    await page.fill("#send-recipients", RECIPIENT)

    # The browser cannot read it and says why; the API refuses it, at the cron field.
    await page.fill("#send-cron", "0 25 * * *")
    echo = page.locator("#schedule-echo")
    await expect(echo).to_have_attribute("data-state", "warning")
    await expect(echo).to_contain_text("the hour 25 is out of range (0-23).")
    await page.click("#send-submit")
    cron_error = page.locator("#send-cron-error")
    await expect(cron_error).to_contain_text("'0 25 * * *' is not a 5-field cron expression")
    await expect(page.locator("#send-cron")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#send-cron")).to_be_focused()
    await expect(page.locator("#campaign-created")).to_have_count(0)
    await screenshot(page, "send-cron-error")

    # A zone the API does not know, at the zone field; the cron error is gone.
    await page.fill("#send-cron", "*/30 * * * *")
    await page.fill("#send-timezone", "Mars/Olympus_Mons")
    await expect(echo).to_contain_text("is not a time zone this browser knows")
    await page.click("#send-submit")
    await expect(page.locator("#send-timezone-error")).to_contain_text(
        "'Mars/Olympus_Mons' is not a time zone"
    )
    await expect(cron_error).to_be_hidden()

    # No recipients: the API's audience error, in the form's words, at the recipients.
    await page.fill("#send-timezone", "UTC")
    await page.fill("#send-recipients", "")
    await page.click("#send-submit")
    await expect(page.locator("#send-recipients-error")).to_have_text(
        "Give the recipients' user ids, choose All users, or name topics."
    )
    await expect(page.locator("#send-timezone-error")).to_be_hidden()

    # An interval below one second is caught by the page, at the interval.
    await page.fill("#send-recipients", RECIPIENT)
    await page.check("#repeat-interval")
    await page.fill("#send-every", "0")
    await expect(echo).to_contain_text("whole number of seconds")
    await page.click("#send-submit")
    await expect(page.locator("#send-every-error")).to_contain_text("1 or more")


async def test_a_campaign_sent_now_shows_its_run_with_counts_and_a_test_send(
    page: Page, stack: Stack, admin_token: str, worker_stack: WorkerStack, beat: Process
) -> None:
    await send_form(page, stack, admin_token, "#/send")
    name = unique("Now to Emma")
    await page.fill("#send-recipients", RECIPIENT)
    await expect(page.locator("#campaign-fields")).to_be_hidden()
    await page.check("#send-as-campaign")
    await page.fill("#campaign-name", name)
    await expect(page.locator("#send-submit")).to_have_text("Send now")
    await page.click("#send-submit")
    created = page.locator("#campaign-created")
    await expect(created).to_contain_text(f"Campaign “{name}” created")
    await expect(created).to_contain_text("Once, right away.")

    # The detail view follows the run until it completes, with its counts per channel.
    await page.click("#created-campaign-link")
    await expect(page.locator("h1")).to_have_text(name)
    run = page.locator("#runs-table tr.run[data-kind='SCHEDULED']")
    await expect(run).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    sent = run.locator("li[data-channel='EMAIL'] .count[data-status='SENT']")
    await expect(sent).to_have_attribute("data-count", "1", timeout=30_000)
    await expect(sent).to_have_text("1 sent")
    await expect(page.locator("#campaign-status .badge")).to_have_text("Completed")
    await expect(page.locator("#campaign-schedule")).to_contain_text("Once, right away.")
    await expect(page.locator("#runs-chart g[data-run-id]")).to_have_count(1)
    await expect(page.locator("#campaign-pause")).to_be_hidden()
    await expect(page.locator("#campaign-cancel")).to_be_hidden()

    # A test send asks for a user id, and refuses none.
    await page.click("#campaign-test-send")
    dialog = page.locator("#test-send-dialog")
    await expect(page.locator("#test-user-id")).to_be_focused()
    await page.click("#test-send-submit")
    await expect(page.locator("#test-user-id-error")).to_contain_text("Give the id of the user")
    await page.fill("#test-user-id", "demo-manager")
    await page.keyboard.press("Enter")
    await expect(dialog).to_have_count(0)
    test_run = page.locator("#runs-table tr.run[data-kind='TEST']")
    await expect(test_run).to_contain_text("Test to demo-manager")
    await expect(
        test_run.locator("li[data-channel='EMAIL'] .count[data-status='SENT']")
    ).to_have_attribute("data-count", "1", timeout=30_000)
    await expect(page.locator("#runs-chart g[data-run-id]")).to_have_count(2)

    # The mail went out, once to each.
    for address in (RECIPIENT_EMAIL, "manager@example.com"):
        for _ in range(50):
            if worker_stack.smtp.to(address):
                break
            await asyncio.sleep(0.1)
        mails = [m for m in worker_stack.smtp.to(address) if "20% off" in m.as_string()]
        assert len(mails) == 1, address


async def test_an_interval_campaign_runs_from_beat_until_its_maximum(
    page: Page, stack: Stack, admin_token: str, worker_stack: WorkerStack, beat: Process
) -> None:
    await send_form(page, stack, admin_token, "#/send?when=recurring")
    name = unique("Every two seconds")
    await page.fill("#send-recipients", f"{RECIPIENT}, demo-user-james")
    await page.check("#repeat-interval")
    await page.fill("#send-every", "2")
    await page.fill("#send-max-runs", "3")
    await page.fill("#campaign-name", name)
    echo = page.locator("#schedule-echo")
    await expect(echo).to_contain_text("Every 2 seconds, at most 3 runs.")
    await expect(page.locator("#schedule-echo .echo-then")).to_contain_text("Then:")
    await page.click("#send-submit")
    await expect(page.locator("#campaign-created")).to_contain_text("scheduled")
    await page.click("#created-campaign-link")

    # Beat fires it three times, the worker sends each run; then it is complete.
    runs = page.locator("#runs-table tr.run[data-kind='SCHEDULED']")
    await expect(runs).to_have_count(3, timeout=40_000)
    await expect(page.locator("#campaign-status .badge")).to_have_text("Completed", timeout=30_000)
    for i in range(3):
        await expect(runs.nth(i)).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
        await expect(
            runs.nth(i).locator("li[data-channel='EMAIL'] .count[data-status='SENT']")
        ).to_have_attribute("data-count", "2", timeout=30_000)
    await expect(page.locator("#campaign-runs-started")).to_have_text("3 of at most 3")
    await expect(page.locator("#campaign-next-run")).to_have_text("None")
    await expect(page.locator("#runs-chart g[data-run-id]")).to_have_count(3)
    await page.locator("h1").focus()
    await screenshot(page, "campaign-detail", full_page=True)
    # At tablet width the plan, the chart and the runs stack; nothing scrolls sideways.
    await page.set_viewport_size(NARROW)
    overflow = await sideways_overflow(page)
    assert overflow <= 0, f"the campaign scrolls sideways by {overflow}px at 800px"
    await screenshot(page, "campaign-detail-800px", full_page=True)

    stored = await campaign(stack, admin_token, await current_id(page))
    assert stored["status"] == "COMPLETED" and stored["runsStarted"] == 3


async def current_id(page: Page) -> str:
    return page.url.rsplit("/", 1)[-1]


async def test_pause_resume_and_cancel_from_the_detail_view(
    page: Page, stack: Stack, admin_token: str
) -> None:
    slug = await email_template(stack, admin_token)
    schedule = {"cron": "0 9 * * 1", "timezone": "Europe/Moscow"}
    first = await create_campaign(stack, admin_token, "Monday news", slug, schedule=schedule)
    await sign_in(page, stack, admin_token, f"#/campaigns/{first['id']}")
    status = page.locator("#campaign-status .badge")
    next_run = page.locator("#campaign-next-run")
    await expect(status).to_have_text("Scheduled")
    await expect(page.locator("#campaign-schedule")).to_contain_text(
        "Every Monday at 09:00, Europe/Moscow time."
    )
    await expect(next_run.locator("time")).to_have_attribute("datetime", first["nextRunAt"])
    await expect(page.locator(".campaign-runs .empty-state")).to_contain_text("No runs yet.")

    await page.click("#campaign-pause")
    await expect(status).to_have_text("Paused")
    await expect(next_run).to_have_text("None while paused")
    await expect(page.locator("#campaign-pause")).to_be_hidden()
    # Focus lands on the next action rather than being lost with the hidden button.
    await expect(page.locator("#campaign-resume")).to_be_focused()
    assert (await campaign(stack, admin_token, first["id"]))["status"] == "PAUSED"

    await page.keyboard.press("Enter")
    await expect(status).to_have_text("Scheduled")
    await expect(next_run.locator("time")).to_have_attribute("datetime", first["nextRunAt"])

    # Cancelling asks first; keeping it changes nothing.
    await page.click("#campaign-cancel")
    dialog = page.locator("#cancel-dialog")
    await expect(dialog).to_contain_text("will stop for good")
    await dialog.get_by_role("button", name="Keep it").click()
    await expect(dialog).to_have_count(0)
    await expect(status).to_have_text("Scheduled")
    await page.click("#campaign-cancel")
    await page.click("#confirm-cancel")
    await expect(status).to_have_text("Cancelled")
    for action in ("pause", "resume", "cancel", "test-send", "send-now"):
        await expect(page.locator(f"#campaign-{action}")).to_be_hidden()
    assert (await campaign(stack, admin_token, first["id"]))["status"] == "CANCELLED"

    # The API's refusal is shown by the buttons: here the campaign was cancelled elsewhere.
    second = await create_campaign(
        stack, admin_token, "Cancelled elsewhere", slug, schedule=schedule
    )
    await go(page, f"#/campaigns/{second['id']}")
    await expect(status).to_have_text("Scheduled")
    await graphql(stack, CANCEL, {"id": second["id"]}, admin_token)
    await page.click("#campaign-pause")
    await expect(page.locator("#campaign-action-error")).to_contain_text(
        "A cancelled campaign cannot be paused"
    )
    await expect(status).to_have_text("Cancelled")

    # At tablet width nothing scrolls sideways.
    await page.set_viewport_size(NARROW)
    await page.wait_for_load_state("networkidle")
    overflow = await sideways_overflow(page)
    assert overflow <= 0, f"the campaign scrolls sideways by {overflow}px at 800px"

    # An id that does not exist.
    await go(page, "#/campaigns/00000000-0000-0000-0000-000000000000")
    await expect(page.locator("h1")).to_have_text("Campaign not found")
    await expect(page.locator(".empty-state")).to_contain_text("There is no campaign with this id.")
