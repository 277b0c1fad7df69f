"""The endpoints of email open and click tracking (no login: the signed token in the URL is
the credential; backend.services.tracking).

- ``GET /t/o/<token>.gif``: the 1x1 pixel; records an open of the token's delivery.
- ``GET /t/c/<token>``: records a click and redirects (302) to the URL the token signs.

A forged, altered or malformed token gets a 404 (pixel) or a 400 page (link), and never a
redirect. A history store that cannot record the event does not break the email: the pixel is
served and the redirect followed all the same, and the failure is logged.
"""

from __future__ import annotations

import logging
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from backend.errors import HeraldError
from backend.schema.context import Services
from backend.services import tracking

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
HEADERS = {
    # Each open and click must reach the API: no cache may answer for it.
    "Cache-Control": "no-store, max-age=0",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


@router.get("/t/o/{token}.gif")
async def tracking_pixel(request: Request, token: str) -> Response:
    """The pixel of an email: an open of its delivery."""
    services = _services(request)
    try:
        delivery_id = tracking.read_open_token(services.settings, token)
    except HeraldError:
        return Response(status_code=404, headers=HEADERS)
    try:
        clients = services.clients
        await tracking.record_open(
            clients.history, delivery_id=delivery_id, webhooks=clients.webhooks
        )
    except Exception:
        log.exception("could not record an open of delivery %s", delivery_id)
    return Response(tracking.PIXEL_GIF, media_type="image/gif", headers=HEADERS)


@router.get("/t/c/{token}")
async def tracked_link(request: Request, token: str) -> Response:
    """A link of an email: a click of its delivery, then on to the link's URL."""
    services = _services(request)
    try:
        click = tracking.read_click_token(services.settings, token)
    except HeraldError as exc:
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Link not valid'
            f"</title></head><body><h1>Link not valid</h1><p>{escape(exc.message)}.</p>"
            "</body></html>"
        )
        return HTMLResponse(page, status_code=400, headers=HEADERS)
    try:
        clients = services.clients
        await tracking.record_click(clients.history, click=click, webhooks=clients.webhooks)
    except Exception:
        log.exception("could not record a click of delivery %s", click.delivery_id)
    return RedirectResponse(click.url, status_code=302, headers=HEADERS)
