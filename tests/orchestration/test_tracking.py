"""Email open and click tracking end to end: a real worker renders and sends an HTML email to
a real SMTP server with the pixel and rewritten links, a real ``herald api`` process serves the
pixel and the signed redirect to a real HTTP client, and the opens and clicks show in the
delivery's GraphQL history while its status stays ``sent``."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from email.message import Message
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from backend.services.tracking import PIXEL_GIF
from tests.conftest import GraphQL, LiveServer, start_live_server, stop_live_server
from tests.orchestration.conftest import (
    PUBLIC_URL,
    RABBITMQ_URL,
    TRACKING_SECRET,
    HttpEndpoint,
    Register,
    Smtp,
)
from tests.orchestration.helpers import (
    admin,
    create_template,
    final_deliveries,
    part_of,
    send,
)
from tests.pipeline.servers import eventually
from tests.processes import ThreadedServer

DELIVERIES = """query($e: ID!) { deliveries(filter: {eventId: $e}) { edges { node {
  status timeline { status } engagements { kind at url } } } } }"""


class Links(HTMLParser):
    """The hrefs of the links and the srcs of the images of an HTML part."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")


async def email_to(relay: Smtp, delivery_id: str) -> Message:
    """The email of a delivery, as the SMTP server received it."""

    async def arrived() -> Message | None:
        with relay.sink.lock:
            found = [m for m in relay.sink.messages if m["X-Herald-Delivery-Id"] == delivery_id]
        return found[0] if found else None

    return await eventually(arrived)


@pytest.fixture(scope="module")
def landing() -> Iterator[ThreadedServer]:
    """The site an email links to."""

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"landed {request.url.query}")

    with ThreadedServer(Starlette(routes=[Route("/offer", page)])) as server:
        yield server


@pytest.fixture(scope="module")
def tracking_api() -> Iterator[LiveServer]:
    """A ``herald api`` process on the suite's database with the suite's tracking key."""
    server = start_live_server(
        {
            "HERALD_TRACKING_SECRET": TRACKING_SECRET,
            "HERALD_PUBLIC_URL": PUBLIC_URL,
            # The suite's worker takes its webhook tasks, and sees an endpoint registered
            # within 0.2 s as this process does.
            "HERALD_RABBITMQ_URL": RABBITMQ_URL,
            "HERALD_WEBHOOK_CACHE_SECONDS": "0.2",
        }
    )
    yield server
    stop_live_server(server)


async def tracked_template(api: GraphQL, offer: str) -> str:
    html = (
        "<html><body><p>Hello {{ user.first_name }}</p>"
        f'<p><a href="{offer}?id={{{{ payload.code }}}}&amp;src=mail">See the offer</a></p>'
        '<p><a href="mailto:help@herald.test">Write to us</a> · '
        "<a href='https://shop.example/unsubscribe?u=1'>Stop these</a> · "
        '<a href="#top">Top</a></p></body></html>'
    )
    content = [{"channel": "EMAIL", "subject": "Offer", "body": "Hello", "html": html}]
    return await create_template(api, "tracked", "Tracked", content)


async def email_dana(api: GraphQL, slug: str, event_type: str, payload: dict[str, Any]) -> str:
    """Send Dana an email of ``slug``; the event's id."""
    return await send(
        api,
        type=event_type,
        userIds=["u-dana"],
        templateSlug=slug,
        channels=["EMAIL"],
        payload=payload,
    )


async def test_opens_and_clicks_are_tracked_through_the_pixel_and_the_signed_redirect(
    api: GraphQL, relay_a: Smtp, landing: ThreadedServer, tracking_api: LiveServer
) -> None:
    offer = f"{landing.url}/offer"
    slug = await tracked_template(api, offer)
    code = uuid.uuid4().hex[:6]
    event_id = await email_dana(api, slug, "user_registered", {"code": code})
    [delivery] = await final_deliveries(api, event_id, 1)
    assert delivery["status"] == "SENT", delivery

    mail = await email_to(relay_a, delivery["id"])
    links = Links()
    links.feed(part_of(mail, "text/html"))

    # The offer goes through the redirect; mailto, unsubscribe and in-page links do not.
    tracked, *kept = links.hrefs
    assert tracked.startswith(f"{PUBLIC_URL}/t/c/"), links.hrefs
    assert kept[:3] == ["mailto:help@herald.test", "https://shop.example/unsubscribe?u=1", "#top"]
    # The footer's preference link and List-Unsubscribe come after tracking: untouched.
    assert all("/t/" not in href for href in kept)
    assert str(mail["List-Unsubscribe"]).startswith(f"<{PUBLIC_URL}/unsubscribe/")
    [pixel] = [src for src in links.images if "/t/o/" in src]
    assert pixel.startswith(f"{PUBLIC_URL}/t/o/") and pixel.endswith(".gif")

    live = tracking_api.url
    async with httpx.AsyncClient(timeout=10) as client:
        opened = await client.get(pixel.replace(PUBLIC_URL, live))
        assert opened.status_code == 200 and opened.content == PIXEL_GIF
        assert opened.headers["cache-control"].startswith("no-store")
        clicked = await client.get(tracked.replace(PUBLIC_URL, live), follow_redirects=True)
        assert clicked.status_code == 200
        assert clicked.text == f"landed id={code}&src=mail"
        assert [str(r.url).replace(live, PUBLIC_URL) for r in clicked.history] == [tracked]
        # A token altered by one character is refused and followed nowhere.
        forged = tracked[:-2] + ("A" if tracked[-2] != "A" else "B") + tracked[-1]
        refused = await client.get(forged.replace(PUBLIC_URL, live))
        assert refused.status_code == 400 and "location" not in refused.headers
        assert (await client.get(f"{live}/t/o/{pixel[-30:]}")).status_code == 404

    async def recorded() -> dict | None:
        body = await api(DELIVERIES, {"e": event_id}, token=admin(api.settings))
        [edge] = body["data"]["deliveries"]["edges"]
        found: dict = edge["node"]
        return found if len(found["engagements"]) == 2 else None

    found = await eventually(recorded)
    assert [(e["kind"], e["url"]) for e in found["engagements"]] == [
        ("OPENED", None),
        ("CLICKED", f"{offer}?id={code}&src=mail"),
    ]
    # Events next to the timeline: the delivery is still sent, its timeline unchanged.
    assert found["status"] == "SENT"
    assert found["timeline"][-1]["status"] == "SENT"


