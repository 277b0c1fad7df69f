"""The hosted preference page and the one-click unsubscribe endpoint (no login: the signed
link in the email is the credential; backend.services.unsubscribe).

- ``GET /preferences/<token>``: the user's channels, event types and topics, as checkboxes.
- ``POST /preferences/<token>``: save them (a plain HTML form, urlencoded).
- ``POST /unsubscribe/<token>``: RFC 8058 one-click (``List-Unsubscribe=One-Click``): opt out
  of the email's event type. Mail providers POST here without any user interaction.
- ``GET /unsubscribe/<token>``: a confirmation button, never an opt-out by itself (link
  scanners and prefetchers follow GET links).
"""

from __future__ import annotations

import logging
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from backend.channels import Channel
from backend.channels.registry import offered_channels
from backend.errors import HeraldError, ValidationError
from backend.schema.context import Services
from backend.services import unsubscribe

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 64_000
CHANNEL_NAMES = {
    Channel.EMAIL: "Email",
    Channel.SMS: "Text messages (SMS)",
    Channel.PUSH: "Browser notifications",
    Channel.IN_APP: "In-app notifications",
    Channel.SLACK: "Slack",
    Channel.TELEGRAM: "Telegram",
    Channel.DISCORD: "Discord",
    Channel.TEAMS: "Microsoft Teams",
    Channel.WEBHOOK: "Webhook",
    Channel.PUSH_MOBILE: "Mobile app notifications",
}
HEADERS = {
    # The token in the URL is a credential: keep it out of caches and Referer headers.
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}
STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0}"
    "label{display:block;margin:.3rem 0}small{color:#666}button{font:inherit;padding:.4rem 1rem}"
    ".note{background:#eef6ee;padding:.5rem 1rem;border-radius:6px}"
)


def _page(title: str, content: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{content}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _refused(exc: HeraldError) -> HTMLResponse:
    return _page(
        "Link not valid",
        f"<p>{escape(exc.message)}. Use the link in a more recent email.</p>",
        status=400,
    )


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationError("The form is too large")
    return parse_qs(body.decode("utf-8", "replace"))


def _preference_form(page: unsubscribe.PreferencePage, saved: bool, offered: list[Channel]) -> str:
    prefs = page.preferences
    channels = "".join(
        f'<label><input type="checkbox" name="channel" value="{c.value}"'
        f"{'' if c in prefs.disabled_channels else ' checked'}> {escape(CHANNEL_NAMES[c])}</label>"
        for c in offered
    )
    types = "".join(
        f'<input type="hidden" name="shown" value="{escape(name)}">'
        f'<label><input type="checkbox" name="type" value="{escape(name)}"'
        f"{'' if name in prefs.disabled_event_types else ' checked'}> {escape(name)}"
        f"{f' <small>{escape(text)}</small>' if text else ''}</label>"
        for name, text in page.event_types
    )
    topics = "".join(
        f'<input type="hidden" name="shown_topic" value="{escape(key)}">'
        f'<label><input type="checkbox" name="topic" value="{escape(key)}"'
        f"{'' if key in prefs.disabled_topics else ' checked'}> {escape(name)}</label>"
        for key, name in page.topics
    )
    topic_set = (
        f"<fieldset><legend>Send me notifications for these topics</legend>{topics}</fieldset>"
        if page.topics
        else ""
    )
    note = '<p class="note">Saved. This applies from the next notification on.</p>' if saved else ""
    return (
        f"{note}<form method=post>"
        "<fieldset><legend>Send me notifications by</legend>"
        f"{channels}</fieldset>"
        "<fieldset><legend>Send me notifications about</legend>"
        f"{types}</fieldset>"
        f"{topic_set}"
        "<p><small>Security messages, such as password resets, are always sent.</small></p>"
        "<button type=submit>Save</button></form>"
    )


def _preferences_shown(
    services: Services, page: unsubscribe.PreferencePage, *, saved: bool
) -> HTMLResponse:
    offered = offered_channels(services.settings)
    return _page("Your notifications", _preference_form(page, saved=saved, offered=offered))


@router.get("/preferences/{token}")
async def show_preferences(request: Request, token: str) -> HTMLResponse:
    """The preference page for the link's user."""
    services = _services(request)
    try:
        claims = unsubscribe.read_token(services.settings, token)
        async with services.sessionmaker() as session:
            page = await unsubscribe.preference_page(session, token=claims)
    except HeraldError as exc:
        return _refused(exc)
    return _preferences_shown(services, page, saved=False)


@router.post("/preferences/{token}")
async def save_preferences(request: Request, token: str) -> HTMLResponse:
    """Save the form: unchecked channels and shown event types become opt-outs."""
    services = _services(request)
    try:
        claims = unsubscribe.read_token(services.settings, token)
        form = await _form(request)
        wanted_channels = set(form.get("channel", []))
        shown = set(form.get("shown", []))
        wanted_types = set(form.get("type", []))
        async with services.sessionmaker() as session:
            current = await unsubscribe.preference_page(session, token=claims)
            # Opt-outs the page did not show (types since removed) are kept as they are.
            kept = [t for t in current.preferences.disabled_event_types if t not in shown]
            shown_topics = set(form.get("shown_topic", []))
            kept_topics = [t for t in current.preferences.disabled_topics if t not in shown_topics]
            # Channels the page did not offer (not configured here) keep their opt-outs.
            offered = offered_channels(services.settings)
            kept_channels = [c for c in current.preferences.disabled_channels if c not in offered]
            await unsubscribe.save_preferences(
                session,
                token=claims,
                disabled_channels=[c for c in offered if c.value not in wanted_channels]
                + kept_channels,
                disabled_event_types=kept + sorted(shown - wanted_types),
                disabled_topics=kept_topics + sorted(shown_topics - set(form.get("topic", []))),
            )
            page = await unsubscribe.preference_page(session, token=claims)
            await session.commit()
    except HeraldError as exc:
        return _refused(exc)
    return _preferences_shown(services, page, saved=True)


@router.get("/unsubscribe/{token}")
async def confirm_unsubscribe(request: Request, token: str) -> HTMLResponse:
    """A button that makes the one-click POST, and the way to the full page."""
    services = _services(request)
    try:
        claims = unsubscribe.read_token(services.settings, token)
    except HeraldError as exc:
        return _refused(exc)
    content = (
        f"<p>Stop notifications about <b>{escape(claims.event_type)}</b>?</p>"
        f'<form method=post><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f"<button type=submit>Unsubscribe</button></form>"
        f'<p><a href="../preferences/{escape(token)}">Choose in detail</a></p>'
    )
    return _page("Unsubscribe", content)


@router.post("/unsubscribe/{token}")
async def one_click_unsubscribe(request: Request, token: str) -> HTMLResponse:
    """RFC 8058 one-click: opt the user out of the email's event type."""
    services = _services(request)
    try:
        claims = unsubscribe.read_token(services.settings, token)
        async with services.sessionmaker() as session:
            await unsubscribe.opt_out_of_event_type(session, token=claims)
            await session.commit()
    except HeraldError as exc:
        return _refused(exc)
    log.info("one-click unsubscribe from %s", claims.event_type)
    content = (
        f"<p>You will no longer get notifications about <b>{escape(claims.event_type)}</b>.</p>"
        f'<p><a href="../preferences/{escape(token)}">Change your notifications</a></p>'
    )
    return _page("Unsubscribed", content)
