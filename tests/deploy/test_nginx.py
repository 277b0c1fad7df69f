"""The repository's nginx config, run by Debian's nginx in front of a live `herald api`."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.conftest import ROOT, LiveServer, free_port, start_live_server, stop_live_server
from tests.deploy.conftest import Nginx, start_nginx, stop_process
from tests.factories import CREATE_TEMPLATE, template_input, token_for
from tests.graphql_ws import connect, init, receive, subscribe

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
INTROSPECTION = "{ __schema { types { name kind description fields { name description } } } }"
ICON = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n'


@pytest.fixture(scope="module")
def proxied(engine) -> Iterator[tuple[Nginx, LiveServer]]:
    """nginx on a free port, its upstream a live API that accepts the proxy's origin (a
    browser's WebSocket origin is the address it loaded the page from: the proxy)."""
    port = free_port()
    api = start_live_server(
        {
            "HERALD_ALLOWED_ORIGINS": json.dumps([f"http://127.0.0.1:{port}"]),
            "HERALD_GRAPHIQL": "true",
        }
    )
    try:
        proxy = start_nginx(api.url.removeprefix("http://"), ROOT / "admin_frontend", port=port)
    except BaseException:
        stop_live_server(api)
        raise
    (proxy.admin_root / "icon.svg").write_bytes(ICON)
    (proxy.admin_root / "icon.svg").chmod(0o644)
    try:
        yield proxy, api
    finally:
        stop_process(proxy.process)
        shutil.rmtree(proxy.prefix, ignore_errors=True)
        stop_live_server(api)


def post_graphql(proxy: Nginx, query: str, variables=None, *, token=None, **kwargs):
    headers = {"Accept": "application/graphql-response+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(
        f"{proxy.url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=10,
        **kwargs,
    )


def test_mutation_and_query_through_the_proxy(proxied, settings):
    proxy, _ = proxied
    manager = token_for(settings, "manager", sub="deploy-manager")
    slug = f"deploy-{uuid.uuid4().hex[:8]}"
    created = post_graphql(
        proxy, CREATE_TEMPLATE, {"input": template_input(slug, name="Via nginx")}, token=manager
    )
    assert created.status_code == 200, created.text
    assert created.json()["data"]["createTemplate"]["__typename"] == "Template"

    read = post_graphql(
        proxy,
        "query($slug: String!) { template(slug: $slug) { slug name } viewer { id roles } }",
        {"slug": slug},
        token=manager,
    )
    assert read.status_code == 200
    assert read.json()["data"] == {
        "template": {"slug": slug, "name": "Via nginx"},
        "viewer": {"id": "deploy-manager", "roles": ["manager"]},
    }
    # A mutation over GET is still refused by the API behind the proxy (405).
    refused = httpx.get(
        f"{proxy.url}/graphql",
        params={"query": "mutation { __typename }"},
        headers={"Accept": "application/graphql-response+json"},
    )
    assert refused.status_code == 405


async def test_live_subscription_through_the_proxy(proxied, settings):
    proxy, _ = proxied
    token = token_for(settings, "user", sub="deploy-ws")
    async with connect(proxy.url) as ws:
        ack = await init(ws, token)
        assert ack == {"type": "connection_ack", "payload": {"userId": "deploy-ws"}}
        await subscribe(ws, "subscription { heartbeat(intervalSeconds: 1) { at } }", id="hb")
        arrivals = []
        for _ in range(3):
            message = await receive(ws)
            assert message["type"] == "next" and message["id"] == "hb", message
            assert message["payload"]["data"]["heartbeat"]["at"]
            arrivals.append(time.monotonic())
        # Ticks arrive as they happen, a second apart, not buffered by the proxy.
        assert arrivals[2] - arrivals[0] >= 1.5
    # The handshake went through the subscription location (hour-long read timeout).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        upgrades = [e for e in proxy.access_log() if e["status"] == 101]
        if upgrades:
            break
        await asyncio.sleep(0.1)
    assert upgrades and all(e["uri"] == "/graphql-subscriptions" for e in upgrades)
    assert token not in (proxy.prefix / "access.log").read_text()


async def test_websocket_from_a_foreign_origin_is_still_refused(proxied):
    proxy, _ = proxied
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await connect(proxy.url, origin="http://evil.example")


def test_security_headers_on_answers_and_errors(proxied):
    proxy, _ = proxied
    responses = {
        "graphql": post_graphql(proxy, "{ __typename }"),
        "admin": httpx.get(f"{proxy.url}/admin/"),
        "not found": httpx.get(f"{proxy.url}/nope"),
        "too large": httpx.post(f"{proxy.url}/graphql", content=b"x" * (2 * 1024 * 1024)),
    }
    for name, response in responses.items():
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get(header) == value, (name, header)
        assert "nginx/" not in response.headers.get("server", ""), name  # no version
    # The admin page's scripts come only from its own origin; a GraphQL answer is no page.
    assert "script-src 'self'" in responses["admin"].headers["content-security-policy"]
    assert "content-security-policy" not in responses["graphql"].headers


