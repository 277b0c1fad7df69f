"""A recipient's WEBHOOK address over GraphQL: registered, shown without its secret path, and
refused with a typed error when it is not an http(s) URL."""

from __future__ import annotations

import uuid

from tests.factories import token_for

REGISTER = (
    "mutation($i: AddressInput!) { registerAddress(input: $i) { __typename "
    "... on RecipientAddress { kind displayValue state } "
    "... on Error { code message field } } }"
)


async def test_a_webhook_address_is_registered_and_shown_without_its_path(gql, settings):
    user = f"r-{uuid.uuid4().hex[:10]}"
    url = "https://hooks.example.org/herald/s3cr3t-path-ab12cd"
    result = await gql(
        REGISTER, {"i": {"webhook": {"url": url}}}, token=token_for(settings, "user", sub=user)
    )
    assert result["data"]["registerAddress"] == {
        "__typename": "RecipientAddress",
        "kind": "WEBHOOK",
        "displayValue": "https://hooks.example.org/…ab12cd",
        "state": "ACTIVE",
    }


async def test_a_webhook_address_that_is_not_an_http_url_is_refused(gql, settings):
    user = f"r-{uuid.uuid4().hex[:10]}"
    for url in ("ftp://hooks.example.org/x", "hooks.example.org/x", "https://", "x" * 2001):
        result = await gql(
            REGISTER, {"i": {"webhook": {"url": url}}}, token=token_for(settings, "user", sub=user)
        )
        error = result["data"]["registerAddress"]
        assert error["__typename"] == "ValidationError", (url, error)
        assert error["field"] == "webhook.url"
