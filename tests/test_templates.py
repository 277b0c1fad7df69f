"""Templates through the GraphQL API: CRUD, versions, variables, preview, sandbox, locales."""

from __future__ import annotations

from typing import Any

from backend.db.models import EventType
from tests.factories import CREATE_TEMPLATE, UPDATE_TEMPLATE, template_input, token_for

PREVIEW = """
mutation($slug: String, $content: [TemplateContentInput!], $channel: Channel!, $locale: String,
         $variables: JSON) {
  previewTemplate(slug: $slug, content: $content, channel: $channel, locale: $locale,
                  variables: $variables) {
    __typename
    ... on RenderedMessage { channel locale subject title body html }
    ... on Error { code message field }
    ... on TemplateSyntaxError { line }
    ... on TemplateRenderError { line }
  }
}
"""


async def create(gql: Any, token: str, **kwargs: Any) -> dict[str, Any]:
    result = await gql(CREATE_TEMPLATE, {"input": template_input(**kwargs)}, token=token)
    return result["data"]["createTemplate"]


async def test_create_returns_template_with_its_variables(gql, settings):
    manager = token_for(settings, "manager", sub="mgr-1")
    created = await create(gql, manager)
    assert created["__typename"] == "Template"
    assert created["slug"] == "greeting"
    assert created["version"] == 1
    assert created["variables"] == ["payload.site", "user.first_name"]
    fetched = await gql(
        'query { template(slug: "greeting") { slug name createdBy content { channel } } }',
        token=manager,
    )
    assert fetched["data"]["template"] == {
        "slug": "greeting",
        "name": "Welcome",
        "createdBy": "mgr-1",
        "content": [{"channel": "EMAIL"}, {"channel": "IN_APP"}],
    }


async def test_duplicate_slug_is_a_conflict(gql, settings):
    manager = token_for(settings, "manager")
    await create(gql, manager)
    again = await create(gql, manager)
    assert again["__typename"] == "ConflictError"
    assert again["code"] == "CONFLICT"
    assert again["field"] == "slug"


async def test_syntax_error_on_save_names_field_and_line(gql, settings):
    manager = token_for(settings, "manager")
    content = [{"channel": "SMS", "body": "line one\nHello {{ user.first_name "}]
    result = await create(gql, manager, slug="broken", content=content)
    assert result["__typename"] == "TemplateSyntaxError"
    assert result["code"] == "TEMPLATE_SYNTAX"
    assert result["field"] == "content[0].body"
    assert result["line"] == 2
    missing = await gql('query { template(slug: "broken") { slug } }', token=manager)
    assert missing["data"]["template"] is None


async def test_validation_errors_name_the_field(gql, settings):
    manager = token_for(settings, "manager")
    cases = [
        ({"slug": "Bad Slug"}, "slug"),
        ({"content": []}, "content"),
        ({"content": [{"channel": "PUSH", "body": "no title"}]}, "content[0].title"),
        ({"content": [{"channel": "EMAIL", "body": "no subject"}]}, "content[0].subject"),
        ({"content": [{"channel": "SMS", "locale": "english", "body": "x"}]}, "content[0].locale"),
        (
            {"content": [{"channel": "SMS", "body": "a"}, {"channel": "SMS", "body": "b"}]},
            "content[1]",
        ),
    ]
    for overrides, field in cases:
        result = await create(gql, manager, **overrides)
        assert result["__typename"] == "ValidationError", overrides
        assert result["field"] == field, overrides


async def test_update_keeps_previous_versions_and_restore_makes_a_new_one(gql, settings):
    manager = token_for(settings, "manager")
    await create(gql, manager)
    updated = await gql(
        UPDATE_TEMPLATE,
        {
            "slug": "greeting",
            "input": {
                "name": "Welcome v2",
                "content": [{"channel": "SMS", "body": "Hi {{ user.login }}"}],
            },
        },
        token=manager,
    )
    t = updated["data"]["updateTemplate"]
    assert t["version"] == 2
    assert t["name"] == "Welcome v2"
    assert t["variables"] == ["user.login"]
    versions = await gql(
        'query { template(slug: "greeting") { versions { version name content { channel } } } }',
        token=manager,
    )
    history = versions["data"]["template"]["versions"]
    assert [v["version"] for v in history] == [2, 1]
    assert history[1]["name"] == "Welcome"
    assert [c["channel"] for c in history[1]["content"]] == ["EMAIL", "IN_APP"]

    restored = await gql(
        'mutation { restoreTemplateVersion(slug: "greeting", version: 1) { __typename '
        "... on Template { version name content { channel } } } }",
        token=manager,
    )
    r = restored["data"]["restoreTemplateVersion"]
    assert r == {
        "__typename": "Template",
        "version": 3,
        "name": "Welcome",
        "content": [{"channel": "EMAIL"}, {"channel": "IN_APP"}],
    }


async def test_update_unknown_template_is_not_found(gql, settings):
    result = await gql(
        UPDATE_TEMPLATE,
        {"slug": "nope", "input": {"name": "x"}},
        token=token_for(settings, "admin"),
    )
    assert result["data"]["updateTemplate"]["__typename"] == "NotFoundError"


async def test_delete_refused_while_in_use_then_allowed(gql, settings, session):
    manager = token_for(settings, "manager")
    await create(gql, manager)
    session.add(EventType(name="greeting_sent", template_slug="greeting", channels=["email"]))
    await session.flush()
    delete = (
        'mutation { deleteTemplate(slug: "greeting") { __typename ... on Error { code message } } }'
    )
    refused = (await gql(delete, token=manager))["data"]["deleteTemplate"]
    assert refused["__typename"] == "ConflictError"
    assert "greeting_sent" in refused["message"]

    await session.delete(await session.get(EventType, "greeting_sent"))
    await session.flush()
    deleted = (await gql(delete, token=manager))["data"]["deleteTemplate"]
    assert deleted["__typename"] == "DeletedTemplate"
    gone = await gql('query { template(slug: "greeting") { slug } }', token=manager)
    assert gone["data"]["template"] is None


