"""The <herald-inbox> demo page is a development convenience: off unless allowed."""

from __future__ import annotations

from tests.conftest import app_client, make_settings


async def test_the_demo_page_is_off_outside_development_unless_asked_for(engine) -> None:
    async with app_client(make_settings()) as client:
        assert (await client.get("/demo/inbox")).status_code == 404
        assert (await client.get("/demo/assets/demo.js")).status_code == 404
    async with app_client(make_settings(serve_demo=True, auth_url="http://auth.test:8001")) as c:
        page = await c.get("/demo/inbox")
        script = await c.get("/demo/assets/demo.js")
    assert page.status_code == 200
    assert 'data-auth-url="http://auth.test:8001"' in page.text
    assert "connect-src 'self' http://auth.test:8001" in page.headers["content-security-policy"]
    assert script.status_code == 200
    assert script.headers["content-security-policy"] == page.headers["content-security-policy"]
