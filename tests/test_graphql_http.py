"""The HTTP contract of /graphql: media types, status codes, methods, limits, masking."""

from __future__ import annotations

import pytest

from backend.schema.context import Context
from backend.services import templates as template_service
from tests.conftest import app_client, make_settings
from tests.factories import token_for

GRJ = "application/graphql-response+json"


async def post(client, body, accept=GRJ, **headers):
    return await client.post("/graphql", json=body, headers={"Accept": accept, **headers})


async def test_media_type_follows_accept(client):
    r = await post(client, {"query": "{ __typename }"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(GRJ)
    assert r.json() == {"data": {"__typename": "Query"}}
    r = await post(client, {"query": "{ __typename }"}, accept="application/json")
    assert r.headers["content-type"].startswith("application/json")
    r = await post(client, {"query": "{ __typename }"}, accept="text/plain")
    assert r.status_code == 406


async def test_request_errors_are_400_without_data_in_graphql_response_json(client):
    for query in ["{", "{ nope }", "query($id: ID!) { __typename }"]:
        r = await post(client, {"query": query, "variables": {"id": None}})
        assert r.status_code == 400, query
        assert "data" not in r.json()
        legacy = await post(client, {"query": query, "variables": {"id": None}}, "application/json")
        assert legacy.status_code == 200, query
        assert legacy.json()["errors"]


async def test_mutations_are_refused_over_get(client, settings):
    r = await client.get(
        "/graphql",
        params={"query": 'mutation { deleteTemplate(slug: "x") { __typename } }'},
        headers={"Accept": GRJ, "Authorization": f"Bearer {token_for(settings, 'admin')}"},
    )
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_queries_work_over_get_with_variables(client, settings):
    r = await client.get(
        "/graphql",
        params={
            "query": "query($s: String!) { template(slug: $s) { slug } }",
            "variables": '{"s": "none"}',
        },
        headers={"Accept": GRJ, "Authorization": f"Bearer {token_for(settings, 'admin')}"},
    )
    assert r.status_code == 200
    assert r.json() == {"data": {"template": None}}


async def test_bad_bodies_and_methods(client):
    r = await client.post("/graphql", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await client.post("/graphql", content=b"query", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = await client.post("/graphql", json=[{"query": "{ __typename }"}])
    assert r.status_code == 400
    r = await client.put("/graphql", json={"query": "{ __typename }"})
    assert r.status_code == 405
    r = await client.post(
        "/graphql", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_graphiql_served_to_browsers(client):
    r = await client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()


async def test_unexpected_errors_are_masked(client, settings, monkeypatch):
    async def explode(*args, **kwargs):
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(template_service, "list_templates", explode)
    r = await post(
        client,
        {"query": "{ templates { edges { cursor } } }"},
        Authorization=f"Bearer {token_for(settings, 'admin')}",
    )
    body = r.json()
    assert r.status_code == 200
    assert body["errors"][0]["message"] == "Unexpected error."
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL"}
    assert "hunter2" not in r.text


async def test_a_failure_outside_graphql_answers_500_and_is_logged(client, monkeypatch, caplog):
    """POST /graphql is served before the middleware stack (backend/app.py HeraldAPI): an
    error outside GraphQL's own handling still answers 500, with nothing of it in the body,
    and is logged with its trace."""

    async def explode(*args, **kwargs):
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    monkeypatch.setattr(Context, "authenticate", explode)
    with caplog.at_level("ERROR", logger="backend.app"):
        r = await post(client, {"query": "{ __typename }"})
    assert r.status_code == 500
    assert r.text == "Internal Server Error"
    assert "hunter2" not in r.text
    assert "RuntimeError: secret connection string" in caplog.text  # its password redacted


async def test_alias_and_token_limits(client):
    alias_bomb = "query { " + " ".join(f"a{i}: __typename" for i in range(50)) + " }"
    r = await post(client, {"query": alias_bomb})
    assert r.status_code == 400
    assert "aliases" in r.json()["errors"][0]["message"].lower()

    huge = "query { " + "__typename " * 3000 + "}"
    r = await post(client, {"query": huge})
    assert r.status_code == 400
    assert "token" in r.json()["errors"][0]["message"].lower()


async def test_depth_limit(engine):
    deep = "{ templates { edges { node { versions { content { channel } } } } } }"
    shallow = "{ templates { edges { cursor } } }"
    async with app_client(make_settings(max_query_depth=3)) as c:
        r = await c.post("/graphql", json={"query": deep}, headers={"Accept": GRJ})
        ok = await c.post("/graphql", json={"query": shallow}, headers={"Accept": GRJ})
    assert r.status_code == 400
    assert "depth" in r.json()["errors"][0]["message"]
    assert ok.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("introspection", [True, False])
async def test_introspection_switch(engine, introspection):
    async with app_client(make_settings(introspection=introspection)) as c:
        r = await c.post(
            "/graphql",
            json={"query": "{ __schema { queryType { name } } }"},
            headers={"Accept": GRJ},
        )
    assert (r.status_code == 200) is introspection
