"""Query abuse: each shape is refused by a limit, with an error saying which, in bounded time."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import app_client
from tests.factories import token_for
from tests.security.conftest import security_settings

GRAPHQL_RESPONSE = "application/graphql-response+json"
BOUND_SECONDS = 2.0


CASES: dict[str, dict[str, Any]] = {
    "introspection cycle": {
        "query": "{ __schema { types { " + "fields { type { " * 6 + "name" + " } }" * 6 + " } } }",
        "says": "introspection depth",
    },
    "alias bomb": {
        "query": "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(200)) + " }",
        "says": "aliases",
    },
    "field duplication bomb": {
        "query": "{ viewer { " + "id " * 5000 + "} }",
        "says": "token",
    },
    "directive flood": {
        "query": "{ viewer " + "@include(if: true) " * 1000 + "{ id } }",
        "says": "token",
    },
    "fragment cycle": {
        "query": "{ viewer { ...A } } fragment A on Viewer { id ...B } "
        "fragment B on Viewer { ...A }",
        "says": "fragment",
    },
    "huge document": {
        "query": "{ viewer { id } }" + " " * 1_100_000,
        "says": "too large",
        "status": 413,
    },
    "huge variables": {
        "query": "query($x: String) { viewer { id } }",
        "variables": {"x": "x" * 1_100_000},
        "says": "too large",
        "status": 413,
    },
    "many operations": {
        "query": " ".join(f"query Q{i} {{ viewer {{ id }} }}" for i in range(400)),
        "says": "token",
    },
}


async def _post(client: httpx.AsyncClient, body: Any, token: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(
        "/graphql",
        json=body,
        headers={"Accept": GRAPHQL_RESPONSE, "Authorization": f"Bearer {token}"},
    )
    return response, time.monotonic() - started


@pytest.mark.parametrize("case", sorted(CASES))
async def test_abusive_documents_are_refused_by_a_limit(sec_client, sec_settings, case):
    spec = CASES[case]
    token = token_for(sec_settings, "admin")
    body = {"query": spec["query"], "variables": spec.get("variables")}
    response, elapsed = await _post(sec_client, body, token)
    assert elapsed < BOUND_SECONDS, (case, elapsed)
    assert response.status_code == spec.get("status", 400), (case, response.text[:300])
    payload = response.json()
    assert "data" not in payload
    messages = " ".join(e["message"] for e in payload["errors"])
    assert spec["says"] in messages.lower(), (case, messages[:300])
    assert all((e.get("extensions") or {}).get("code") != "INTERNAL" for e in payload["errors"])


async def test_deep_nesting_is_refused_by_the_depth_limit(engine, sec_settings):
    # No type in the schema nests deeper than the default limit (12), so a lower limit shows it.
    settings = security_settings(max_query_depth=3)
    async with app_client(settings) as client:
        query = "{ templates { edges { node { versions { version } } } } }"
        response, elapsed = await _post(client, {"query": query}, token_for(settings, "admin"))
    assert elapsed < BOUND_SECONDS
    assert response.status_code == 400
    assert "exceeds maximum operation depth of 3" in response.json()["errors"][0]["message"]


async def test_batches_are_refused(sec_client, sec_settings):
    token = token_for(sec_settings, "admin")
    batch = [{"query": "{ viewer { id } }"}] * 1000
    response, elapsed = await _post(sec_client, batch, token)
    assert elapsed < BOUND_SECONDS
    assert response.status_code == 400
    assert "batching is not supported" in response.json()["errors"][0]["message"]


async def test_too_many_events_in_one_call_are_refused_as_validation(
    sgql, sec_settings, unique_sub
):
    events = [{"type": "x", "userIds": ["u"]} for _ in range(501)]
    started = time.monotonic()
    result = await sgql(
        "mutation($e: [EventInput!]!) { sendEvents(inputs: $e) { __typename "
        "... on Error { code field } } }",
        {"e": events},
        token=token_for(sec_settings, "service", sub=unique_sub),
    )
    assert time.monotonic() - started < BOUND_SECONDS
    assert result["data"]["sendEvents"] == {
        "__typename": "ValidationError",
        "code": "VALIDATION",
        "field": "inputs",
    }


async def test_limits_leave_ordinary_documents_alone(sgql, sec_settings):
    # The limits must not refuse what the admin page sends.
    query = "{ " + " ".join(f"a{i}: viewer {{ id roles }}" for i in range(20)) + " }"
    result = await sgql(query, token=token_for(sec_settings, "admin", sub="ordinary"))
    assert result["_status"] == 200
    assert result["data"]["a19"]["id"] == "ordinary"