async def test_list_pages_with_cursor_and_search(gql, settings):
    manager = token_for(settings, "manager")
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"]:
        await create(gql, manager, slug=f"paged-{slug}", name=f"Name {slug}")
    query = """query($after: String, $search: String) {
        templates(first: 2, after: $after, search: $search) {
            edges { cursor node { slug } } pageInfo { hasNextPage endCursor } } }"""
    seen: list[str] = []
    after = None
    while True:
        page = (await gql(query, {"after": after, "search": "paged-"}, token=manager))["data"][
            "templates"
        ]
        seen += [e["node"]["slug"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"paged-{s}" for s in ["alpha", "bravo", "charlie", "delta", "echo"]]
    found = (await gql(query, {"search": "HARL"}, token=manager))["data"]["templates"]
    assert [e["node"]["slug"] for e in found["edges"]] == ["paged-charlie"]
    bad = await gql(query, {"after": "not-a-cursor"}, token=manager)
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"


async def test_preview_renders_with_sample_user_and_escapes_html(gql, settings):
    manager = token_for(settings, "manager")
    await create(gql, manager)
    result = await gql(
        PREVIEW,
        {"slug": "greeting", "channel": "EMAIL", "variables": {"payload": {"site": "<Herald>"}}},
        token=manager,
    )
    r = result["data"]["previewTemplate"]
    assert r["__typename"] == "RenderedMessage"
    assert r["subject"] == "Welcome, Ada!"
    assert r["body"] == "Hello Ada, thanks for joining <Herald>."
    assert r["html"] == "<p>Hello <b>Ada</b> from &lt;Herald&gt;</p>"


async def test_preview_names_a_missing_variable(gql, settings):
    manager = token_for(settings, "manager")
    await create(gql, manager)
    r = (await gql(PREVIEW, {"slug": "greeting", "channel": "EMAIL"}, token=manager))["data"][
        "previewTemplate"
    ]
    assert r["__typename"] == "TemplateRenderError"
    assert "payload.site" in r["message"]
    assert r["field"] == "content[0].body"


async def test_preview_refuses_sandbox_escapes(gql, settings):
    manager = token_for(settings, "manager")
    escapes = [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ payload.__init__.__globals__ }}",
        "{% for i in range(100000000) %}x{% endfor %}",
        "{{ 'x' * 100000000 }}",
        "{{ cycler.__init__.__globals__.os }}",
    ]
    for body in escapes:
        r = (
            await gql(
                PREVIEW,
                {
                    "content": [{"channel": "SMS", "body": body}],
                    "channel": "SMS",
                    "variables": {"payload": {}},
                },
                token=manager,
            )
        )["data"]["previewTemplate"]
        assert r["__typename"] == "TemplateRenderError", (body, r)
        assert r["code"] == "TEMPLATE_RENDER"


async def test_preview_locale_fallback(gql, settings):
    manager = token_for(settings, "manager")
    content = [
        {"channel": "SMS", "locale": "en", "body": "Hello"},
        {"channel": "SMS", "locale": "pt", "body": "Olá"},
        {"channel": "SMS", "locale": "pt-BR", "body": "Oi"},
    ]
    await create(gql, manager, slug="greet", content=content)
    expected = {
        "pt-BR": ("pt-BR", "Oi"),
        "pt-PT": ("pt", "Olá"),
        "de": ("en", "Hello"),
        None: ("en", "Hello"),
    }
    for locale, (used, body) in expected.items():
        r = (
            await gql(PREVIEW, {"slug": "greet", "channel": "SMS", "locale": locale}, token=manager)
        )["data"]["previewTemplate"]
        assert (r["locale"], r["body"]) == (used, body), locale
    none = (await gql(PREVIEW, {"slug": "greet", "channel": "PUSH"}, token=manager))["data"][
        "previewTemplate"
    ]
    assert none["__typename"] == "NotFoundError"


async def test_preview_unsaved_content_reports_syntax_line(gql, settings):
    manager = token_for(settings, "manager")
    r = (
        await gql(
            PREVIEW,
            {"content": [{"channel": "SMS", "body": "ok\nok\n{% if %}"}], "channel": "SMS"},
            token=manager,
        )
    )["data"]["previewTemplate"]
    assert r["__typename"] == "TemplateSyntaxError"
    assert r["line"] == 3


async def test_preview_rejects_unknown_variable_keys(gql, settings):
    manager = token_for(settings, "manager")
    r = (
        await gql(
            PREVIEW,
            {
                "content": [{"channel": "SMS", "body": "x"}],
                "channel": "SMS",
                "variables": {"site": "x"},
            },
            token=manager,
        )
    )["data"]["previewTemplate"]
    assert r["__typename"] == "ValidationError"
    assert r["field"] == "variables"


async def test_preview_refuses_variables_nested_deeper_than_a_payload_may_be(gql, settings):
    manager = token_for(settings, "manager")
    deep: dict = {}
    for _ in range(100):
        deep = {"d": deep}
    r = (
        await gql(
            PREVIEW,
            {
                "content": [{"channel": "SMS", "body": "{{ payload }}"}],
                "channel": "SMS",
                "variables": {"payload": deep},
            },
            token=manager,
        )
    )["data"]["previewTemplate"]
    assert r["__typename"] == "ValidationError"
    assert r["field"] == "variables"
    assert "levels deep" in r["message"]
