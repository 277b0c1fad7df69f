"""Signing in to the admin page with a login and password at the auth service (the stand-in,
a real process), and the access token renewed with the refresh token before it expires,
without a sign-in screen, while the page keeps working."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.admin.conftest import (
    REDIS_URL,
    Console,
    Stack,
    _config_for,
    go,
    screenshot,
)
from tests.conftest import LiveServer, start_live_server, stop_live_server
from tests.processes import auth_standin

ACCESS_TTL = 4  # seconds: the page must renew the token several times in this test
TOKEN_KEY = "herald.admin.token"
REFRESH_KEY = "herald.admin.refresh"
UNAUTHORIZED_LOGGED = (
    "console.error: Failed to load resource: the server responded with a status of 401 "
    "(Unauthorized)"
)


@dataclass
class ServiceStack:
    """The stand-in issuing short-lived tokens, and an API whose admin page may call it (its
    content security policy lets the page connect to HERALD_AUTH_URL only)."""

    standin: str
    api: LiveServer

    @property
    def admin_url(self) -> str:
        return f"{self.api.url}/admin/"


@pytest.fixture(scope="module")
def service_stack(stack: Stack) -> Iterator[ServiceStack]:
    with short_lived_standin() as standin:
        api = start_live_server(
            {
                "HERALD_SERVE_ADMIN": "true",
                "HERALD_AUTH_URL": standin,
                "HERALD_RABBITMQ_URL": stack.rabbitmq_url,
                "HERALD_REDIS_URL": REDIS_URL,
            }
        )
        try:
            yield ServiceStack(standin=standin, api=api)
        finally:
            stop_live_server(api)


def short_lived_standin() -> AbstractContextManager[str]:
    """The auth stand-in issuing access tokens that live ACCESS_TTL seconds."""
    return auth_standin("--access-ttl", str(ACCESS_TTL))


async def use_standin(page: Page, stack: Stack, service: ServiceStack) -> None:
    config = _config_for(stack).replace(f'"{stack.auth_url}"', f'"{service.standin}"')

    async def serve_config(route) -> None:  # type: ignore[no-untyped-def]
        await route.fulfill(content_type="text/javascript", body=config)

    await page.route("**/admin/config.js", serve_config)


def expect_refusal_logged(console: Console) -> None:
    """The browser itself logs the auth service's 401 (a failed resource load): expected
    here, exactly once; any other error still fails the test."""
    with console.lock:
        assert console.errors == [UNAUTHORIZED_LOGGED], console.errors
        console.errors.clear()


async def stored(page: Page, key: str) -> str | None:
    value: str | None = await page.evaluate("(k) => sessionStorage.getItem(k)", key)
    return value


async def test_sign_in_with_the_auth_service_and_stay_signed_in(
    page: Page, stack: Stack, service_stack: ServiceStack, console: Console
) -> None:
    await use_standin(page, stack, service_stack)
    await page.goto(service_stack.admin_url + "#/topics")
    await page.wait_for_selector("#app[data-ready='true']")
    await expect(page.locator("#login-form h2")).to_have_text("Sign in with the auth service")
    # The paste-a-token box is folded away under it.
    await expect(page.locator("#token")).to_be_hidden()

    await page.fill("#login", "mariana.costa")
    await page.fill("#password", "wrong")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("The login or password is not right.")
    await expect(page.locator("#password")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#password")).to_have_value("")
    expect_refusal_logged(console)
    await screenshot(page, "sign-in-auth-service")

    await page.fill("#password", "herald-demo")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
    await expect(page.locator("#who")).to_contain_text("demo-manager")
    await expect(page.locator("h1")).to_have_text("Topics")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    first = await stored(page, TOKEN_KEY)
    first_refresh = await stored(page, REFRESH_KEY)
    assert first and first_refresh

    # Past two lifetimes of the first token: still signed in, with newer tokens, and the API
    # answers the page (a screen that reads data loads it).
    await asyncio.sleep(ACCESS_TTL * 2 + 1)
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
    renewed = await stored(page, TOKEN_KEY)
    assert renewed and renewed != first
    assert await stored(page, REFRESH_KEY) != first_refresh
    await go(page, "#/templates")
    await expect(page.locator("#templates-table tr[data-slug]").first).to_be_visible()
    await expect(page.locator(".alert-error")).to_have_count(0)
    # The first token has expired: the API refuses it, so the page is using a renewed one.
    async with httpx.AsyncClient(base_url=service_stack.api.url, timeout=10) as client:
        refused = await client.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"Authorization": f"Bearer {first}"},
        )
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # A reload after the access token expired: the refresh token signs the tab back in.
    await asyncio.sleep(ACCESS_TTL)
    await page.reload()
    await page.wait_for_selector("#app[data-ready='true']")
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")

    # Signing out forgets both tokens, and the auth service revokes the refresh token.
    last_refresh = await stored(page, REFRESH_KEY)
    assert last_refresh
    async with page.expect_response(lambda r: r.url.endswith("/session/logout")) as logout:
        await page.click("#sign-out")
    assert (await logout.value).status == 204
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "false")
    assert await stored(page, TOKEN_KEY) is None
    assert await stored(page, REFRESH_KEY) is None
    async with httpx.AsyncClient(base_url=service_stack.standin, timeout=10) as client:
        revoked = await client.post(
            "/api/v1/auth/session/refresh", json={"refresh_token": last_refresh}
        )
    assert revoked.status_code == 401


async def test_a_spent_refresh_token_ends_the_session_with_a_message(
    page: Page, stack: Stack, service_stack: ServiceStack, console: Console
) -> None:
    await use_standin(page, stack, service_stack)
    await page.goto(service_stack.admin_url)
    await page.wait_for_selector("#app[data-ready='true']")
    await page.fill("#login", "admin")
    await page.fill("#password", "herald-demo")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
    # Someone else (another tab, a thief) uses the refresh token first: it is single-use.
    refresh_token = await stored(page, REFRESH_KEY)
    async with httpx.AsyncClient(base_url=service_stack.standin, timeout=10) as client:
        spent = await client.post(
            "/api/v1/auth/session/refresh", json={"refresh_token": refresh_token}
        )
    assert spent.status_code == 200
    await expect(page.locator("#app")).to_have_attribute(
        "data-signed-in", "false", timeout=ACCESS_TTL * 1000 + 5000
    )
    await expect(page.locator(".alert-warning")).to_contain_text("Your sign-in has expired")
    expect_refusal_logged(console)