async def test_critical_emails_are_never_tracked(
    api: GraphQL, relay_a: Smtp, landing: ThreadedServer
) -> None:
    offer = f"{landing.url}/offer"
    slug = await tracked_template(api, offer)
    # password_reset is a critical event type: like unsubscribe links, no tracking.
    event_id = await email_dana(api, slug, "password_reset", {"code": "c1", "reset_url": offer})
    [delivery] = await final_deliveries(api, event_id, 1)

    links = Links()
    links.feed(part_of(await email_to(relay_a, delivery["id"]), "text/html"))
    assert links.hrefs[0] == f"{offer}?id=c1&src=mail"
    assert not any("/t/" in src for src in links.images)


async def test_opens_and_clicks_reach_the_webhook_endpoints_that_ask_for_them(
    api: GraphQL,
    relay_a: Smtp,
    landing: ThreadedServer,
    tracking_api: LiveServer,
    receiver: HttpEndpoint,
    register: Register,
) -> None:
    both = await register(engagements=["OPENED", "CLICKED"], statuses=["SENT"])
    clicks = await register(engagements=["CLICKED"], eventTypes=["user_registered"])
    other_type = await register(engagements=["OPENED", "CLICKED"], eventTypes=["movie_added"])
    statuses_only = await register()
    assert both["engagements"] == ["OPENED", "CLICKED"]
    assert statuses_only["engagements"] == []

    offer = f"{landing.url}/offer"
    slug = await tracked_template(api, offer)
    code = uuid.uuid4().hex[:6]
    event_id = await email_dana(api, slug, "user_registered", {"code": code})
    [delivery] = await final_deliveries(api, event_id, 1)
    links = Links()
    links.feed(part_of(await email_to(relay_a, delivery["id"]), "text/html"))
    tracked = links.hrefs[0]
    [pixel] = [src for src in links.images if "/t/o/" in src]
    live = tracking_api.url
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(pixel.replace(PUBLIC_URL, live))).status_code == 200
        assert (await client.get(tracked.replace(PUBLIC_URL, live))).status_code == 302

    def engaged(endpoint: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(request, item) for each open or click of this test's event posted to it."""
        found = []
        for request in receiver.received(endpoint["path"]):
            document = json.loads(request["body"])
            if document["type"] == "delivery.engaged":
                found += [(request, i) for i in document["data"] if i["event_id"] == event_id]
        return found

    async def arrived() -> bool:
        return len(engaged(both)) == 2 and len(engaged(clicks)) == 1

    await eventually(arrived)
    await asyncio.sleep(1)  # room for anything posted where it should not be
    items = sorted((item for _, item in engaged(both)), key=lambda i: i["kind"])
    click_url = f"{offer}?id={code}&src=mail"
    assert [(i["kind"], i["url"]) for i in items] == [("clicked", click_url), ("opened", None)]
    for item in items:
        assert {k: item[k] for k in ("id", "event_type", "user_id", "channel", "campaign_id")} == {
            "id": delivery["id"],
            "event_type": "user_registered",
            "user_id": "u-dana",
            "channel": "email",
            "campaign_id": None,
        }
    assert [item["kind"] for _, item in engaged(clicks)] == ["clicked"]
    assert engaged(other_type) == [] and engaged(statuses_only) == []
    # Signed as the status changes are: a Standard Webhooks library verifies it.
    request, _ = engaged(both)[0]
    verified = Webhook(both["secret"]).verify(request["body"], request["headers"])
    assert verified["type"] == "delivery.engaged"
    # Status changes still go by the statuses filter only: "sent", not the opens.
    statuses = [
        (u["status"], u["channel"])
        for r in receiver.received(both["path"])
        if json.loads(r["body"])["type"] == "delivery.status_changed"
        for u in json.loads(r["body"])["data"]
        if u["event_id"] == event_id
    ]
    assert statuses == [("sent", "email")]
