"""Content-Security-Policy for the browser pages the API serves: GraphiQL at ``/graphql``,
the admin page under ``/admin/``, ``<herald-inbox>`` at ``/sdk/herald-inbox.js`` and its demo
page at ``/demo/inbox``. (The hosted preference page sets its own, stricter policy:
backend/preference_page.py.)

Every script, style, font and worker comes from the API's own origin, so a page that holds an
admin's token runs no third party's code. Two allowances, both needed by the pages themselves:

- ``style-src 'unsafe-inline'``: GraphiQL's Monaco editor positions every line and widget with
  ``style`` attributes and injects ``<style>`` elements at run time, and the admin page's
  campaign screen colours its status swatches with ``style`` attributes (nginx's policy for
  the admin page allows the same). Scripts stay ``'self'`` only: no inline script, no
  ``eval``.
- the admin page's ``connect-src`` adds the auth service's origin (``HERALD_AUTH_URL``): its
  sign-in form logs in there (and in development it lists the stand-in's demo users); and the
  OpenID provider's (``HERALD_OIDC_ISSUER``), whose token endpoint the page calls.

The inbox demo page needs neither allowance: the element adopts a constructed stylesheet, which
``style-src 'self'`` does not refuse, so the page shows that a host page with a strict policy
can use it.

``connect-src 'self'`` covers the same host's ``ws:``/``wss:`` in CSP Level 3 (Chromium,
Firefox, Safari 15.4+), which the GraphiQL browser test checks with a live subscription.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_COMMON = (
    "default-src 'self'",
    "script-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)

_INLINE_STYLES = "style-src 'self' 'unsafe-inline'"

GRAPHIQL_POLICY = "; ".join(
    (
        *_COMMON,
        _INLINE_STYLES,
        "font-src 'self' data:",
        "img-src 'self' data:",
        "worker-src 'self'",
        "connect-src 'self'",
    )
)


# A script file: the policy means little on it, but every asset carries the same headers.
SDK_POLICY = "; ".join((*_COMMON, "style-src 'self'", "connect-src 'self'"))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def admin_policy(*services: str | None) -> str:
    """The admin page's policy: its own origin, plus the services it signs in with: the auth
    service (its login form, and in development the stand-in's demo users) and the OpenID
    provider, whose discovery document, token and revocation endpoints the page calls. The
    provider's authorization and end-session endpoints are navigations of the whole page,
    which ``connect-src`` does not govern."""
    origins: list[str] = []
    for url in services:
        origin = _origin(url) if url else ""
        if origin and origin not in origins:
            origins.append(origin)
    connect = " ".join(("connect-src 'self'", *origins))
    return "; ".join((*_COMMON, _INLINE_STYLES, connect))


def demo_policy(auth_url: str) -> str:
    """The inbox demo page's: no inline style or script at all; it signs in through the auth
    service's development endpoints."""
    return "; ".join(
        (*_COMMON, "style-src 'self'", f"connect-src 'self' {_origin(auth_url)}".rstrip())
    )


def page_headers(policy: str) -> dict[str, str]:
    """The headers every served page and asset carries with ``policy``."""
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


class WithHeaders:
    """Wraps an ASGI app (a ``StaticFiles`` mount) to add fixed headers to its responses."""

    def __init__(self, app: Any, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
