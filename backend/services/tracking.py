"""Email open and click tracking: a pixel and signed redirect links, recorded as a delivery's
engagements (``opened``, ``clicked`` with the URL) next to its status timeline.

Off by default (``HERALD_EMAIL_TRACK_OPENS``, ``HERALD_EMAIL_TRACK_CLICKS``), and never on an
event type marked critical (password resets: the same messages nobody may opt out of).
When on, the rendered HTML of an email gets:

- a 1x1 GIF before ``</body>``: ``{public_url}/t/o/<token>.gif``, the token naming the delivery;
- its ``http(s)`` links (``<a href>``) rewritten to ``{public_url}/t/c/<token>``, the token
  naming the delivery and the original URL. ``mailto:``/``tel:`` and other schemes, in-page
  anchors, the hosted preference and unsubscribe pages and any URL that mentions
  ``unsubscribe`` are left as written; the footer and ``List-Unsubscribe`` are added after this
  step, so they never are.

A token is ``<payload>.<signature>``, both base64url: the payload is the JSON ``[delivery_id]``
(open) or ``[delivery_id, url]`` (click), the signature the first 16 bytes of HMAC-SHA256 with
``HERALD_TRACKING_SECRET`` over the kind (``o`` or ``c``) and the payload. The redirect only
goes where a signed token says: a forged or altered token is refused, never followed, so the
endpoint is no open redirect. Tokens do not expire (a link in an old email keeps working).

Opens are approximate by nature: images blocked by the mail client are never counted, and
privacy proxies (Apple Mail Privacy Protection) fetch every image once, counting an open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape, unescape
from urllib.parse import urlsplit

from backend.config import Settings
from backend.db.history.base import (
    Engagement,
    EngagementKind,
    HistoryStore,
)
from backend.errors import ValidationError
from backend.services.webhooks import WebhookNotifier, engagement_item

log = logging.getLogger(__name__)

SIGNATURE_BYTES = 16
# Longer tokens are refused before any work: a URL in an email is rarely over 2,000 characters.
MAX_TOKEN_CHARS = 8000
# The smallest transparent GIF (1x1, 43 bytes).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# <a ... href="..."> or href='...': the attribute's prefix, and its value in either quotes.
_LINK = re.compile(
    r"""(<a\b[^>]*?\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL
)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def opens_tracked(settings: Settings, *, critical: bool) -> bool:
    return settings.email_track_opens and not critical


def clicks_tracked(settings: Settings, *, critical: bool) -> bool:
    return settings.email_track_clicks and not critical


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(settings: Settings, kind: str, payload: str) -> str:
    message = f"{kind}.{payload}".encode()
    return _b64(hmac.new(settings.tracking_key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES])


def _sign(settings: Settings, kind: str, values: list[str]) -> str:
    payload = _b64(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_signature(settings, kind, payload)}"


def _read(settings: Settings, kind: str, token: str) -> list[str]:
    payload, _, signature = token.partition(".")
    if not payload or not signature or len(token) > MAX_TOKEN_CHARS:
        raise ValidationError("This link is not valid", field="token")
    if not hmac.compare_digest(signature, _signature(settings, kind, payload)):
        raise ValidationError("This link is not valid", field="token")
    try:
        values = json.loads(_unb64(payload))
    except (ValueError, binascii.Error) as exc:
        raise ValidationError("This link is not valid", field="token") from exc
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ValidationError("This link is not valid", field="token")
    return values


def open_url(settings: Settings, *, delivery_id: str) -> str:
    """The pixel's URL for a delivery."""
    token = _sign(settings, "o", [delivery_id])
    return f"{settings.public_url.rstrip('/')}/t/o/{token}.gif"


def click_url(settings: Settings, *, delivery_id: str, url: str) -> str:
    """The signed redirect to ``url`` for a delivery."""
    token = _sign(settings, "c", [delivery_id, url])
    return f"{settings.public_url.rstrip('/')}/t/c/{token}"


