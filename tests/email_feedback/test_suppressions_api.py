"""emailSuppressions and removeEmailSuppression over GraphQL: filters, pages, roles, typed
errors; and the migration creating the table matches the model."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.config import Settings
from backend.services import suppressions
from backend.services.suppressions import SuppressionKind
from tests.conftest import GraphQL, schema_differences
from tests.email_feedback.conftest import unique_address
from tests.factories import token_for

LIST = """
query($filter: EmailSuppressionFilter, $first: Int!, $after: String) {
  emailSuppressions(filter: $filter, first: $first, after: $after) {
    edges { cursor node { address kind provider reason deliveryId suppressedAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""
REMOVE = """
mutation($address: String!) {
  removeEmailSuppression(address: $address) {
    __typename
    ... on EmailSuppressionRemoved { address }
    ... on Error { code message }
  }
}"""


async def suppress(session: AsyncSession, address: str, kind: SuppressionKind) -> None:
    await suppressions.suppress(
        session,
        address=address,
        kind=kind,
        provider="sendgrid",
        reason=f"{kind.value} for {address}",
        delivery_id=None,
    )
    await session.flush()


async def test_listing_filters_and_pages_newest_first(
    gql: GraphQL, settings: Settings, session: AsyncSession
) -> None:
    marker = unique_address("list").split("@")[0]
    addresses = [f"{marker}.{n}@Example.org" for n in range(3)]
    for n, address in enumerate(addresses):
        kind = SuppressionKind.COMPLAINT if n == 1 else SuppressionKind.HARD_BOUNCE
        await suppress(session, address, kind)
    manager = token_for(settings, "manager")

    async def page(**variables: Any) -> dict[str, Any]:
        body = await gql(LIST, variables, token=manager)
        assert "errors" not in body, body
        result: dict[str, Any] = body["data"]["emailSuppressions"]
        return result

    first = await page(filter={"addressContains": marker.upper()}, first=2)
    rest = await page(
        filter={"addressContains": marker}, first=2, after=first["pageInfo"]["endCursor"]
    )
    complaints = await page(filter={"addressContains": marker, "kind": "COMPLAINT"}, first=10)

    listed = [e["node"]["address"] for e in first["edges"] + rest["edges"]]
    # Stored lower-cased; rows added in one transaction share created_at, then address desc.
    assert sorted(listed) == sorted(a.lower() for a in addresses)
    assert first["pageInfo"]["hasNextPage"] is True
    assert rest["pageInfo"]["hasNextPage"] is False
    assert [e["node"]["address"] for e in complaints["edges"]] == [addresses[1].lower()]
    assert complaints["edges"][0]["node"]["kind"] == "COMPLAINT"
    assert complaints["edges"][0]["node"]["provider"] == "sendgrid"


async def test_remove_takes_the_address_off_and_reports_typed_errors(
    gql: GraphQL, settings: Settings, session: AsyncSession
) -> None:
    address = unique_address("remove")
    await suppress(session, address, SuppressionKind.HARD_BOUNCE)
    admin = token_for(settings, "admin")

    removed = await gql(REMOVE, {"address": f"  {address.upper()} "}, token=admin)
    again = await gql(REMOVE, {"address": address}, token=admin)
    invalid = await gql(REMOVE, {"address": "not-an-address"}, token=admin)

    assert removed["data"]["removeEmailSuppression"] == {
        "__typename": "EmailSuppressionRemoved",
        "address": address,
    }
    assert again["data"]["removeEmailSuppression"]["__typename"] == "NotFoundError"
    assert again["data"]["removeEmailSuppression"]["code"] == "NOT_FOUND"
    assert invalid["data"]["removeEmailSuppression"]["code"] == "VALIDATION"
    assert await suppressions.suppressed(session, addresses=[address]) == {}


async def test_only_admins_and_managers_see_or_remove_suppressions(
    gql: GraphQL, settings: Settings, session: AsyncSession
) -> None:
    address = unique_address("roles")
    await suppress(session, address, SuppressionKind.HARD_BOUNCE)
    user = token_for(settings)
    service = token_for(settings, "service")

    listed = await gql(LIST, {"first": 5}, token=user)
    removed = await gql(REMOVE, {"address": address}, token=service)
    anonymous = await gql(REMOVE, {"address": address})

    assert listed["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert removed["data"]["removeEmailSuppression"]["code"] == "FORBIDDEN"
    assert anonymous["data"]["removeEmailSuppression"]["code"] == "UNAUTHENTICATED"
    assert address in await suppressions.suppressed(session, addresses=[address])


async def test_the_migration_creates_the_suppression_table_of_the_model(
    engine: AsyncEngine,
) -> None:
    assert await schema_differences(engine, {"email_suppressions"}) == []
