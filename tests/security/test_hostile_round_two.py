"""Hostile input, round two: each attack as it was sent to a running API, refused fast and typed,
with a concurrent ``/healthz`` answering in under 100 ms the whole time.

The attacks on payload schemas, cron expressions, tokens, ids and webhook targets are in
``test_hostile_round_two_inputs.py``; these are the ones on the GraphQL layer itself (documents,
operations, the WebSocket protocol) and on template rendering.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from backend.services.rendering import ISOLATED_GRACE_SECONDS, MAX_RENDER_SECONDS
from tests.factories import token_for
from tests.security.health_watch import HealthWatch, while_probing

GRAPHQL_RESPONSE = "application/graphql-response+json"
PROTOCOL = "graphql-transport-ws"


def fragment_bomb(levels: int, on: str = "Query", leaf: str = "__typename") -> str:
    """``query { ...F0 } fragment F0 on Query { ...F1 ...F1 } ... fragment Fn { __typename }``"""
    fragments = [f"fragment F{i} on {on} {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    fragments.append(f"fragment F{levels} on {on} {{ {leaf} }}")
    return "query { ...F0 } " + " ".join(fragments)


async def while_probing_healthz(
    url: str, attack: Callable[[], Awaitable[Any]]
) -> tuple[Any, HealthWatch]:
    """Run ``attack`` while ``/healthz`` is asked every 20 ms from a connection of its own."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as health:
        return await while_probing(health, attack(), interval=0.02)


async def post(
    url: str, body: Any, *, token: str | None = None, accept: str = GRAPHQL_RESPONSE
) -> tuple[httpx.Response, float]:
    headers = {"Accept": accept}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.monotonic()
        response = await client.post("/graphql", json=body, headers=headers)
        return response, time.monotonic() - started