def test_graphiql_and_its_assets_through_the_proxy(proxied):
    """GraphiQL's page carries the API's policy and its scripts load from the same origin."""
    proxy, _ = proxied
    page = httpx.get(f"{proxy.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.text)
    assert scripts and all(src.startswith("/graphiql/assets/") for src in scripts)
    for src in scripts:
        asset = httpx.get(f"{proxy.url}{src}")
        assert asset.status_code == 200, src
        assert "javascript" in asset.headers["content-type"], src


def test_the_inbox_element_through_the_proxy(proxied):
    """<herald-inbox> reaches apps through the proxy; the demo page (development) does not."""
    proxy, _ = proxied
    sdk = httpx.get(f"{proxy.url}/sdk/herald-inbox.js")
    assert sdk.status_code == 200
    assert "javascript" in sdk.headers["content-type"]
    assert "herald-inbox" in sdk.text
    assert httpx.get(f"{proxy.url}/demo/inbox").status_code == 404


def test_gzip_for_graphql_answers(proxied):
    proxy, _ = proxied
    plain = post_graphql(proxy, INTROSPECTION, headers={"Accept-Encoding": "identity"})
    with httpx.stream(
        "POST",
        f"{proxy.url}/graphql",
        json={"query": INTROSPECTION},
        headers={"Accept": "application/graphql-response+json", "Accept-Encoding": "gzip"},
    ) as compressed:
        raw = b"".join(compressed.iter_raw())
        assert compressed.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in compressed.headers["vary"]
    assert json.loads(gzip.decompress(raw)) == plain.json()
    assert len(raw) * 3 < len(plain.content)
    assert "content-encoding" not in plain.headers


def test_admin_page_is_served_with_caching_headers(proxied):
    proxy, _ = proxied
    page = httpx.get(f"{proxy.url}/admin/")
    assert page.status_code == 200
    assert page.content == (ROOT / "admin_frontend" / "index.html").read_bytes()
    assert page.headers["content-type"].startswith("text/html")
    # HTML (and the scripts it loads) revalidate on every load: a deploy shows at once.
    assert page.headers["cache-control"] == "no-cache"
    etag = page.headers["etag"]
    again = httpx.get(f"{proxy.url}/admin/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    icon = httpx.get(f"{proxy.url}/admin/icon.svg")
    assert icon.content == ICON
    assert icon.headers["cache-control"] == "max-age=604800"
    assert httpx.get(f"{proxy.url}/admin").headers["location"].endswith("/admin/")
    assert httpx.get(f"{proxy.url}/").headers["location"].endswith("/admin/")


def test_the_admin_page_settings_come_from_the_api(proxied):
    """nginx serves the page's files but passes config.js on to the API, which writes it from
    its settings: here the test environment's, with no development conveniences."""
    proxy, api = proxied
    config = httpx.get(f"{proxy.url}/admin/config.js")
    assert config.status_code == 200
    assert config.headers["content-type"].startswith("text/javascript")
    assert config.headers["cache-control"] == "no-cache"
    assert config.text == httpx.get(f"{api.url}/admin/config.js").text
    body = config.text
    settings = json.loads(body[body.index("{") : body.rindex("}") + 1])
    assert settings["tokenPaste"] is False and settings["authStandinUrl"] is None
    assert settings["graphqlPath"] == "/graphql"


def test_body_size_limit(proxied, settings):
    proxy, _ = proxied
    too_large = httpx.post(
        f"{proxy.url}/graphql",
        content=json.dumps({"query": "{ __typename }", "pad": "x" * (1024 * 1024)}),
        headers={"Content-Type": "application/json"},
    )
    assert too_large.status_code == 413
    fits = post_graphql(proxy, "{ __typename }", headers={"X-Pad": "x" * 100})
    assert fits.status_code == 200


def test_health_proxied_and_metrics_private(proxied):
    proxy, api = proxied
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{proxy.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    # Prometheus scrapes the api directly; through the public proxy /metrics does not exist.
    assert httpx.get(f"{proxy.url}/metrics").status_code == 404
    assert httpx.get(f"{api.url}/metrics").status_code == 200


def test_unsubscribe_links_and_the_preference_page_reach_the_api(proxied, settings):
    from backend.services.unsubscribe import sign_token

    proxy, _ = proxied
    token = sign_token(settings, user_id=f"u-nginx-{uuid.uuid4().hex[:6]}", event_type="news")
    page = httpx.get(f"{proxy.url}/preferences/{token}", timeout=10)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{proxy.url}/unsubscribe/{token}", timeout=10).status_code == 200
    one_click = httpx.post(
        f"{proxy.url}/unsubscribe/{token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert one_click.status_code == 200, one_click.text
    bad = httpx.get(f"{proxy.url}/unsubscribe/not-a-token", timeout=10)
    assert bad.status_code == 400 and "Link not valid" in bad.text


def test_tracking_links_reach_the_api_and_redirect(proxied, settings):
    from backend.services.tracking import PIXEL_GIF, click_url, open_url

    proxy, _ = proxied
    base = settings.public_url.rstrip("/")
    pixel = open_url(settings, delivery_id="d-nginx").replace(base, proxy.url)
    answer = httpx.get(pixel, timeout=10)
    assert answer.status_code == 200 and answer.content == PIXEL_GIF
    assert answer.headers["content-type"] == "image/gif"
    link = click_url(settings, delivery_id="d-nginx", url="https://example.org/x?a=1")
    redirect = httpx.get(link.replace(base, proxy.url), timeout=10)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://example.org/x?a=1"
    assert httpx.get(f"{proxy.url}/t/c/not-a-token", timeout=10).status_code == 400


def test_provider_reports_reach_the_api_through_the_proxy(proxied):
    proxy, _ = proxied
    # Mailgun is not configured in the suite: the API itself refuses, in its JSON shape.
    answer = httpx.post(
        f"{proxy.url}/providers/email/mailgun/events", json={"signature": {}}, timeout=10
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHENTICATED"
    assert httpx.get(f"{proxy.url}/providers/email/mailgun/events", timeout=10).status_code == 403
