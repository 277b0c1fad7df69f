"""The admin page as ``herald api`` serves it at ``/admin/`` (``HERALD_SERVE_ADMIN``).

The files are ``admin_frontend/`` as they are; ``/admin/config.js`` is written from the
settings, so that one place configures the sign-in the page offers:

- single sign-on through the OpenID provider (``HERALD_OIDC_*``): issuer, client id and scopes
  (the roles mapping stays on the server: the page shows the roles ``viewer`` answers);
- the "Sign in with the auth service" form (``HERALD_ADMIN_AUTH_SERVICE_FORM``, the paths
  ``HERALD_AUTH_LOGIN_PATH``, ``HERALD_AUTH_REFRESH_PATH`` and ``HERALD_AUTH_LOGOUT_PATH`` at
  ``HERALD_AUTH_URL``);
- the paste-a-token box and the demo users of the auth-service stand-in: in development only.

``/admin/config.js`` is served in every environment, whether or not the API serves the rest of
the page: nginx, which serves ``admin_frontend/`` in docker compose, passes this one file on to
the API, so the settings configure the page there too. It holds nothing secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.staticfiles import StaticFiles

from backend.config import Settings
from backend.content_security import WithHeaders, admin_policy, page_headers

ADMIN_DIR = Path(__file__).resolve().parent.parent / "admin_frontend"


def page_config(settings: Settings) -> dict[str, Any]:
    """What ``config.js`` exports for these settings."""
    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id:
        oidc = {
            "issuer": settings.oidc_issuer,
            "clientId": settings.oidc_client_id,
            "scopes": settings.oidc_scopes,
            "label": settings.oidc_label,
        }
    auth_service = None
    if settings.admin_auth_service_form:
        auth_service = {
            "url": settings.auth_url,
            "loginPath": settings.auth_login_path,
            "refreshPath": settings.auth_refresh_path,
            "logoutPath": settings.auth_logout_path or None,
        }
    return {
        "graphqlPath": "/graphql",
        "authStandinUrl": settings.auth_url if settings.is_development else None,
        "authService": auth_service,
        "oidc": oidc,
        "tokenPaste": settings.is_development,
        "liveFeed": "subscription",
        "livePollSeconds": 3,
        "heartbeatSeconds": 15,
    }


def config_script(settings: Settings) -> str:
    body = json.dumps(page_config(settings), indent=2)
    return (
        "// Written by `herald api` from its settings (backend/admin_page.py).\n"
        f"export default {body};\n"
    )


def admin_headers(settings: Settings) -> dict[str, str]:
    uses_auth_service = settings.admin_auth_service_form or settings.is_development
    return page_headers(
        admin_policy(settings.auth_url if uses_auth_service else None, settings.oidc_issuer)
    )


def mount_admin(app: FastAPI, settings: Settings) -> None:
    """``/admin/config.js`` from the settings, and (``HERALD_SERVE_ADMIN``) the rest of
    ``admin_frontend/`` at ``/admin/``."""
    headers = admin_headers(settings)
    script = config_script(settings)

    async def admin_config() -> Response:
        return Response(
            script,
            media_type="text/javascript",
            headers={**headers, "Cache-Control": "no-cache"},
        )

    app.add_api_route("/admin/config.js", admin_config, methods=["GET"], include_in_schema=False)
    if settings.serve_admin_enabled and ADMIN_DIR.is_dir():
        admin = StaticFiles(directory=ADMIN_DIR, html=True)
        app.mount("/admin", WithHeaders(admin, headers), name="admin")
