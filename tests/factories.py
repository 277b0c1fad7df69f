"""Typed factories for test data and tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from backend.auth import mint_token
from backend.config import Settings


def token_for(settings: Settings, *roles: str, sub: str = "user-1", ttl: int = 600) -> str:
    return mint_token(settings, sub=sub, roles=roles, ttl=timedelta(seconds=ttl))


def auth_header(settings: Settings, *roles: str, sub: str = "user-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, *roles, sub=sub)}"}


def template_input(
    slug: str = "greeting",
    *,
    name: str = "Welcome",
    content: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": name,
        "description": description,
        "content": content
        if content is not None
        else [
            {
                "channel": "EMAIL",
                "locale": "en",
                "subject": "Welcome, {{ user.first_name }}!",
                "body": "Hello {{ user.first_name }}, thanks for joining {{ payload.site }}.",
                "html": "<p>Hello <b>{{ user.first_name }}</b> from {{ payload.site }}</p>",
            },
            {
                "channel": "IN_APP",
                "locale": "en",
                "title": "Welcome!",
                "body": "Glad you are here, {{ user.first_name }}.",
            },
        ],
    }


TEMPLATE_FIELDS = """
    ... on Template { id slug name description version variables
        content { channel locale subject title body html } }
    ... on Error { __typename code message field }
    ... on TemplateSyntaxError { line }
"""

CREATE_TEMPLATE = (
    "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { __typename "
    + TEMPLATE_FIELDS
    + " } }"
)
UPDATE_TEMPLATE = (
    "mutation($slug: String!, $input: UpdateTemplateInput!) { updateTemplate(slug: $slug, "
    "input: $input) { __typename " + TEMPLATE_FIELDS + " } }"
)
