"""API keys from the admin page: made for a service with its grants (typed errors at their
fields), shown once, used by a service over HTTP, listed with their last use, and revoked;
a manager's navigation has no API keys screen."""

from __future__ import annotations

import re
import uuid

import httpx
from playwright.async_api import Page, expect

from tests.admin.conftest import Stack, admin_screen, go, screenshot, sign_in, token

VIEWER = "{ viewer { id roles } }"


async def viewer_with_key(stack: Stack, key: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
        response = await client.post("/graphql", json={"query": VIEWER}, headers={"X-Api-Key": key})
    body: dict[str, object] = response.json()
    return body


async def test_a_key_is_made_shown_once_used_and_revoked(page: Page, stack: Stack) -> None:
    service = f"billing-{uuid.uuid4().hex[:6]}"
    await admin_screen(page, stack, token("keys-admin", "admin"), "api-keys", "API keys")

    # Nothing chosen and a name the API refuses: each error at its field, the dialog open.
    await page.click("#new-api-key")
    await page.fill("#api-key-name", "!billing")
    await page.click("#api-key-save")
    await expect(page.locator("#api-key-name-error")).to_contain_text("A key's name is 1-100")
    await expect(page.locator("#api-key-name")).to_have_attribute("aria-invalid", "true")
    await page.fill("#api-key-name", service)
    await page.click("#api-key-save")
    await expect(page.locator("#api-key-grants-error")).to_contain_text(
        "at least one role or scope"
    )
    await page.check("#grant-events-send")
    await page.check("#grant-templates-read")
    await page.click("#api-key-save")

    # The key, once.
    secret_box = page.locator("#api-key-secret")
    await expect(secret_box).to_have_value(re.compile(r"^hk_[A-Za-z0-9]{10}_[A-Za-z0-9_-]{43}$"))
    secret = await secret_box.input_value()
    prefix = secret[:13]
    await screenshot(page, "api-key-created")
    await page.click("#api-key-done")
    await expect(page.locator("#api-key-created")).to_have_count(0)
    assert secret not in await page.content()

    row = page.locator(f"#api-keys-table tr[data-key-prefix='{prefix}']")
    await expect(row).to_contain_text(service)
    await expect(row.locator(".key-prefix")).to_have_text(f"{prefix}…")
    await expect(row.locator(".grants")).to_have_text("events:sendtemplates:read")
    await expect(row.locator(".last-used")).to_have_text("Never")
    await expect(row.locator(".key-state")).to_have_text("Active")

    # A service uses it; the list shows when.
    seen = await viewer_with_key(stack, secret)
    assert seen["data"] == {"viewer": {"id": f"api-key:{prefix}", "roles": []}}
    await page.reload()
    await page.wait_for_selector("#app[data-ready='true']")
    await expect(row.locator(".last-used")).not_to_have_text("Never")
    await screenshot(page, "api-keys")

    # Revoked after a confirmation: gone from the list, shown with the revoked ones, refused.
    await row.locator(".revoke-key").click()
    await expect(page.locator("#revoke-dialog")).to_contain_text(f"Revoke {prefix}… ({service})")
    await page.click("#revoke-confirm")
    await expect(page.locator(".toast")).to_contain_text(f"Key {prefix} revoked.")
    await expect(row).to_have_count(0)
    await page.check("#api-keys-revoked")
    await expect(row.locator(".key-state")).to_contain_text("Revoked")
    await expect(row.locator(".revoke-key")).to_have_count(0)
    refused = await viewer_with_key(stack, secret)
    assert refused["errors"][0]["message"] == "The API key has been revoked"  # type: ignore[index]


async def test_managers_have_no_api_keys_screen(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, token("keys-manager", "manager"), "#/topics")
    await expect(page.locator(".nav a[data-nav='topics']")).to_be_visible()
    await expect(page.locator(".nav a[data-nav='api-keys']")).to_be_hidden()
    # Reached by its address, the screen says what the API said.
    await go(page, "#/api-keys")
    await expect(page.locator(".alert-error")).to_contain_text("admin")
