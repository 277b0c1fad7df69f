"""Single sign-on: the admin page signs in through a real OpenID provider, in a real Chromium.

The provider is node-oidc-provider (tests/oidc_provider/, OpenID Certified), started here with a
signing key this module makes, one public client with PKCE (the admin page), two people (one
whose roles claim maps to Herald's admin, one whose value maps to nothing), JWT access tokens
for Herald's audience and a short access-token life, so that the page must renew within the
test. ``herald api`` runs in the test environment with HERALD_OIDC_* and the auth-service form
off: single sign-on is the only way in, and the paste-a-token box (development only) is absent.

The same key signs tokens this module makes with one claim wrong (issuer, audience, expiry):
the API refuses each, which shows the API checks the claims and not only the signature.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.async_api import Browser, Page, Request, Route, expect

from tests.admin.conftest import (
    REDIS_URL,
    WIDE,
    Console,
    Stack,
    go,
    screenshot,
)
from tests.conftest import ROOT, LiveServer, free_port, start_live_server, stop_live_server
from tests.processes import wait_http

PROVIDER_DIR = ROOT / "tests" / "oidc_provider"
CLIENT_ID = "herald-admin"
AUDIENCE = "urn:herald:api"
ACCESS_TTL = 6  # seconds: the page renews the access token within the test
ROLE_MAP = {"herald-admins": "admin", "herald-editors": "manager"}
KID = "provider-key-1"
TOKEN_KEY = "herald.admin.token"


@dataclass
class Provider:
    issuer: str
    private_key: rsa.RSAPrivateKey
    api: LiveServer

    @property
    def admin_url(self) -> str:
        return f"{self.api.url}/admin/"

    def sign(self, **claims: Any) -> str:
        """A token signed with the provider's own key, with the given claims."""
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture(scope="module")
def provider(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("tests/oidc_provider/node_modules is missing: run scripts/setup.sh test")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # "sign" only: the provider would not verify its own ID tokens
    jwk.update(kid=KID, alg="RS256", use="sig")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    api = start_live_server(
        {
            "HERALD_SERVE_ADMIN": "true",
            "HERALD_RABBITMQ_URL": stack.rabbitmq_url,
            "HERALD_REDIS_URL": REDIS_URL,
            "HERALD_ADMIN_AUTH_SERVICE_FORM": "false",
            "HERALD_OIDC_ISSUER": issuer,
            "HERALD_OIDC_CLIENT_ID": CLIENT_ID,
            "HERALD_OIDC_AUDIENCE": AUDIENCE,
            "HERALD_OIDC_ROLES_CLAIM": "roles",
            "HERALD_OIDC_ROLE_MAP": json.dumps(ROLE_MAP),
            "HERALD_OIDC_LABEL": "Example ID",
        }
    )
    config = {
        "port": port,
        "issuer": issuer,
        "clientId": CLIENT_ID,
        "redirectUri": f"{api.url}/admin/",
        "audience": AUDIENCE,
        "accessTokenTtl": ACCESS_TTL,
        "jwk": jwk,
        "rolesClaim": "roles",
        "users": {"ada": ["herald-admins", "staff"], "bob": ["herald-viewers"]},
    }
    # The provider's refusals and their reasons (provider.mjs) land in this file.
    log = tmp_path_factory.mktemp("oidc-provider") / "provider.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            ["node", "provider.mjs", json.dumps(config)],
            cwd=PROVIDER_DIR,
            env={**os.environ, "NODE_ENV": "test"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_http(f"{issuer}/.well-known/openid-configuration")
            yield Provider(issuer=issuer, private_key=key, api=api)
        finally:
            process.terminate()
            process.wait(10)
            stop_live_server(api)


async def viewer(provider: Provider, bearer: str, query: str = "{ viewer { id roles } }") -> Any:
    async with httpx.AsyncClient(base_url=provider.api.url, timeout=10) as client:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {bearer}"}
        )
    return response.json()


async def new_page(browser: Browser, console: Console) -> Page:
    """A page for the flow, its errors failing the test, in a context of its own (closed by
    the test). The provider's development pages (not Herald's) import a Google Fonts
    stylesheet; this machine has no internet, so it is answered empty here."""
    context = await browser.new_context(viewport=WIDE)
    context.set_default_timeout(15_000)

    async def no_fonts(route: Route) -> None:
        await route.fulfill(content_type="text/css", body="")

    await context.route("https://fonts.googleapis.com/**", no_fonts)
    page = await context.new_page()
    console.attach(page)
    return page


async def provider_sign_in(page: Page, login: str) -> None:
    """The provider's development sign-in and consent pages, as a person fills them."""
    await page.wait_for_selector("input[name=login]")
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "any password")
    await page.click("button[type=submit]")
    # Consent: "Authorize" on the provider's page (asked once per grant).
    await page.wait_for_selector("button[type=submit]")
    await page.click("button[type=submit]")


