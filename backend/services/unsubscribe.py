"""Unsubscribe links: signed, expiring tokens that let a user change their opt-outs without
signing in, from an email's ``List-Unsubscribe`` header (RFC 8058 one-click) or its footer link
to the hosted preference page.

A token names one user and the event type of the email it came in; it is
``<payload>.<signature>``, both base64url: the payload is the JSON ``[user_id, event_type,
expires_at]`` and the signature the first 16 bytes of HMAC-SHA256 over the payload with
``HERALD_UNSUBSCRIBE_SECRET`` (by default a key derived from the HS256 JWT secret). Changing
that secret voids every link sent so far.
Opt-outs land in the user's ordinary preferences, which dispatch reads for every event: they
apply from the next event on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.channels.base import UnsubscribeLinks
from backend.config import Settings
from backend.db.repositories.preferences import PreferenceRepository
from backend.errors import ValidationError
from backend.services import event_types as event_type_service
from backend.services import preferences as preference_service
from backend.services import topics as topic_service

SIGNATURE_BYTES = 16
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


@dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    user_id: str
    event_type: str
    expires_at: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(settings: Settings, payload: str) -> str:
    digest = hmac.new(settings.unsubscribe_key, payload.encode(), hashlib.sha256).digest()
    return _b64(digest[:SIGNATURE_BYTES])


def sign_token(
    settings: Settings, *, user_id: str, event_type: str, now: float | None = None
) -> str:
    """A token for ``user_id`` valid ``unsubscribe_link_ttl_days`` from ``now``."""
    expires = int((now or time.time()) + settings.unsubscribe_link_ttl_days * 86_400)
    payload = _b64(json.dumps([user_id, event_type, expires], separators=(",", ":")).encode())
    return f"{payload}.{_signature(settings, payload)}"


def read_token(settings: Settings, token: str, *, now: float | None = None) -> UnsubscribeToken:
    """The token's content; ``ValidationError`` when it is malformed, forged or expired."""
    payload, _, signature = token.partition(".")
    if not payload or not signature or len(token) > 2000:
        raise ValidationError("This link is not valid", field="token")
    if not hmac.compare_digest(signature, _signature(settings, payload)):
        raise ValidationError("This link is not valid", field="token")
    try:
        user_id, event_type, expires = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationError("This link is not valid", field="token") from exc
    if not isinstance(user_id, str) or not isinstance(event_type, str):
        raise ValidationError("This link is not valid", field="token")
    if not isinstance(expires, int) or expires < (now or time.time()):
        raise ValidationError("This link has expired", field="token")
    return UnsubscribeToken(user_id=user_id, event_type=event_type, expires_at=expires)


def links_for(settings: Settings, *, user_id: str, event_type: str) -> UnsubscribeLinks:
    """The unsubscribe links for an email of ``event_type`` to ``user_id``."""
    token = sign_token(settings, user_id=user_id, event_type=event_type)
    base = settings.public_url.rstrip("/")
    mailto = None
    if settings.unsubscribe_mailto:
        mailto = f"mailto:{settings.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}"
    return UnsubscribeLinks(
        page_url=f"{base}/preferences/{token}",
        one_click_url=f"{base}/unsubscribe/{token}",
        mailto=mailto,
        one_click_body=ONE_CLICK_BODY,
    )


@dataclass(frozen=True, slots=True)
class PreferencePage:
    """What the hosted page shows: the user's opt-outs and the event types they can choose."""

    token: UnsubscribeToken
    preferences: preference_service.Preferences
    event_types: list[tuple[str, str]]  # (name, description), the token's own type first
    # (key, name) of the topics the user is in or opted out of, by key.
    topics: list[tuple[str, str]] = field(default_factory=list)


def _actor(token: UnsubscribeToken) -> Principal:
    # The link stands for the user: they manage their own preferences, nothing else.
    return Principal(user_id=token.user_id)


async def preference_page(session: AsyncSession, *, token: UnsubscribeToken) -> PreferencePage:
    """The page's content for the token's user."""
    prefs = await preference_service.get_preferences(
        session, actor=_actor(token), user_id=token.user_id
    )
    rows = await event_type_service.list_event_types(session)
    # Critical types ignore opt-outs, so offering them would be a promise not kept.
    types = [(row.name, row.description or "") for row in rows if not row.critical]
    names = {name for name, _ in types}
    extra = [t for t in (token.event_type, *prefs.disabled_event_types) if t not in names]
    ordered = sorted(types, key=lambda t: (t[0] != token.event_type, t[0]))
    return PreferencePage(
        token=token,
        preferences=prefs,
        event_types=[(t, "") for t in dict.fromkeys(extra)] + ordered,
        topics=await topic_service.topics_of_user(
            session, user_id=token.user_id, also=prefs.disabled_topics
        ),
    )


async def save_preferences(
    session: AsyncSession,
    *,
    token: UnsubscribeToken,
    disabled_channels: Sequence[Channel],
    disabled_event_types: Sequence[str],
    disabled_topics: Sequence[str] | preference_service.Keep = preference_service.KEEP,
) -> preference_service.Preferences:
    """Replace the user's channel, event-type and topic opt-outs (quiet hours are kept)."""
    return await preference_service.set_preferences(
        session,
        actor=_actor(token),
        user_id=token.user_id,
        disabled_channels=disabled_channels,
        disabled_event_types=disabled_event_types,
        disabled_topics=disabled_topics,
    )


async def opt_out_of_event_type(
    session: AsyncSession, *, token: UnsubscribeToken
) -> preference_service.Preferences:
    """The one-click unsubscribe: opt the user out of the token's event type, keeping every
    other preference. Doing it twice changes nothing."""
    row = await PreferenceRepository(session).get(token.user_id, for_update=True)
    channels = [Channel(c) for c in row.disabled_channels] if row is not None else []
    types = list(row.disabled_event_types) if row is not None else []
    if token.event_type not in types:
        types.append(token.event_type)
    return await save_preferences(
        session, token=token, disabled_channels=channels, disabled_event_types=types
    )
