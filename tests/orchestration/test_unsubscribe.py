"""Unsubscribe: RFC 8058 headers on every non-critical email, the one-click POST, the hosted
preference page, and the opt-outs taking effect on the next event (real worker, real SMTP)."""

from __future__ import annotations

import re
from email.message import Message
from urllib.parse import urlsplit

import httpx

from backend.services.unsubscribe import sign_token
from tests.conftest import GraphQL
from tests.orchestration.conftest import PUBLIC_URL, Smtp
from tests.orchestration.helpers import (
    SET_PREFERENCES,
    admin,
    final_deliveries,
    part_of,
    preferences,
    send,
)
from tests.pipeline.servers import eventually


async def email_of(api: GraphQL, relay: Smtp, event_id: str) -> Message:
    [delivery] = await final_deliveries(api, event_id, 1)
    assert delivery["status"] == "SENT", delivery

    async def arrived() -> Message | None:
        with relay.sink.lock:
            found = [m for m in relay.sink.messages if m["X-Herald-Delivery-Id"] == delivery["id"]]
        return found[0] if found else None

    return await eventually(arrived)


def one_click_path(mail: Message) -> str:
    header = str(mail["List-Unsubscribe"])
    urls = re.findall(r"<([^>]+)>", header)
    assert urls[0].startswith(f"{PUBLIC_URL}/unsubscribe/"), header
    assert urls[1].startswith("mailto:unsubscribe@herald.test?subject=unsubscribe"), header
    return urlsplit(urls[0]).path


async def test_non_critical_email_carries_one_click_headers_and_a_page_link(
    api: GraphQL, relay_a: Smtp
) -> None:
    event_id = await send(api, type="user_registered", userIds=["u-dana"], channels=["EMAIL"])

    mail = await email_of(api, relay_a, event_id)

    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = one_click_path(mail)
    token = path.rsplit("/", 1)[1]
    assert f"{PUBLIC_URL}/preferences/{token}" in part_of(mail, "text/plain")


async def test_critical_email_has_no_unsubscribe(api: GraphQL, relay_a: Smtp) -> None:
    event_id = await send(
        api, type="password_reset", userIds=["u-dana"], payload={"reset_url": "https://x/r"}
    )

    mail = await email_of(api, relay_a, event_id)

    assert mail["List-Unsubscribe"] is None
    assert mail["List-Unsubscribe-Post"] is None
    assert "/preferences/" not in part_of(mail, "text/plain")


async def test_one_click_post_opts_out_and_the_next_event_is_skipped(
    api: GraphQL, http: httpx.AsyncClient, relay_a: Smtp
) -> None:
    event_id = await send(api, type="user_registered", userIds=["u-chen"], channels=["EMAIL"])
    path = one_click_path(await email_of(api, relay_a, event_id))

    # Following the link (a scanner, a prefetch) only shows a button.
    page = await http.get(path)
    assert page.status_code == 200 and "<button" in page.text
    assert (await preferences(api, "u-chen"))["disabledEventTypes"] == []

    # What a mail provider sends for the user's click (RFC 8058).
    answer = await http.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    prefs = await preferences(api, "u-chen")
    assert prefs == {"disabledChannels": [], "disabledEventTypes": ["user_registered"]}
    # The next event of that type is not sent: skipped, with the reason.
    again = await send(api, type="user_registered", userIds=["u-chen"], channels=["EMAIL"])
    [delivery] = await final_deliveries(api, again, 1)
    assert delivery["status"] == "SKIPPED"
    assert "opted out of 'user_registered'" in delivery["timeline"][0]["reason"]
    # Clicking twice changes nothing.
    assert (await http.post(path, content="List-Unsubscribe=One-Click")).status_code == 200
    assert (await preferences(api, "u-chen"))["disabledEventTypes"] == ["user_registered"]


async def test_the_preference_page_saves_channel_and_event_type_opt_outs(
    api: GraphQL, http: httpx.AsyncClient, relay_a: Smtp, suite_settings
) -> None:
    # An opt-out of a channel the page does not offer (Discord: not configured) is kept.
    muted = await api(
        SET_PREFERENCES,
        {"input": {"userId": "u-emil", "disabledChannels": ["DISCORD"], "disabledEventTypes": []}},
        token=admin(api.settings),
    )
    assert muted["data"]["setPreferences"]["disabledChannels"] == ["DISCORD"]
    token = sign_token(suite_settings, user_id="u-emil", event_type="movie_added")

    page = await http.get(f"/preferences/{token}")

    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'name="channel" value="email" checked' in page.text
    assert 'name="type" value="movie_added" checked' in page.text
    assert "password_reset" not in page.text  # critical: nobody can opt out of it
    # The suite configures Slack, Telegram, mobile push and webhooks: offered; Discord and
    # Teams are not.
    assert 'name="channel" value="slack" checked' in page.text
    assert 'value="discord"' not in page.text
    form = [
        ("channel", "email"),
        ("channel", "in_app"),
        ("shown", "movie_added"),
        ("shown", "user_registered"),
        ("type", "user_registered"),
    ]
    saved = await http.post(
        f"/preferences/{token}",
        content="&".join(f"{k}={v}" for k, v in form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert saved.status_code == 200 and "Saved" in saved.text
    assert 'name="type" value="movie_added">' in saved.text  # now unchecked
    prefs = await preferences(api, "u-emil")
    # Every offered channel left unticked is an opt-out.
    assert sorted(prefs["disabledChannels"]) == [
        "DISCORD",
        "PUSH",
        "PUSH_MOBILE",
        "SLACK",
        "SMS",
        "TELEGRAM",
        "WEBHOOK",
    ]
    assert prefs["disabledEventTypes"] == ["movie_added"]
    # The next movie_added event skips every channel for the user.
    event_id = await send(
        api,
        type="movie_added",
        userIds=["u-emil"],
        payload={"movie": {"title": "Metropolis", "url": "https://example.com/m/1"}},
    )
    deliveries = await final_deliveries(api, event_id, 3)
    assert {d["status"] for d in deliveries} == {"SKIPPED"}


async def test_forged_and_expired_links_are_refused(
    api: GraphQL, http: httpx.AsyncClient, suite_settings
) -> None:
    token = sign_token(suite_settings, user_id="u-bruno", event_type="movie_added")
    payload, signature = token.split(".")
    forged = f"{payload}.{'A' * len(signature)}"
    expired = sign_token(
        suite_settings, user_id="u-bruno", event_type="movie_added", now=1_000_000_000
    )

    for bad in (forged, expired, "nonsense"):
        assert (await http.post(f"/unsubscribe/{bad}")).status_code == 400
        assert (await http.get(f"/preferences/{bad}")).status_code == 400
    assert "expired" in (await http.get(f"/preferences/{expired}")).text
    assert (await preferences(api, "u-bruno"))["disabledEventTypes"] == []
