"""Liveness and readiness against the real stores and broker."""

from __future__ import annotations

from tests.conftest import app_client, free_port, make_settings


async def test_healthz_and_readyz_ok(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {
        "postgresql": "ok",
        "redis": "ok",
        "rabbitmq": "ok",
        "live_hub": "ok",
    }


async def test_readyz_names_each_failing_dependency(engine):
    dead = free_port()
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{dead}/0",
        rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{dead}/",
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{dead}/herald_test",
    )
    async with app_client(settings) as c:
        r = await c.get("/readyz")
        assert (await c.get("/healthz")).status_code == 200
    assert r.status_code == 503
    assert r.json()["failing"] == ["live_hub", "postgresql", "rabbitmq", "redis"]


async def test_mutation_with_database_down_is_a_typed_unavailable_error(engine):
    from tests.factories import template_input, token_for

    dead = free_port()
    settings = make_settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{dead}/x")
    async with app_client(settings) as c:
        r = await c.post(
            "/graphql",
            json={
                "query": "mutation($i: CreateTemplateInput!) { createTemplate(input: $i) "
                "{ __typename ... on Error { code message } } }",
                "variables": {"i": template_input()},
            },
            headers={"Authorization": f"Bearer {token_for(settings, 'admin')}"},
        )
        q = await c.post(
            "/graphql",
            json={"query": "{ templates { edges { cursor } } }"},
            headers={"Authorization": f"Bearer {token_for(settings, 'admin')}"},
        )
    assert r.json()["data"]["createTemplate"]["code"] == "UNAVAILABLE"
    assert q.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