async def oidc_user(page: Page) -> dict[str, Any] | None:
    """What oidc-client-ts keeps for this provider and client in sessionStorage."""
    raw: str | None = await page.evaluate(
        """() => {
            const key = Object.keys(sessionStorage).find((k) => k.startsWith("oidc.user:"));
            return key ? sessionStorage.getItem(key) : null;
        }"""
    )
    return json.loads(raw) if raw else None


async def test_single_sign_on_renews_silently_and_signs_out(
    browser: Browser, provider: Provider, console: Console
) -> None:
    page = await new_page(browser, console)
    # Every request the admin page itself makes: its own origin, or the provider's endpoints
    # (fetch only: discovery, token, revocation); scripts and styles from nowhere else.
    api_origin = provider.api.url
    offsite: list[str] = []
    token_grants: list[str] = []

    def watch(request: Request) -> None:
        target = f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}"
        from_admin = request.frame.url.startswith(provider.admin_url)
        if request.url == f"{provider.issuer}/token" and request.method == "POST":
            token_grants.append(request.post_data or "")
        if not from_admin or request.is_navigation_request() or target == api_origin:
            return
        if target != provider.issuer or request.resource_type not in ("fetch", "xhr"):
            offsite.append(f"{request.resource_type} {request.url}")

    page.on("request", watch)
    try:
        response = await page.goto(provider.admin_url + "#/templates")
        assert response is not None
        policy = (await response.all_headers())["content-security-policy"]
        assert policy.endswith(f"connect-src 'self' {provider.issuer}")
        assert "script-src 'self';" in policy
        await page.wait_for_selector("#app[data-ready='true']")
        # In the test environment: single sign-on only, no paste-a-token box, no demo users.
        await expect(page.locator("#sso-sign-in")).to_have_text("Sign in with Example ID")
        await expect(page.locator("#token")).to_have_count(0)
        await expect(page.locator("#login-form")).to_have_count(0)
        await expect(page.locator("#demo-users")).to_have_count(0)
        await screenshot(page, "sign-in-single-sign-on")

        await page.click("#sso-sign-in")
        await page.wait_for_url(f"{provider.issuer}/**")
        authorize = urlsplit(page.url)
        assert authorize.path.startswith("/interaction/")
        await provider_sign_in(page, "ada")

        # Back at the screen asked for, signed in with the mapped role only.
        await page.wait_for_url(f"{provider.admin_url}#/templates")
        await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
        await expect(page.locator("#who .who-id")).to_have_text("ada")
        await expect(page.locator("#who .who-roles")).to_have_text("admin")
        await expect(page.locator("h1")).to_have_text("Templates")
        await expect(page.locator(".alert-error")).to_have_count(0)
        # The code and state are gone from the address bar.
        assert "code=" not in page.url and "state=" not in page.url
        # An admin-only screen reads its data (a GraphQL call with the provider's token).
        await expect(page.locator('.nav a[data-nav="api-keys"]')).to_be_visible()
        await go(page, "#/api-keys")
        await expect(page.locator("h1")).to_have_text("API keys")
        await expect(page.locator(".alert-error")).to_have_count(0)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

        first = await page.evaluate("(k) => sessionStorage.getItem(k)", TOKEN_KEY)
        stored = await oidc_user(page)
        assert stored is not None and stored["access_token"] == first
        assert stored.get("refresh_token"), "the provider issued no refresh token"
        claims = jwt.decode(first, options={"verify_signature": False})
        assert claims["iss"] == provider.issuer and claims["aud"] == AUDIENCE
        assert claims["roles"] == ["herald-admins", "staff"]
        # The API maps the same token's roles: admin, nothing for "staff".
        answer = await viewer(provider, first)
        assert answer["data"]["viewer"] == {"id": "ada", "roles": ["admin"]}
        # The ID token (audience: the client id) is not an access token for Herald.
        refused = await viewer(provider, stored["id_token"])
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert refused["errors"][0]["message"] == "The token audience is not accepted"

        # Past the access token's life: renewed with the refresh token, no screen in between.
        before = len(token_grants)
        await asyncio.sleep(ACCESS_TTL + 2)
        await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
        renewed = await page.evaluate("(k) => sessionStorage.getItem(k)", TOKEN_KEY)
        assert renewed and renewed != first
        assert any("grant_type=refresh_token" in body for body in token_grants[before:])
        await go(page, "#/templates")
        await expect(page.locator("h1")).to_have_text("Templates")
        await expect(page.locator(".alert-error")).to_have_count(0)
        expired = await viewer(provider, first)
        assert expired["errors"][0]["message"] == "The token has expired"
        assert (await viewer(provider, renewed))["data"]["viewer"]["id"] == "ada"
        # A reload keeps the session (this tab's storage), still renewable.
        await page.reload()
        await page.wait_for_selector("#app[data-ready='true']")
        await expect(page.locator("#app")).to_have_attribute("data-signed-in", "true")
        await expect(page.locator("#who .who-roles")).to_have_text("admin")

        # Sign out: local state cleared, the refresh token revoked, the provider's session
        # ended at its end-session endpoint, which sends the person back to the sign-in screen.
        refresh_token = (await oidc_user(page) or {})["refresh_token"]
        await page.click("#sign-out")
        await page.wait_for_url(f"{provider.issuer}/session/end**")
        await page.click("button[name=logout][value=yes]")
        await page.wait_for_url(f"{provider.admin_url}**")
        await page.wait_for_selector("#app[data-ready='true']")
        await expect(page.locator("#app")).to_have_attribute("data-signed-in", "false")
        await expect(page.locator("#sso-sign-in")).to_be_visible()
        assert await page.evaluate("(k) => sessionStorage.getItem(k)", TOKEN_KEY) is None
        assert await oidc_user(page) is None
        async with httpx.AsyncClient(timeout=10) as client:
            spent = await client.post(
                f"{provider.issuer}/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": CLIENT_ID,
                },
            )
        assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"
        # The provider's session is over: signing in again asks for the login again.
        await page.click("#sso-sign-in")
        await page.wait_for_url(f"{provider.issuer}/**")
        await expect(page.locator("input[name=login]")).to_be_visible()
        assert not offsite, offsite
    finally:
        await page.context.close()
    assert not console.errors, console.errors


