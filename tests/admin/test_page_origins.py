"""The admin page and the hosted preference page load nothing from another origin and break
no rule of their Content-Security-Policy, in a real Chromium."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from backend.services.unsubscribe import sign_token
from tests.admin.conftest import Stack, _config_for
from tests.admin.same_origin import assert_policy, same_origin_context
from tests.conftest import make_settings


async def test_the_admin_page_stays_on_its_origin(
    browser: Browser, stack: Stack, admin_token: str
) -> None:
    async with same_origin_context(browser, stack.api.url) as guard:
        config = _config_for(stack).replace(f'"{stack.auth_url}"', "null")

        async def serve_config(route) -> None:  # type: ignore[no-untyped-def]
            await route.fulfill(content_type="text/javascript", body=config)

        await guard.context.route("**/admin/config.js", serve_config)
        page = await guard.new_page()
        response = await page.goto(stack.admin_url)
        assert response is not None and response.status == 200
        assert_policy(await response.all_headers())
        await page.wait_for_selector("#app[data-ready='true']")
        await page.fill("#token", admin_token)
        await page.click("#token-form button[type=submit]")
        await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        for route, heading in (
            ("#/send", "Send a message"),
            ("#/campaigns", "Campaigns"),
            ("#/dead-letters", "Dead letters"),
            ("#/templates/new", "New template"),
            ("#/templates", "Templates"),
        ):
            await page.evaluate("(hash) => { window.location.hash = hash; }", route)
            await expect(page.locator("h1")).to_contain_text(heading)
        guard.assert_clean()


async def test_the_preference_page_stays_on_its_origin(browser: Browser, stack: Stack) -> None:
    link = sign_token(make_settings(), user_id="u-origins", event_type="user_registered")
    async with same_origin_context(browser, stack.api.url) as guard:
        page = await guard.new_page()
        response = await page.goto(f"{stack.api.url}/preferences/{link}")
        assert response is not None and response.status == 200
        assert_policy(await response.all_headers())
        await expect(page.locator("h1")).to_have_text("Your notifications")
        await page.click("button[type=submit]")
        await expect(page.locator(".note")).to_contain_text("Saved")
        guard.assert_clean()
