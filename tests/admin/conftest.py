"""The admin page in a real headless Chromium against real processes.

A ``herald api`` serving ``admin_frontend/`` at ``/admin/`` and the auth-service stand-in run for
the session; the send→history and campaign tests add a Celery worker and an SMTP server
(``worker_stack``), and the campaign tests ``herald beat`` (``beat``).
The browser is Debian's ``chromium`` driven by Playwright: no browser is ever downloaded.

The page gets its settings from ``/admin/config.js``, which ``herald api`` writes from its own;
the API here runs in the test environment, so the tests serve the file it writes in
development instead (the paste-a-token box, the stand-in's demo users and sign-in form).

Every page fails its test on a browser console error or an uncaught exception.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.admin_page import config_script
from backend.auth import mint_token
from tests.conftest import (
    ROOT,
    TEST_DATABASE_URL,
    LiveServer,
    make_settings,
    start_live_server,
    stop_live_server,
)
from tests.processes import Process, auth_standin, wait_http

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
JWT_SECRET = "test-secret-for-the-suite-0123456789abcdef"  # the suite's (tests/conftest.py)
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Own Redis database and RabbitMQ vhost: other suites on this machine run workers on the
# default vhost, and one of those could otherwise take this suite's events (or we theirs).
# Both can be moved, so two checkouts can run this suite side by side.
REDIS_URL = os.environ.get("HERALD_TEST_ADMIN_REDIS_URL", "redis://127.0.0.1:6379/11")
VHOST = os.environ.get("HERALD_TEST_ADMIN_VHOST", "herald_test_admin")
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 800, "height": 1000}


def _vhost_answers(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception:  # any failure means "make it"
        return False
    return True


def _rabbitmq_url() -> str:
    """A vhost of our own when rabbitmqctl can make one, else the shared default vhost."""
    url = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
    if _vhost_answers(url):
        return url
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not Path(ctl).exists():
        return DEFAULT_RABBITMQ_URL
    try:
        listed = subprocess.run(
            [ctl, "-q", "list_vhosts"], capture_output=True, text=True, timeout=30, check=True
        )
        if VHOST not in listed.stdout.split():
            subprocess.run(
                [ctl, "-q", "add_vhost", VHOST], capture_output=True, timeout=30, check=True
            )
            subprocess.run(
                [ctl, "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
                capture_output=True,
                timeout=30,
                check=True,
            )
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_RABBITMQ_URL
    return url


@dataclass
class Stack:
    api: LiveServer
    auth_url: str
    rabbitmq_url: str

    @property
    def admin_url(self) -> str:
        return f"{self.api.url}/admin/"


@pytest.fixture(scope="session")
def stack(engine: AsyncEngine) -> Iterator[Stack]:
    """The auth stand-in (its bundled demo users) and ``herald api`` serving the admin page
    and GraphiQL."""
    rabbitmq_url = _rabbitmq_url()
    # The API does not need the stand-in to start; both start at once.
    with auth_standin(wait=False) as auth_url:
        api = start_live_server(
            {
                "HERALD_SERVE_ADMIN": "true",
                "HERALD_GRAPHIQL": "true",
                "HERALD_AUTH_URL": auth_url,
                "HERALD_RABBITMQ_URL": rabbitmq_url,
                "HERALD_REDIS_URL": REDIS_URL,
            }
        )
        try:
            wait_http(f"{auth_url}/healthz")
            yield Stack(api=api, auth_url=auth_url, rabbitmq_url=rabbitmq_url)
        finally:
            stop_live_server(api)


def token(sub: str, *roles: str, ttl: timedelta = timedelta(hours=1)) -> str:
    """A token the API accepts, as the auth service would sign it."""
    return mint_token(make_settings(), sub=sub, roles=list(roles), ttl=ttl)


@pytest.fixture(scope="session")
def admin_token() -> str:
    return token("admin-tester", "admin")


async def graphql(stack: Stack, query: str, variables: dict[str, Any], bearer: str) -> Any:
    """Set-up through the public API, as a script would do it."""
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {bearer}"},
        )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


CREATE_TEMPLATE = """mutation($input: CreateTemplateInput!) {
  createTemplate(input: $input) { __typename ... on Error { code message } } }"""


async def create_template(
    stack: Stack, bearer: str, slug: str, name: str, content: list[dict[str, Any]]
) -> str:
    """Create the template ``slug`` through the public API (it must succeed); its slug."""
    input = {"slug": slug, "name": name, "content": content}
    created = await graphql(stack, CREATE_TEMPLATE, {"input": input}, bearer)
    assert created["createTemplate"]["__typename"] == "Template", created
    return slug


async def sideways_overflow(page: Page) -> int:
    """How many pixels the page scrolls sideways (none when 0 or less)."""
    return int(
        await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


# --- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh test (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclass
class Console:
    """What a page printed: any error fails the test."""

    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, page: Page) -> None:
        page.on(
            "console",
            lambda m: self._add(f"console.{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self._add(f"uncaught: {e}"))

    def _add(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def _config_for(stack: Stack) -> str:
    """The config.js ``herald api`` writes in development (backend/admin_page.py), pointed at
    the test's stand-in (demo users, the sign-in form, the paste box) and polling faster."""
    settings = make_settings(environment="development", auth_url=stack.auth_url)
    script = config_script(settings)
    patched, found = re.subn(r'"livePollSeconds": \d+', '"livePollSeconds": 1', script)
    assert found == 1, "config.js no longer holds livePollSeconds"
    return patched