async def open_socket(server: Any, token: str) -> Any:
    ws = await websockets.connect(
        server.ws_url, subprotocols=[PROTOCOL], origin=server.url, open_timeout=5
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ack["type"] == "connection_ack"
    return ws


async def next_message(ws: Any) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def close_code(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(5):
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None, "the server dropped the connection without a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason


# --- 1. The fragment bomb ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("levels", "on", "leaf"),
    [(18, "Query", "__typename"), (30, "Query", "__typename"), (30, "__Schema", "description")],
    ids=["n18", "n30", "n30-introspection"],
)
async def test_a_fragment_bomb_without_a_token_is_refused_in_milliseconds(
    live_server, levels, on, leaf
):
    query = fragment_bomb(levels, on, leaf)
    if on == "__Schema":
        query = query.replace("query { ...F0 }", "query { __schema { ...F0 } }")
    (response, elapsed), health = await while_probing_healthz(
        live_server.url, lambda: post(live_server.url, {"query": query})
    )
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert "data" not in body
    assert "fragments are expanded" in body["errors"][0]["message"]
    assert elapsed < 0.5, elapsed
    health.assert_answered()


async def test_a_fragment_bomb_over_websocket_gets_an_error_message(live_server, settings):
    query = "subscription { ...F0 } " + fragment_bomb(30, "Subscription", "heartbeat { at }")
    query = query.replace("query { ...F0 } ", "")

    async def attack() -> tuple[dict[str, Any], float]:
        ws = await open_socket(live_server, token_for(settings, "user", sub="bomb-ws"))
        async with ws:
            started = time.monotonic()
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            message = await next_message(ws)
            return message, time.monotonic() - started

    (message, elapsed), health = await while_probing_healthz(live_server.url, attack)
    assert message["type"] == "error" and message["id"] == "1", message
    assert "fragments are expanded" in message["payload"][0]["message"]
    assert elapsed < 0.5, elapsed
    health.assert_answered()


async def test_the_expansion_limit_leaves_introspection_alone(live_server, settings):
    from graphql import get_introspection_query

    response, _ = await post(
        live_server.url,
        {"query": get_introspection_query(descriptions=True)},
        token=token_for(settings, "admin"),
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["data"]["__schema"]["queryType"]["name"] == "Query"


# --- 3. Renders that would stall the event loop -----------------------------------------------

SLOW_TEMPLATES = {
    "wordwrap": '{% set s = "a "*200000 %}{% for i in range(100) %}'
    "{{ (s|wordwrap(1))|length }}{% endfor %}",
    "title": '{% set s = "a "*200000 %}{% for i in range(1000) %}'
    "{{ (s|title)|length }}{% endfor %}",
    "sort": '{% set s = "a "*200000 %}{% for i in range(100) %}{{ (s|sort)|length }}{% endfor %}',
}
PREVIEW = """
mutation($content: [TemplateContentInput!]) {
  previewTemplate(channel: EMAIL, content: $content) {
    __typename
    ... on Error { code message field }
  }
}
"""


@pytest.mark.parametrize("case", sorted(SLOW_TEMPLATES))
async def test_a_slow_template_preview_keeps_to_its_budget_and_the_api_answers(
    live_server, settings, case
):
    content = [{"channel": "EMAIL", "subject": "s", "body": SLOW_TEMPLATES[case]}]
    # The API starts its render process on the first preview, outside any render's budget
    # (about 1.5 s of imports): a quick preview first, so the clock below times the render.
    warm, _ = await post(
        live_server.url,
        {
            "query": PREVIEW,
            "variables": {"content": [{"channel": "EMAIL", "subject": "s", "body": "hi"}]},
        },
        token=token_for(settings, "manager"),
    )
    assert warm.json()["data"]["previewTemplate"]["__typename"] == "RenderedMessage", warm.text
    (response, elapsed), health = await while_probing_healthz(
        live_server.url,
        lambda: post(
            live_server.url,
            {"query": PREVIEW, "variables": {"content": content}},
            token=token_for(settings, "manager"),
        ),
    )
    result = response.json()["data"]["previewTemplate"]
    assert result["__typename"] == "TemplateRenderError", result
    assert result["code"] == "TEMPLATE_RENDER"
    assert result["field"].startswith("content[0].")
    assert "longer than 2 s" in result["message"] or "larger than" in result["message"], result
    # Within the budget and its grace (past which the render process is killed), plus the
    # kill and the HTTP round trip.
    assert elapsed < MAX_RENDER_SECONDS + ISOLATED_GRACE_SECONDS + 0.5, elapsed
    health.assert_answered()


async def test_slow_previews_at_once_each_get_their_own_budget(live_server, settings):
    content = [{"channel": "EMAIL", "subject": "s", "body": SLOW_TEMPLATES["wordwrap"]}]
    body = {"query": PREVIEW, "variables": {"content": content}}
    token = token_for(settings, "manager")
    responses = await asyncio.gather(*(post(live_server.url, body, token=token) for _ in range(2)))
    for response, elapsed in responses:
        result = response.json()["data"]["previewTemplate"]
        # Each ran out of its own time inside the sandbox; none was killed under another's.
        assert result["__typename"] == "TemplateRenderError", result
        assert "longer than 2 s" in result["message"], result
        assert result["field"] == "content[0].body", result
        assert elapsed < 7.0, elapsed


# --- 5. GetOperation ----------------------------------------------------------------------------


def _create_and_read(slug: str) -> str:
    return (
        'mutation Make { createTemplate(input: {slug: "' + slug + '", name: "x", content: '
        '[{channel: EMAIL, subject: "s", body: "b"}]}) { __typename } } '
        "query Look { viewer { id } }"
    )


async def _template_exists(url: str, token: str, slug: str) -> bool:
    response, _ = await post(
        url,
        {"query": "query($s: String!) { template(slug: $s) { slug } }", "variables": {"s": slug}},
        token=token,
    )
    return response.json()["data"]["template"] is not None


async def test_two_operations_without_an_operation_name_run_nothing(live_server, settings):
    token = token_for(settings, "admin")
    slug = f"getop-{uuid.uuid4().hex[:8]}"
    response, _ = await post(live_server.url, {"query": _create_and_read(slug)}, token=token)
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body
    assert "operationName" in body["errors"][0]["message"]
    assert not await _template_exists(live_server.url, token, slug)


async def test_two_operations_without_a_name_over_websocket_run_nothing(live_server, settings):
    token = token_for(settings, "admin")
    slug = f"getop-ws-{uuid.uuid4().hex[:8]}"
    async with await open_socket(live_server, token) as ws:
        payload = {"query": _create_and_read(slug)}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = await next_message(ws)
        assert message["type"] == "error" and message["id"] == "1", message
        assert "operationName" in message["payload"][0]["message"]
    assert not await _template_exists(live_server.url, token, slug)


# --- 6. The WebSocket protocol ----------------------------------------------------------------


async def test_a_subscribe_with_a_syntax_error_gets_an_error_message(live_server, settings):
    async with await open_socket(live_server, token_for(settings, "user", sub="syntax")) as ws:
        payload = {"query": "subscription { heartbeat { at }"}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = await next_message(ws)
        assert message["type"] == "error" and message["id"] == "1", message
        assert "Syntax Error" in message["payload"][0]["message"]
        # The connection is still usable.
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_message(ws))["type"] == "pong"


async def test_an_unknown_operation_name_over_websocket_says_so(live_server, settings):
    async with await open_socket(live_server, token_for(settings, "user", sub="opname")) as ws:
        payload = {"query": "subscription A { heartbeat { at } }", "operationName": "B"}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = await next_message(ws)
        assert message["type"] == "error" and message["id"] == "1", message
        assert "'operationName'" in message["payload"][0]["message"]


@pytest.mark.parametrize(
    "frame",
    [
        {"id": "1", "type": "subscribe", "payload": "x"},
        [1, 2],
        {"id": "1", "type": "subscribe", "payload": {"query": 5}},
        {"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { id } }", "variables": 7}},
        {"id": 1, "type": "subscribe", "payload": {"query": "{ viewer { id } }"}},
        {"type": "subscribe", "payload": {"query": "{ viewer { id } }"}},
        "just a string",
    ],
    ids=[
        "payload-string",
        "array",
        "query-number",
        "variables-number",
        "id-number",
        "no-id",
        "str",
    ],
)
async def test_a_malformed_message_closes_with_4400(live_server, settings, frame):
    async with await open_socket(live_server, token_for(settings, "user", sub="malformed")) as ws:
        await ws.send(json.dumps(frame))
        code, _ = await close_code(ws)
        assert code == 4400


# --- 8. A syntax error over HTTP has no data ---------------------------------------------------


@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_a_syntax_error_over_http_has_no_data_entry(live_server, accept):
    response, _ = await post(live_server.url, {"query": "{ viewer { id }"}, accept=accept)
    assert response.status_code == (200 if accept == "application/json" else 400)
    body = response.json()
    assert "data" not in body, body
    assert "Syntax Error" in body["errors"][0]["message"]
