"""A browser context that fails a page test on anything leaving the API's origin and on any
Content-Security-Policy violation.

Every request to another origin is aborted and recorded (route interception), WebSockets to
another host are recorded, and the page's ``securitypolicyviolation`` events and console
errors (Chromium reports a refused load there too) are collected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, Page, Route

from tests.admin.conftest import WIDE

_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__heraldCspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class SameOrigin:
    """What a context tried that a same-origin page under its CSP must never do."""

    origin: str
    context: BrowserContext
    offsite: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    async def new_page(self) -> Page:
        page = await self.context.new_page()
        page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
        page.on("websocket", self._check_websocket)
        return page

    def _check_websocket(self, socket: Any) -> None:
        if urlsplit(socket.url).netloc != urlsplit(self.origin).netloc:
            self.offsite.append(socket.url)

    def assert_clean(self) -> None:
        assert not self.offsite, f"requests left {self.origin}: {self.offsite}"
        assert not self.violations, f"Content-Security-Policy violations: {self.violations}"
        assert not self.console_errors, "console errors:\n" + "\n".join(self.console_errors)


@asynccontextmanager
async def same_origin_context(browser: Browser, origin: str) -> AsyncIterator[SameOrigin]:
    context = await browser.new_context(viewport=WIDE)
    context.set_default_timeout(15_000)
    guard = SameOrigin(origin=origin, context=context)

    async def refuse(route: Route) -> None:
        guard.offsite.append(route.request.url)
        await route.abort("blockedbyclient")

    await context.route(lambda url: origin_of(url) != origin, refuse)
    await context.expose_function(
        "__heraldCspViolation", lambda text: guard.violations.append(text)
    )
    await context.add_init_script(_REPORT_VIOLATIONS)
    try:
        yield guard
    finally:
        await context.close()


def assert_policy(headers: dict[str, str]) -> str:
    """The response's policy keeps everything on the page's origin; returns it."""
    policy = headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives.get("default-src") in (["'self'"], ["'none'"]), policy
    scripts = directives.get("script-src", directives["default-src"])
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, policy
    return policy
