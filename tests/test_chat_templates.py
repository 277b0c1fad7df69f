"""Chat content in templates through the GraphQL API: Slack blocks stored and rendered with
Slack's escaping, Telegram's HTML body escaped, and the errors of bad content."""

from __future__ import annotations

import uuid
from typing import Any

from tests.factories import CREATE_TEMPLATE, template_input, token_for

PREVIEW = """
mutation($slug: String, $content: [TemplateContentInput!], $channel: Channel!,
         $variables: JSON) {
  previewTemplate(slug: $slug, content: $content, channel: $channel, variables: $variables) {
    __typename
    ... on RenderedMessage { channel title body blocks }
    ... on Error { code message field }
    ... on TemplateRenderError { line }
  }
}
"""

SLACK = {
    "channel": "SLACK",
    "body": "Welcome, {{ user.first_name }}: {{ payload.note }}",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "Hi {{ user.first_name }}"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "<{{ payload.url }}|Open> {{ payload.note }}"},
            "accessory": {"type": "image", "image_url": "https://x/a.png", "alt_text": "logo"},
        },
        {"type": "divider"},
    ],
}
TELEGRAM = {"channel": "TELEGRAM", "body": "<b>Hi {{ user.first_name }}</b> {{ payload.note }}"}


def slug() -> str:
    return f"chat-{uuid.uuid4().hex[:10]}"


async def create(gql: Any, token: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    result = await gql(
        CREATE_TEMPLATE, {"input": template_input(slug(), content=content)}, token=token
    )
    return result["data"]["createTemplate"]


async def preview(gql: Any, token: str, **variables: Any) -> dict[str, Any]:
    result = await gql(PREVIEW, variables, token=token)
    assert "errors" not in result, result
    return result["data"]["previewTemplate"]


async def test_slack_blocks_are_stored_and_their_variables_listed(gql, settings):
    manager = token_for(settings, "manager")
    created = await create(gql, manager, [SLACK, TELEGRAM])
    assert created["__typename"] == "Template", created
    assert created["variables"] == ["payload.note", "payload.url", "user.first_name"]
    fetched = await gql(
        "query($s: String!) { template(slug: $s) { content { channel body blocks } } }",
        {"s": created["slug"]},
        token=manager,
    )
    content = fetched["data"]["template"]["content"]
    assert content[0] == {"channel": "SLACK", "body": SLACK["body"], "blocks": SLACK["blocks"]}
    assert content[1] == {"channel": "TELEGRAM", "body": TELEGRAM["body"], "blocks": None}


async def test_slack_preview_renders_every_string_and_escapes_variables_as_slack_wants(
    gql, settings
):
    manager = token_for(settings, "manager")
    r = await preview(
        gql,
        manager,
        content=[SLACK],
        channel="SLACK",
        variables={
            "user": {"first_name": 'Ada "A&B"'},
            "payload": {"note": "<!channel> ping", "url": "https://herald.example/x"},
        },
    )
    assert r["__typename"] == "RenderedMessage"
    # Only &, < and > are escaped (Slack decodes nothing else); the template's own link stays.
    assert r["body"] == 'Welcome, Ada "A&amp;B": &lt;!channel&gt; ping'
    assert r["blocks"] == [
        {"type": "header", "text": {"type": "plain_text", "text": 'Hi Ada "A&amp;B"'}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "<https://herald.example/x|Open> &lt;!channel&gt; ping",
            },
            "accessory": {"type": "image", "image_url": "https://x/a.png", "alt_text": "logo"},
        },
        {"type": "divider"},
    ]


async def test_telegram_preview_escapes_variables_for_html_parse_mode(gql, settings):
    manager = token_for(settings, "manager")
    r = await preview(
        gql,
        manager,
        content=[TELEGRAM],
        channel="TELEGRAM",
        variables={"user": {"first_name": "<i>Ada</i>"}, "payload": {"note": "a & b"}},
    )
    assert r["body"] == "<b>Hi &lt;i&gt;Ada&lt;/i&gt;</b> a &amp; b"
    assert r["blocks"] is None


async def test_a_render_error_in_a_block_names_the_block(gql, settings):
    manager = token_for(settings, "manager")
    content = [{"channel": "SLACK", "body": "x", "blocks": SLACK["blocks"]}]
    r = await preview(gql, manager, content=content, channel="SLACK", variables={})
    assert r["__typename"] == "TemplateRenderError"
    assert r["field"] == "content[0].blocks[1].text.text"


