"""Event types: the built-in ones, registering custom ones, and what ingestion checks."""

from __future__ import annotations

from tests.factories import token_for

REGISTER = """mutation($i: RegisterEventTypeInput!) { registerEventType(input: $i) { __typename
  ... on EventType { name channels critical builtin payloadSchema templateSlug }
  ... on Error { code message field } } }"""


async def test_builtin_types_are_listed(gql, settings):
    result = await gql(
        "{ eventTypes { name channels critical builtin templateSlug } }",
        token=token_for(settings, "service"),
    )
    types = {t["name"]: t for t in result["data"]["eventTypes"]}
    assert types["user_registered"]["channels"] == ["EMAIL", "IN_APP"]
    assert types["movie_added"]["channels"] == ["IN_APP", "PUSH", "EMAIL"]
    assert types["password_reset"] == {
        "name": "password_reset",
        "channels": ["EMAIL"],
        "critical": True,
        "builtin": True,
        "templateSlug": "password_reset",
    }
    forbidden = await gql("{ eventTypes { name } }", token=token_for(settings, "user"))
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_register_custom_type_then_change_it(gql, settings):
    manager = token_for(settings, "manager")
    schema = {
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "number"}},
    }
    created = await gql(
        REGISTER,
        {
            "i": {
                "name": "invoice_paid",
                "templateSlug": "welcome",
                "channels": ["EMAIL"],
                "payloadSchema": schema,
            }
        },
        token=manager,
    )
    assert created["data"]["registerEventType"] == {
        "__typename": "EventType",
        "name": "invoice_paid",
        "channels": ["EMAIL"],
        "critical": False,
        "builtin": False,
        "payloadSchema": schema,
        "templateSlug": "welcome",
    }
    changed = await gql(
        REGISTER,
        {
            "i": {
                "name": "invoice_paid",
                "templateSlug": "welcome",
                "channels": ["IN_APP", "EMAIL"],
                "critical": True,
            }
        },
        token=manager,
    )
    assert changed["data"]["registerEventType"]["channels"] == ["IN_APP", "EMAIL"]
    assert changed["data"]["registerEventType"]["critical"] is True


async def test_register_refusals(gql, settings):
    manager = token_for(settings, "manager")
    base = {"name": "x_y", "templateSlug": "welcome", "channels": ["EMAIL"]}
    cases = [
        ({"name": "user_registered"}, "CONFLICT", "name"),
        ({"name": "Bad Name"}, "VALIDATION", "name"),
        ({"templateSlug": "nope"}, "NOT_FOUND", "templateSlug"),
        ({"templateSlug": "password_reset", "channels": ["SMS"]}, "VALIDATION", "channels"),
        ({"payloadSchema": {"type": "no-such-type"}}, "VALIDATION", "payloadSchema"),
        ({"channels": []}, "VALIDATION", "channels"),
    ]
    for changes, code, field in cases:
        data = {**base, **changes}
        result = (await gql(REGISTER, {"i": data}, token=manager))["data"]["registerEventType"]
        assert (result["code"], result["field"]) == (code, field), data
    service = await gql(REGISTER, {"i": base}, token=token_for(settings, "service"))
    assert service["data"]["registerEventType"]["code"] == "FORBIDDEN"


async def test_ingestion_checks_before_anything_is_published(gql, settings):
    service = token_for(settings, "service")
    send = """mutation($i: EventInput!) { sendEvent(input: $i) { __typename
      ... on Error { code field } } }"""
    cases = [
        ({"type": "user_registered", "userIds": []}, "VALIDATION", "userIds"),
        ({"type": "user_registered", "userIds": ["u"], "payload": [1, 2]}, "VALIDATION", "payload"),
        (
            {"type": "user_registered", "userIds": ["u"], "locale": "klingon!"},
            "VALIDATION",
            "locale",
        ),
        (
            {"type": "user_registered", "userIds": ["u"], "templateSlug": "nope"},
            "NOT_FOUND",
            "templateSlug",
        ),
        (
            {"type": "user_registered", "userIds": ["u"], "channels": ["SMS"]},
            "VALIDATION",
            "channels",
        ),
        (
            {"type": "user_registered", "userIds": ["u"], "sendAt": "2099-01-01T00:00:00Z"},
            "VALIDATION",
            "sendAt",
        ),
        (
            {"type": "password_reset", "userIds": ["u"], "payload": {"reset_url": 5}},
            "VALIDATION",
            "payload.reset_url",
        ),
    ]
    for data, code, field in cases:
        result = (await gql(send, {"i": data}, token=service))["data"]["sendEvent"]
        assert (result.get("code"), result.get("field")) == (code, field), data
    manager = await gql(
        send,
        {"i": {"type": "user_registered", "userIds": ["u"]}},
        token=token_for(settings, "manager"),
    )
    assert manager["data"]["sendEvent"]["code"] == "FORBIDDEN"
