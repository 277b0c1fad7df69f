"""Cross-origin calls from browsers: pages on HERALD_ALLOWED_ORIGINS (an app embedding
<herald-inbox> on its own origin) may call /graphql; others get no CORS headers, so the
browser keeps the answer from them."""

from __future__ import annotations

from tests.conftest import app_client, make_settings
from tests.factories import auth_header

ALLOWED = "https://app.example.com"
QUERY = {"query": "{ unreadCount }"}


async def test_an_allowed_origin_passes_the_preflight_and_reads_the_answer(engine):
    settings = make_settings(allowed_origins=[ALLOWED])
    async with app_client(settings) as client:
        preflight = await client.options(
            "/graphql",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        answer = await client.post(
            "/graphql",
            json=QUERY,
            headers={"Origin": ALLOWED, **auth_header(settings, "user", sub="u-cors")},
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    assert answer.json()["data"] == {"unreadCount": 0}
    assert answer.headers["access-control-allow-origin"] == ALLOWED


async def test_another_origin_gets_no_cors_headers(engine):
    settings = make_settings(allowed_origins=[ALLOWED])
    async with app_client(settings) as client:
        preflight = await client.options(
            "/graphql",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        answer = await client.post(
            "/graphql",
            json=QUERY,
            headers={"Origin": "https://evil.example", **auth_header(settings, "user")},
        )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in answer.headers