@pytest.fixture
async def context(browser: Browser, stack: Stack) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport=WIDE)
    ctx.set_default_timeout(10_000)
    config = _config_for(stack)

    async def serve_config(route: Any) -> None:
        await route.fulfill(content_type="text/javascript", body=config)

    await ctx.route("**/admin/config.js", serve_config)
    yield ctx
    await ctx.close()


@pytest.fixture
async def console() -> Console:
    return Console()


@pytest.fixture
async def page(context: BrowserContext, console: Console) -> AsyncIterator[Page]:
    """A tab on the admin page; the test fails if the page logs an error."""
    tab = await context.new_page()
    console.attach(tab)
    yield tab
    assert not console.errors, "the browser console reported errors:\n" + "\n".join(console.errors)


async def new_tab(context: BrowserContext, console: Console) -> Page:
    tab = await context.new_page()
    console.attach(tab)
    return tab


async def open_admin(page: Page, stack: Stack, route: str = "") -> None:
    await page.goto(stack.admin_url + route)
    await page.wait_for_selector("#app[data-ready='true']")


async def sign_in(page: Page, stack: Stack, bearer: str, route: str = "") -> None:
    """Sign in through the form, as a person pasting a token."""
    await open_admin(page, stack, route)
    await open_token_paste(page)
    await page.fill("#token", bearer)
    await page.click("#token-form button[type=submit]")
    await page.wait_for_selector("#app[data-signed-in='true']")


async def open_token_paste(page: Page) -> None:
    """Unfold the development paste-a-token box (folded under the auth service's form)."""
    await page.click("details.paste-token > summary")
    await page.wait_for_selector("#token", state="visible")


async def admin_screen(page: Page, stack: Stack, bearer: str, nav: str, title: str) -> None:
    """Sign in at the screen behind the navigation link ``nav``: the link is current and in
    sight, every link of the navigation fits (1280 px), and the screen is titled ``title``."""
    await sign_in(page, stack, bearer, f"#/{nav}")
    nav_link = page.locator(f".nav a[data-nav='{nav}']")
    await expect(nav_link).to_have_attribute("aria-current", "page")
    await expect(nav_link).to_be_in_viewport()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    overflow = await page.evaluate(
        "() => { const n = document.querySelector('.nav'); return n.scrollWidth - n.clientWidth; }"
    )
    assert overflow <= 0
    await expect(page.locator(".page-title")).to_have_text(title)


async def go(page: Page, route: str) -> None:
    """Navigate inside the page (no reload), as the nav links do."""
    await page.evaluate("(hash) => { window.location.hash = hash; }", route)


async def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    """Keep a picture of a screen in docs/screenshots/ when HERALD_ADMIN_SCREENSHOTS=1."""
    if os.environ.get("HERALD_ADMIN_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Let transitions and the heartbeat settle so the picture shows the steady state.
    await page.wait_for_timeout(400)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


# --- the worker (and beat) for the send, history and campaign tests -----------------------


@dataclass
class WorkerStack:
    worker: Process
    smtp: Any
    env: dict[str, str]


@pytest.fixture(scope="module")
def worker_stack(stack: Stack) -> Iterator[WorkerStack]:
    """A Celery worker delivering email to a real SMTP server; profiles from the stand-in.

    It consumes every queue (``herald worker`` without ``--queues``), ``herald.campaigns``
    included, so a campaign's pages are fanned out by the same process."""
    from tests.pipeline.servers import start_smtp

    controller, sink = start_smtp()
    env = {
        **os.environ,
        "HERALD_ENVIRONMENT": "test",
        "HERALD_DATABASE_URL": TEST_DATABASE_URL,
        "HERALD_JWT_SECRET": JWT_SECRET,
        "HERALD_RABBITMQ_URL": stack.rabbitmq_url,
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_SMTP_HOST": "127.0.0.1",
        "HERALD_SMTP_PORT": str(controller.port),
        "HERALD_AUTH_URL": stack.auth_url,
        "HERALD_WORKER_METRICS_PORT": "0",
        "HERALD_LOG_LEVEL": "INFO",
    }
    # Celery's cold shutdown on stop: the test is over, nothing in flight is worth waiting for.
    worker = Process(
        ["worker", "--concurrency", "1"], env, ready="ready.", stop_signal=signal.SIGQUIT
    )
    try:
        yield WorkerStack(worker=worker, smtp=sink, env=env)
    finally:
        worker.stop()
        controller.stop()


@pytest.fixture(scope="module")
def beat(worker_stack: WorkerStack) -> Iterator[Process]:
    """``herald beat``: fires delayed and recurring campaigns from their RedBeat entries, which
    the API arms in this suite's Redis database."""
    process = Process(["beat"], worker_stack.env, ready="beat: Starting")
    try:
        yield process
    finally:
        process.stop()
