"""GraphiQL as the API serves it, in a real Chromium: built from graphiql/, loaded from the
API's own origin under its Content-Security-Policy, running a query over HTTP and the
``notifications`` subscription over graphql-transport-ws while an event is delivered."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect

from tests.admin.conftest import Stack, WorkerStack, token
from tests.admin.same_origin import assert_policy, same_origin_context

SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId } ... on Error { code message } } }"""


async def test_graphiql_runs_a_query_and_a_live_subscription(
    browser: Browser, stack: Stack, worker_stack: WorkerStack
) -> None:
    async with same_origin_context(browser, stack.api.url) as guard:
        page = await guard.new_page()
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
        async with page.expect_websocket() as socket_info:
            await page.click(".graphiql-execute-button")
        socket = await socket_info.value
        assert socket.url == stack.api.ws_url
        await socket.wait_for_event("framesent", lambda frame: '"type":"subscribe"' in str(frame))

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
