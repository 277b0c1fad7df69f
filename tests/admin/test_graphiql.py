"""GraphiQL as the API serves it, in a real Chromium: built from graphiql/, loaded from the
API's own origin under its Content-Security-Policy, running a query over HTTP and the
``notifications`` subscription over graphql-transport-ws while an event is delivered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from playwright.async_api import Browser, WebSocket, expect

from tests.admin.conftest import Stack, WorkerStack, token
from tests.admin.same_origin import assert_policy, same_origin_context

SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message } } }"""


async def _until(condition: Callable[[], bool], within: float = 45.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "GraphiQL opened no subscription in time"
        await asyncio.sleep(0.05)


async def test_graphiql_runs_a_query_and_a_live_subscription(
    browser: Browser, stack: Stack, worker_stack: WorkerStack
) -> None:
    async with same_origin_context(browser, stack.api.url) as guard:
        page = await guard.new_page()
        sockets: list[WebSocket] = []
        sent_frames: list[str] = []

        def opened(socket: WebSocket) -> None:
            sockets.append(socket)
            socket.on("framesent", lambda frame: sent_frames.append(str(frame)))

        page.on("websocket", opened)
        response = await page.goto(f"{stack.api.url}/graphql")
        assert response is not None and response.status == 200
        policy = assert_policy(await response.all_headers())
        assert "connect-src 'self'" in policy

        response_pane = page.locator(".graphiql-response")
        await expect(page.locator(".graphiql-container")).to_be_visible()
        # The first tab's query needs a signed-in user: the headers tab's demo token.
        await expect(page.locator(".graphiql-query-editor")).to_contain_text("unreadCount")
        await page.click(".graphiql-execute-button")
        await expect(response_pane).to_contain_text('"unreadCount"')
        await expect(response_pane).not_to_contain_text('"errors"')

        # The second tab: the live subscription, over a WebSocket to the same origin.
        await page.locator(".graphiql-tab-button").nth(1).click()
        await expect(page.locator(".graphiql-query-editor")).to_contain_text(
            "subscription Notifications"
        )
        await page.click(".graphiql-execute-button")
        # Each frame is recorded from the moment the socket opens, so a loaded machine that
        # opens it (and subscribes) before this coroutine looks cannot make the test miss it.
        await _until(lambda: any('"type":"subscribe"' in frame for frame in sent_frames))
        assert [socket.url for socket in sockets] == [stack.api.ws_url]

        async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
            sent = await client.post(
                "/graphql",
                json={
                    "query": SEND,
                    "variables": {
                        "input": {"type": "user_registered", "userIds": ["demo-manager"]}
                    },
                },
                headers={"Authorization": f"Bearer {token('svc', 'service')}"},
            )
        accepted = sent.json()["data"]["sendEvent"]
        assert accepted["__typename"] == "EventAccepted", accepted
        await expect(response_pane).to_contain_text(accepted["eventId"], timeout=30_000)
        await expect(response_pane).to_contain_text('"eventType": "user_registered"')
        guard.assert_clean()


async def test_graphiql_assets_carry_the_policy(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        script = page.text.split('<script type="module" crossorigin src="')[1].split('"')[0]
        assert script.startswith("/graphiql/assets/")
        asset = await client.get(script)
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith("text/javascript")
    assert_policy(dict(asset.headers))
