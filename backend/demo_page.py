"""The ``<herald-inbox>`` demo page, a development convenience like the admin page.

- ``GET /demo/inbox``: the page (``clients/inbox/demo/index.html``), with the auth service's
  address in a data attribute: it lists the stand-in's demo users and signs in as the one
  picked (``/api/v1/auth/dev/users`` and ``/dev/token``), then shows the element loaded from
  ``/sdk/herald-inbox.js``. A button sends the user a test notification with the stand-in's
  demo service token.
- ``/demo/assets/``: its script and stylesheet.

Served only when ``HERALD_SERVE_DEMO`` allows it (development by default): the page signs in
through the stand-in, which never runs in production.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from backend.config import Settings
from backend.content_security import WithHeaders, demo_policy, page_headers

DEMO_DIR = Path(__file__).resolve().parent.parent / "clients" / "inbox" / "demo"
_AUTH_URL_MARKER = "__HERALD_AUTH_URL__"


def mount_demo(app: FastAPI, settings: Settings) -> None:
    """Serve the demo page and its assets on ``app``, if its files are there."""
    page = DEMO_DIR / "index.html"
    if not page.is_file():
        return
    headers = page_headers(demo_policy(settings.auth_url))
    html = page.read_text().replace(_AUTH_URL_MARKER, escape(settings.auth_url.rstrip("/")))

    async def demo_inbox() -> HTMLResponse:
        return HTMLResponse(html, headers={**headers, "Cache-Control": "no-store"})

    app.add_api_route("/demo/inbox", demo_inbox, methods=["GET"], include_in_schema=False)
    assets = StaticFiles(directory=DEMO_DIR / "assets")
    app.mount("/demo/assets", WithHeaders(assets, headers), name="demo-assets")
