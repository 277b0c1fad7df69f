"""The template editor in a real Chromium with the newer channels' content: Slack blocks and
mobile push data, badge and sound, previewed by the API and saved."""

from __future__ import annotations

import json
import uuid

from playwright.async_api import Page, expect

from tests.admin.conftest import Stack, graphql, sign_in

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ payload.movie }}* tonight"}}]


async def new_template(page: Page, stack: Stack, bearer: str, prefix: str, name: str) -> str:
    """Sign in on a new template's form, named ``name`` with a new slug from ``prefix``, its
    email content (where a new template starts) filled in; the slug."""
    slug = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await sign_in(page, stack, bearer, "#/templates/new")
    await page.fill("#template-slug", slug)
    await page.fill("#template-name", name)
    await page.fill("#field-subject", "Movie night")
    await page.fill("#field-body", "{{ payload.movie }} tonight")
    return slug


async def test_slack_and_mobile_push_content_preview_and_save(
    page: Page, stack: Stack, admin_token: str
) -> None:
    slug = await new_template(page, stack, admin_token, "chat", "Movie night, everywhere")
    preview = page.locator("#preview")

    await page.click("#tab-SLACK")
    await page.click("#add-channel")
    await page.fill("#field-body", "{{ payload.movie }} tonight, {{ user.first_name }}")
    await page.fill("#field-blocks", json.dumps(BLOCKS))
    await page.fill("#sample-variables", '{"payload": {"movie": "Dune <3"}}')
    # Rendered by the API, variables escaped as Slack wants.
    await expect(preview.locator(".rendered-body")).to_have_text("Dune &lt;3 tonight, Ada")
    rendered = preview.locator("[data-field='blocks']")
    await expect(rendered).to_contain_text('"text": "*Dune &lt;3* tonight"')

    # Blocks that are not a list are refused by the API, shown at the field.
    await page.fill("#field-blocks", '{"type": "divider"}')
    await expect(preview).to_contain_text("blocks is a non-empty list")
    await page.fill("#field-blocks", json.dumps(BLOCKS))

    await page.click("#tab-PUSH_MOBILE")
    await page.click("#add-channel")
    await page.fill("#field-title", "Movie night")
    await page.fill("#field-body", "{{ payload.movie }} starts soon")
    await page.fill("#field-data", '{"screen": "movies/{{ payload.movie }}"}')
    await page.fill("#field-badge", "2")
    await page.fill("#field-sound", "chime.caf")
    await expect(preview.locator("[data-field='data']")).to_contain_text(
        '"screen": "movies/Dune <3"'
    )
    await expect(preview.locator("[data-field='badge']")).to_have_text("2")

    await page.click("#save-template")
    await expect(page).to_have_url(f"{stack.admin_url}#/templates/edit/{slug}")
    await expect(page.locator("h1 .badge")).to_have_text("version 1")

    data = await graphql(
        stack,
        "query($s: String!) { template(slug: $s) { content { channel blocks data badge sound } } }",
        {"s": slug},
        admin_token,
    )
    by_channel = {c["channel"]: c for c in data["template"]["content"]}
    assert by_channel["SLACK"]["blocks"] == BLOCKS
    assert by_channel["PUSH_MOBILE"]["data"] == {"screen": "movies/{{ payload.movie }}"}
    assert (by_channel["PUSH_MOBILE"]["badge"], by_channel["PUSH_MOBILE"]["sound"]) == (
        2,
        "chime.caf",
    )

    # Opened again, the JSON fields are editable text.
    await page.reload()
    await page.click("#tab-SLACK")
    assert json.loads(await page.locator("#field-blocks").input_value()) == BLOCKS


ACTIONS = [
    {"label": "Watch {{ payload.movie }}", "url": "/movies/{{ payload.id }}"},
    {"label": "Later", "name": "snooze"},
]


async def test_in_app_actions_are_previewed_refused_at_their_field_and_saved(
    page: Page, stack: Stack, admin_token: str
) -> None:
    slug = await new_template(page, stack, admin_token, "actions", "Movie night, in the app")
    preview = page.locator("#preview")

    await page.click("#tab-IN_APP")
    await page.click("#add-channel")
    await page.fill("#field-title", "Movie night")
    await page.fill("#field-body", "{{ payload.movie }} starts soon")
    await page.fill("#sample-variables", '{"payload": {"movie": "Dune", "id": 7}}')
    # A script URL is refused by the API, at the field.
    await page.fill("#field-actions", json.dumps([{"label": "Go", "url": "javascript:alert(1)"}]))
    await expect(preview).to_contain_text("starts with https://, http:// or /")
    await page.fill("#field-actions", json.dumps(ACTIONS))
    buttons = preview.locator("[data-field='actions'] .btn")
    await expect(buttons).to_have_text(["Watch Dune", "Later"])
    await expect(buttons.first).to_have_attribute("title", "Opens /movies/7")

    await page.click("#save-template")
    await expect(page).to_have_url(f"{stack.admin_url}#/templates/edit/{slug}")
    data = await graphql(
        stack,
        "query($s: String!) { template(slug: $s) { content { channel "
        "actions { label url name } } } }",
        {"s": slug},
        admin_token,
    )
    in_app = next(c for c in data["template"]["content"] if c["channel"] == "IN_APP")
    assert in_app["actions"] == [
        {"label": "Watch {{ payload.movie }}", "url": "/movies/{{ payload.id }}", "name": None},
        {"label": "Later", "url": None, "name": "snooze"},
    ]
    # Opened again, the actions are editable JSON without the empty members.
    await page.reload()
    await page.click("#tab-IN_APP")
    assert json.loads(await page.locator("#field-actions").input_value()) == ACTIONS