async def test_a_role_value_with_no_mapping_gets_no_admin_access(
    browser: Browser, provider: Provider, console: Console
) -> None:
    page = await new_page(browser, console)
    try:
        await page.goto(provider.admin_url)
        await page.wait_for_selector("#app[data-ready='true']")
        await page.click("#sso-sign-in")
        await provider_sign_in(page, "bob")
        await page.wait_for_url(f"{provider.admin_url}**")
        await page.wait_for_selector("#app[data-ready='true']")
        await expect(page.locator("#app")).to_have_attribute("data-signed-in", "false")
        await expect(page.locator(".alert-warning")).to_contain_text(
            "This account (bob, roles: none) cannot use the admin page"
        )
        # Nothing of the refused account is kept in the tab.
        assert await oidc_user(page) is None
        assert await page.evaluate("(k) => sessionStorage.getItem(k)", TOKEN_KEY) is None
    finally:
        await page.context.close()
    assert not console.errors, console.errors


def _claims(provider: Provider, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "sub": "carol",
        "iat": now,
        "exp": now + 300,
        "roles": ["herald-editors"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def test_the_api_checks_issuer_audience_and_expiry(provider: Provider) -> None:
    # The control: every claim right, the provider's key: a manager.
    good = await viewer(provider, provider.sign(**_claims(provider)))
    assert good["data"]["viewer"] == {"id": "carol", "roles": ["manager"]}

    cases = {
        "another audience": (
            _claims(provider, aud="urn:another:api"),
            "The token audience is not accepted",
        ),
        "no audience": (_claims(provider, aud=None), "The token lacks the 'aud' claim"),
        "expired": (
            _claims(provider, exp=int(time.time()) - 60),
            "The token has expired",
        ),
    }
    for name, (claims, message) in cases.items():
        answer = await viewer(provider, provider.sign(**claims))
        error = answer["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED", name
        assert error["message"] == message, name

    # Another issuer, though signed with the provider's key: not the provider's token, and not
    # the auth service's either (its HS256 secret is the only key for other issuers).
    other = await viewer(provider, provider.sign(**_claims(provider, iss="http://127.0.0.1:1")))
    assert other["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert other["errors"][0]["message"] == "The token is signed with an algorithm not allowed"

    # The provider's issuer, but a key the provider does not publish.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(provider), stranger, algorithm="RS256", headers={"kid": KID})
    answer = await viewer(provider, forged)
    assert answer["errors"][0]["message"] == "The token signature is invalid"


async def test_an_unmapped_role_is_refused_admin_operations(provider: Provider) -> None:
    token = provider.sign(**_claims(provider, sub="dan", roles=["herald-viewers", "staff"]))
    answer = await viewer(provider, token)
    assert answer["data"]["viewer"] == {"id": "dan", "roles": []}
    admin_only = await viewer(provider, token, "{ apiKeys { pageInfo { hasNextPage } } }")
    assert admin_only["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # The same person with a mapped value gets the operation.
    allowed = provider.sign(**_claims(provider, sub="dan", roles=["herald-admins"]))
    assert "errors" not in await viewer(
        provider, allowed, "{ apiKeys { pageInfo { hasNextPage } } }"
    )


async def test_the_admin_page_config_follows_the_settings(provider: Provider) -> None:
    async with httpx.AsyncClient(base_url=provider.api.url, timeout=10) as client:
        response = await client.get("/admin/config.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    body = response.text
    exported = json.loads(body[body.index("{") : body.rindex("}") + 1])
    assert exported["oidc"] == {
        "issuer": provider.issuer,
        "clientId": CLIENT_ID,
        "scopes": "openid profile",
        "label": "Example ID",
    }
    # The test environment is not development: no paste box, no stand-in.
    assert exported["tokenPaste"] is False
    assert exported["authStandinUrl"] is None
    assert exported["authService"] is None