async def test_bad_chat_content_is_a_validation_error_naming_the_field(gql, settings):
    manager = token_for(settings, "manager")
    cases = [
        ([{"channel": "SLACK", "blocks": [{"type": "divider"}]}], "content[0].body"),
        ([{"channel": "TELEGRAM", "body": " "}], "content[0].body"),
        ([{"channel": "DISCORD", "title": "only a title"}], "content[0].body"),
        ([{"channel": "TEAMS", "body": "x", "blocks": [{"type": "divider"}]}], "content[0].blocks"),
        ([{"channel": "SLACK", "body": "x", "blocks": {"type": "divider"}}], "content[0].blocks"),
        ([{"channel": "SLACK", "body": "x", "blocks": []}], "content[0].blocks"),
        (
            [{"channel": "SLACK", "body": "x", "blocks": [{"text": "no type"}]}],
            "content[0].blocks[0]",
        ),
        (
            [{"channel": "SLACK", "body": "x", "blocks": [{"type": "divider"}] * 51}],
            "content[0].blocks",
        ),
    ]
    for content, field in cases:
        result = await create(gql, manager, content)
        assert result["__typename"] == "ValidationError", (content, result)
        assert result["code"] == "VALIDATION"
        assert result["field"] == field, (content, result)


async def test_a_syntax_error_in_a_block_names_its_path(gql, settings):
    manager = token_for(settings, "manager")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi {{ user.first_name "}}]
    result = await create(gql, manager, [{"channel": "SLACK", "body": "x", "blocks": blocks}])
    assert result["__typename"] == "TemplateSyntaxError"
    assert result["field"] == "content[0].blocks[0].text.text"


PUSH_MOBILE = {
    "channel": "PUSH_MOBILE",
    "title": "Order {{ payload.order }}",
    "body": "On its way, {{ user.first_name }}",
    "data": {"screen": "orders/{{ payload.order }}", "kind": "shipping"},
    "badge": 2,
    "sound": "chime.caf",
}


async def test_mobile_push_content_keeps_data_badge_and_sound_and_renders_the_data(gql, settings):
    manager = token_for(settings, "manager")
    created = await create(gql, manager, [PUSH_MOBILE])
    assert created["__typename"] == "Template", created
    assert created["variables"] == ["payload.order", "user.first_name"]
    fetched = await gql(
        "query($s: String!) { template(slug: $s) { content { data badge sound } } }",
        {"s": created["slug"]},
        token=manager,
    )
    assert fetched["data"]["template"]["content"] == [
        {"data": PUSH_MOBILE["data"], "badge": 2, "sound": "chime.caf"}
    ]
    result = await gql(
        """mutation($slug: String, $variables: JSON) {
          previewTemplate(slug: $slug, channel: PUSH_MOBILE, variables: $variables) {
            __typename ... on RenderedMessage { title body data badge sound } } }""",
        {"slug": created["slug"], "variables": {"payload": {"order": "A-17"}}},
        token=manager,
    )
    assert result["data"]["previewTemplate"] == {
        "__typename": "RenderedMessage",
        "title": "Order A-17",
        "body": "On its way, Ada",
        "data": {"screen": "orders/A-17", "kind": "shipping"},
        "badge": 2,
        "sound": "chime.caf",
    }


async def test_bad_mobile_push_content_is_a_validation_error_naming_the_field(gql, settings):
    manager = token_for(settings, "manager")
    base = {"channel": "PUSH_MOBILE", "title": "t", "body": "b"}
    cases = [
        ({**base, "title": None}, "content[0].title"),
        ({**base, "data": {"n": 1}}, "content[0].data.n"),
        ({**base, "data": ["x"]}, "content[0].data"),
        ({**base, "data": {"delivery_id": "x"}}, "content[0].data.delivery_id"),
        ({**base, "data": {"google.c.a": "x"}}, "content[0].data.google.c.a"),
        ({**base, "badge": -1}, "content[0].badge"),
        ({**base, "sound": " "}, "content[0].sound"),
        ({"channel": "PUSH", "title": "t", "body": "b", "badge": 1}, "content[0].badge"),
        ({"channel": "SMS", "body": "b", "data": {"a": "b"}}, "content[0].data"),
    ]
    for item, field in cases:
        result = await create(gql, manager, [item])
        assert result["__typename"] == "ValidationError", (item, result)
        assert result["field"] == field, (item, result)