def read_open_token(settings: Settings, token: str) -> str:
    """The delivery id of a pixel token; ``ValidationError`` when forged or malformed."""
    values = _read(settings, "o", token)
    if len(values) != 1:
        raise ValidationError("This link is not valid", field="token")
    return values[0]


@dataclass(frozen=True, slots=True)
class Click:
    delivery_id: str
    url: str


def read_click_token(settings: Settings, token: str) -> Click:
    """The delivery id and target of a click token; ``ValidationError`` when forged,
    malformed, or (whatever signed it) pointing anywhere but an http(s) URL."""
    values = _read(settings, "c", token)
    if len(values) != 2 or not is_trackable(values[1]):
        raise ValidationError("This link is not valid", field="token")
    return Click(delivery_id=values[0], url=values[1])


def is_trackable(url: str) -> bool:
    """An absolute http(s) URL with a host: the only links rewritten, the only redirects."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _kept_as_written(settings: Settings, url: str) -> bool:
    """Links that must reach their target untouched: unsubscribe and preference links (a mail
    provider or the recipient must be able to use them as sent)."""
    if "unsubscribe" in url.lower():
        return True
    base = settings.public_url.rstrip("/")
    return url.startswith((f"{base}/preferences/", f"{base}/unsubscribe/"))


def instrument_html(settings: Settings, html: str, *, delivery_id: str, critical: bool) -> str:
    """The email's HTML with its links rewritten (click tracking) and the pixel added (open
    tracking), as far as the settings turn each on; ``html`` itself when neither is."""
    if clicks_tracked(settings, critical=critical):

        def rewrite(match: re.Match[str]) -> str:
            quoted = match.group(2) if match.group(2) is not None else match.group(3)
            target = unescape(quoted).strip()
            if not is_trackable(target) or _kept_as_written(settings, target):
                return match.group(0)
            tracked = click_url(settings, delivery_id=delivery_id, url=target)
            return f'{match.group(1)}"{escape(tracked, quote=True)}"'

        html = _LINK.sub(rewrite, html)
    if opens_tracked(settings, critical=critical):
        pixel = (
            f'<img src="{escape(open_url(settings, delivery_id=delivery_id), quote=True)}" '
            'width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">'
        )
        closing = list(_BODY_END.finditer(html))
        if closing:
            at = closing[-1].start()
            html = html[:at] + pixel + html[at:]
        else:
            html = html + pixel
    return html


async def record_open(
    history: HistoryStore, *, delivery_id: str, webhooks: WebhookNotifier | None = None
) -> bool:
    """Record an open of an email delivery, and announce it to the webhook endpoints that ask
    for opens. False when there is no such email delivery (or it holds as many engagements as
    it may): nothing is announced then."""
    engagement = Engagement(EngagementKind.OPENED, datetime.now(UTC))
    return await _record(history, webhooks, delivery_id, engagement)


async def record_click(
    history: HistoryStore, *, click: Click, webhooks: WebhookNotifier | None = None
) -> bool:
    """Record a click of an email delivery's link, with its URL; as :func:`record_open`."""
    engagement = Engagement(EngagementKind.CLICKED, datetime.now(UTC), url=click.url)
    return await _record(history, webhooks, click.delivery_id, engagement)


async def _record(
    history: HistoryStore,
    webhooks: WebhookNotifier | None,
    delivery_id: str,
    engagement: Engagement,
) -> bool:
    recorded = await history.add_engagement(delivery_id, engagement)
    # The delivery is read only when some endpoint asks for opens or clicks.
    if recorded and webhooks is not None and await webhooks.wants_engagements():
        try:
            record = await history.get(delivery_id)
        except Exception:
            log.exception("an engagement of delivery %s was recorded, not announced", delivery_id)
            return recorded
        if record is not None:
            await webhooks.notify_engagements([engagement_item(record, engagement)])
    return recorded
