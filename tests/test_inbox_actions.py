"""In-app actions: a template's primary and secondary action (a label and a URL, or a label
and a name the app handles) are checked when saved, rendered per user, stored with the inbox
item, published live and read back over GraphQL. Real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.auth import Principal
from backend.channels import Channel
from backend.errors import TemplateRenderError, ValidationError
from backend.services import templates as template_service
from tests.factories import token_for
from tests.test_in_app_dispatch import (  # noqa: F401 (ctx is a fixture)
    ctx,
    dispatch_and_listen,
    envelope,
)

ACTIONS = [
    {"label": "Track order {{ payload.order }}", "url": "/orders/{{ payload.order }}"},
    {"label": "Remind me later", "name": "snooze"},
]
CREATE = """mutation($input: CreateTemplateInput!) { createTemplate(input: $input) {
  __typename ... on Error { code message field } } }"""
INBOX = "{ inbox(first: 5) { edges { node { id title actions { label url name } } } } }"


def content(**overrides: Any) -> dict[str, Any]:
    return {"channel": "IN_APP", "title": "Shipped", "body": "On its way", **overrides}


@pytest.mark.parametrize(
    ("actions", "field", "words"),
    [
        ([{"label": "A", "url": "/a"}] * 3, "content[0].actions", "1 to 2 actions"),
        ([{"label": " ", "url": "/a"}], "content[0].actions[0].label", "label"),
        ([{"label": "A"}], "content[0].actions[0]", "a url or a name"),
        ([{"label": "A", "url": "/a", "name": "b"}], "content[0].actions[0]", "not both"),
        ([{"label": "A", "url": "javascript:alert(1)"}], "content[0].actions[0].url", "https://"),
        ([{"label": "A", "url": "//evil.example/x"}], "content[0].actions[0].url", "https://"),
        ([{"label": "A", "name": "Bad Name"}], "content[0].actions[0].name", "lowercase"),
        ([{"label": "{{ oops", "url": "/a"}], "content[0].actions[0].label", None),
    ],
)
async def test_bad_actions_are_refused_at_their_field(gql, settings, actions, field, words):
    manager = token_for(settings, "manager")
    slug = f"actions-{uuid.uuid4().hex[:8]}"
    result = await gql(
        CREATE,
        {"input": {"slug": slug, "name": "A", "content": [content(actions=actions)]}},
        token=manager,
    )
    refused = result["data"]["createTemplate"]
    assert refused["__typename"] in {"ValidationError", "TemplateSyntaxError"}, refused
    assert refused["field"] == field
    if words:
        assert words in refused["message"]


async def test_only_in_app_content_has_actions(gql, settings):
    result = await gql(
        CREATE,
        {
            "input": {
                "slug": f"actions-{uuid.uuid4().hex[:8]}",
                "name": "A",
                "content": [
                    {"channel": "SMS", "body": "x", "actions": [{"label": "A", "url": "/a"}]}
                ],
            }
        },
        token=token_for(settings, "manager"),
    )
    assert result["data"]["createTemplate"]["field"] == "content[0].actions"


def test_a_url_that_renders_to_a_script_is_a_render_error():
    item = template_service.ContentData(
        channel=Channel.IN_APP,
        title="t",
        body="b",
        actions=[{"label": "Go", "url": "{{ payload.link }}"}],
    )
    template_service.validate_content([item])
    rendered = template_service.render_content(item, {"payload": {"link": "https://x.example/1"}})
    assert rendered.actions == [{"label": "Go", "url": "https://x.example/1"}]
    with pytest.raises(TemplateRenderError) as refused:
        template_service.render_content(item, {"payload": {"link": "javascript:alert(1)"}})
    assert refused.value.field == "actions[0].url"
    with pytest.raises(ValidationError):
        template_service.validate_content(
            [template_service.ContentData(channel=Channel.IN_APP, title="t", body="b", actions=[])]
        )


async def test_actions_are_rendered_stored_published_and_read_back(
    ctx,  # noqa: F811
    engine: AsyncEngine,
    redis,
    gql,
    settings,
) -> None:
    slug = f"shipped-{uuid.uuid4().hex[:8]}"
    async with AsyncSession(engine) as session:
        await template_service.create_template(
            session,
            actor=Principal("test-manager", frozenset({"manager"})),
            data=template_service.TemplateData(
                slug=slug,
                name="Shipped",
                content=[
                    template_service.ContentData(
                        channel=Channel.IN_APP, title="Shipped", body="On its way", actions=ACTIONS
                    )
                ],
            ),
        )
        await session.commit()
    user = f"u-{uuid.uuid4()}"
    event = envelope(user)
    event = type(event).from_wire(
        {**event.to_wire(), "template_slug": slug, "payload": {"order": "42"}}
    )
    live = await dispatch_and_listen(ctx, redis, event, user)

    expected = [
        {"label": "Track order 42", "url": "/orders/42"},
        {"label": "Remind me later", "name": "snooze"},
    ]
    assert live is not None and orjson.loads(live["data"])["actions"] == expected
    inbox = await gql(INBOX, token=token_for(settings, "user", sub=user))
    node = inbox["data"]["inbox"]["edges"][0]["node"]
    assert node["actions"] == [
        {"label": "Track order 42", "url": "/orders/42", "name": None},
        {"label": "Remind me later", "url": None, "name": "snooze"},
    ]
