"""The recipients API over GraphQL (in-process app, real PostgreSQL): services identify
recipients, users register and remove their own addresses, admins and managers read, and
nobody reads another user's recipient without the role."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from backend.services import recipients as recipient_service
from tests.factories import token_for

RECIPIENT_FIELDS = (
    "userId email firstName lastName phone locale timezone source refreshedAt updatedAt "
    "addresses { id kind platform provider displayValue state disabledReason createdAt }"
)
IDENTIFY = (
    "mutation($i: IdentifyRecipientInput!) { identifyRecipient(input: $i) { __typename "
    f"... on Recipient {{ {RECIPIENT_FIELDS} }} ... on Error {{ code message field }} }} }}"
)
REGISTER = (
    "mutation($i: AddressInput!) { registerAddress(input: $i) { __typename "
    "... on RecipientAddress { id kind platform provider displayValue state } "
    "... on Error { code message field } } }"
)
RECIPIENT = f"query($u: ID!) {{ recipient(userId: $u) {{ {RECIPIENT_FIELDS} }} }}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def web_push(endpoint: str) -> dict[str, Any]:
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"endpoint": endpoint, "keys": {"p256dh": _b64(public), "auth": _b64(os.urandom(16))}}


def uid() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


async def test_identify_creates_then_updates_only_the_given_fields(gql, settings):
    service = token_for(settings, "service", sub="svc-crm")
    user = uid()
    created = (
        await gql(
            IDENTIFY,
            {
                "i": {
                    "userId": user,
                    "email": "ada@example.com",
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "locale": "en-GB",
                    "timezone": "Europe/London",
                    "addresses": [{"chat": {"provider": "telegram", "chatId": "4711"}}],
                }
            },
            token=service,
        )
    )["data"]["identifyRecipient"]
    assert created["__typename"] == "Recipient", created
    assert (created["email"], created["source"], created["timezone"]) == (
        "ada@example.com",
        "identify",
        "Europe/London",
    )
    assert [(a["kind"], a["provider"], a["displayValue"]) for a in created["addresses"]] == [
        ("CHAT", "telegram", "4711")
    ]

    updated = (
        await gql(IDENTIFY, {"i": {"userId": user, "phone": "+442071838750"}}, token=service)
    )["data"]["identifyRecipient"]

    assert (updated["phone"], updated["email"], updated["firstName"]) == (
        "+442071838750",
        "ada@example.com",
        "Ada",
    )
    assert len(updated["addresses"]) == 1


async def test_identify_refuses_invalid_fields_with_typed_errors(gql, settings):
    service = token_for(settings, "service", sub="svc-crm")
    cases = {
        "email": {"email": "not-an-address"},
        "phone": {"phone": "0171 1234"},
        "timezone": {"timezone": "Mars/Olympus"},
        "locale": {"locale": "english please"},
        "userId": {},
    }
    for field, values in cases.items():
        user = "  " if field == "userId" else uid()
        result = await gql(IDENTIFY, {"i": {"userId": user, **values}}, token=service)
        error = result["data"]["identifyRecipient"]
        assert (error["__typename"], error["code"], error["field"]) == (
            "ValidationError",
            "VALIDATION",
            field,
        ), (field, error)


async def test_only_services_and_admins_identify(gql, settings):
    for role in ("user", "manager"):
        result = await gql(
            IDENTIFY, {"i": {"userId": uid()}}, token=token_for(settings, role, sub="someone")
        )
        assert result["data"]["identifyRecipient"]["code"] == "FORBIDDEN"


async def test_addresses_are_registered_for_the_token_s_user_only(gql, settings):
    alice, bob = uid(), uid()
    alice_token = token_for(settings, "user", sub=alice)
    bob_token = token_for(settings, "user", sub=bob)
    token = "f" * 58 + "a1b2c3"
    saved = (
        await gql(
            REGISTER, {"i": {"mobilePush": {"platform": "IOS", "token": token}}}, token=alice_token
        )
    )["data"]["registerAddress"]
    assert (saved["kind"], saved["platform"], saved["state"]) == ("MOBILE_PUSH", "ios", "ACTIVE")
    assert saved["displayValue"] == "…a1b2c3"

    admin = token_for(settings, "admin", sub="adm")
    of_alice = (await gql(RECIPIENT, {"u": alice}, token=admin))["data"]["recipient"]
    assert [a["id"] for a in of_alice["addresses"]] == [saved["id"]]
    assert of_alice["source"] == "address" and of_alice["refreshedAt"] is None
    assert (await gql(RECIPIENT, {"u": bob}, token=admin))["data"]["recipient"] is None

    remove = "mutation($id: ID!) { removeAddress(id: $id) { __typename ... on Error { code } } }"
    by_bob = (await gql(remove, {"id": saved["id"]}, token=bob_token))["data"]["removeAddress"]
    assert by_bob == {"__typename": "NotFoundError", "code": "NOT_FOUND"}
    by_alice = (await gql(remove, {"id": saved["id"]}, token=alice_token))["data"]
    assert by_alice["removeAddress"]["__typename"] == "AddressRemoved"
    of_alice = (await gql(RECIPIENT, {"u": alice}, token=admin))["data"]["recipient"]
    assert of_alice["addresses"] == []


async def test_a_user_reads_their_own_recipient_but_not_another_s(gql, settings):
    alice, bob = uid(), uid()
    await gql(
        REGISTER,
        {"i": {"chat": {"provider": "slack", "chatId": "U123"}}},
        token=token_for(settings, "user", sub=alice),
    )
    own = await gql(RECIPIENT, {"u": alice}, token=token_for(settings, "user", sub=alice))
    other = await gql(RECIPIENT, {"u": alice}, token=token_for(settings, "user", sub=bob))
    listing = await gql(
        "{ recipients { edges { node { userId } } } }", token=token_for(settings, "user", sub=bob)
    )

    assert own["data"]["recipient"]["userId"] == alice
    assert other["data"] is None or other["data"]["recipient"] is None
    assert other["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert listing["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_registering_a_browser_keeps_no_secret_in_sight_and_moves_between_users(
    gql, settings
):
    alice, bob = uid(), uid()
    endpoint = f"https://push.example/send/{uuid.uuid4().hex}"
    subscription = web_push(endpoint)
    first = (
        await gql(
            REGISTER, {"i": {"webPush": subscription}}, token=token_for(settings, "user", sub=alice)
        )
    )["data"]["registerAddress"]
    assert first["kind"] == "WEB_PUSH"
    assert first["displayValue"] == f"https://push.example/…{endpoint[-6:]}"
    # The legacy mutation registers the same address, now for Bob: it leaves Alice.
    legacy = await gql(
        "mutation($i: PushSubscriptionInput!) { registerPushSubscription(input: $i) "
        "{ __typename } }",
        {"i": subscription},
        token=token_for(settings, "user", sub=bob),
    )
    assert legacy["data"]["registerPushSubscription"]["__typename"] == "PushSubscriptionSaved"

    admin = token_for(settings, "admin", sub="adm")
    of_alice = (await gql(RECIPIENT, {"u": alice}, token=admin))["data"]["recipient"]
    of_bob = (await gql(RECIPIENT, {"u": bob}, token=admin))["data"]["recipient"]
    assert of_alice["addresses"] == []
    assert [a["kind"] for a in of_bob["addresses"]] == ["WEB_PUSH"]

    bad = await gql(
        REGISTER,
        {"i": {"webPush": {**subscription, "endpoint": "ftp://push.example/x"}}},
        token=token_for(settings, "user", sub=alice),
    )
    assert bad["data"]["registerAddress"]["field"] == "webPush.endpoint"


async def test_admins_and_managers_search_recipients_by_id_email_or_name(gql, settings):
    service = token_for(settings, "service", sub="svc")
    tag = uuid.uuid4().hex[:8]
    for n, (first, last) in enumerate([("Grace", "Hopper"), ("Alan", "Turing"), ("Ada", "Byron")]):
        await gql(
            IDENTIFY,
            {
                "i": {
                    "userId": f"s-{tag}-{n}",
                    "email": f"{first.lower()}.{tag}@example.com",
                    "firstName": first,
                    "lastName": f"{last}{tag}",
                }
            },
            token=service,
        )
    query = (
        "query($s: String, $a: String) { recipients(search: $s, first: 2, after: $a) "
        "{ edges { node { userId } } pageInfo { hasNextPage endCursor } } }"
    )
    manager = token_for(settings, "manager", sub="mgr")

    def ids(result: dict[str, Any]) -> list[str]:
        return [e["node"]["userId"] for e in result["data"]["recipients"]["edges"]]

    by_id = await gql(query, {"s": f"s-{tag}"}, token=manager)
    assert ids(by_id) == [f"s-{tag}-0", f"s-{tag}-1"]
    assert by_id["data"]["recipients"]["pageInfo"]["hasNextPage"] is True
    rest = await gql(
        query,
        {"s": f"s-{tag}", "a": by_id["data"]["recipients"]["pageInfo"]["endCursor"]},
        token=manager,
    )
    assert ids(rest) == [f"s-{tag}-2"]
    assert ids(await gql(query, {"s": f"alan.{tag}@"}, token=manager)) == [f"s-{tag}-1"]
    assert ids(await gql(query, {"s": f"ada byron{tag}"}, token=manager)) == [f"s-{tag}-2"]


async def test_sync_recipients_starts_a_job_that_can_be_polled(gql, settings, sessionmaker):
    admin = token_for(settings, "admin", sub="adm")
    started = await gql(
        "mutation { syncRecipients { __typename ... on RecipientSync { id status pagesDone } "
        "... on Error { code } } }",
        token=admin,
    )
    job = started["data"]["syncRecipients"]
    assert (job["__typename"], job["status"], job["pagesDone"]) == ("RecipientSync", "PENDING", 0)
    async with sessionmaker() as session:
        await recipient_service.fail_sync(
            session, sync_id=uuid.UUID(job["id"]), error="stopped by the test"
        )
        await session.commit()

    poll = "query($id: ID!) { recipientSync(id: $id) { status error finishedAt } }"
    polled = (await gql(poll, {"id": job["id"]}, token=admin))["data"]["recipientSync"]
    assert polled["status"] == "FAILED" and polled["error"] == "stopped by the test"
    forbidden = await gql(
        "mutation { syncRecipients { __typename ... on Error { code } } }",
        token=token_for(settings, "user", sub="u"),
    )
    assert forbidden["data"]["syncRecipients"]["code"] == "FORBIDDEN"


async def test_admins_and_managers_read_a_user_s_preferences_only_admins_change_them(gql, settings):
    user = uid()
    admin = token_for(settings, "admin", sub="admin-1")
    manager = token_for(settings, "manager", sub="manager-1")
    changed = await gql(
        "mutation($u: ID!) { setPreferences(input: {userId: $u, disabledChannels: [SMS], "
        'disabledTopics: [], quietHours: {start: "22:00", end: "07:00"}}) { __typename } }',
        {"u": user},
        token=admin,
    )
    assert changed["data"]["setPreferences"]["__typename"] == "Preferences"
    query = (
        "query($u: ID!) { preferences(userId: $u) { userId disabledChannels "
        "quietHours { start end } } }"
    )
    for bearer in (admin, manager):
        read = await gql(query, {"u": user}, token=bearer)
        assert read["data"]["preferences"] == {
            "userId": user,
            "disabledChannels": ["SMS"],
            "quietHours": {"start": "22:00", "end": "07:00"},
        }
    by_manager = await gql(
        "mutation($u: ID!) { setPreferences(input: {userId: $u}) "
        "{ __typename ... on Error { code field } } }",
        {"u": user},
        token=manager,
    )
    assert by_manager["data"]["setPreferences"] == {
        "__typename": "ForbiddenError",
        "code": "FORBIDDEN",
        "field": "userId",
    }


async def test_identify_drops_the_cached_profile_so_the_next_look_up_sees_the_change(
    gql, settings, app_services
):
    from backend.services.users import CACHE_KEY_PREFIX

    user = uid()
    redis = app_services.clients.redis
    await redis.set(CACHE_KEY_PREFIX + user, b'{"id": "stale"}', ex=300)
    service = token_for(settings, "service", sub="svc-crm")
    result = await gql(IDENTIFY, {"i": {"userId": user, "email": "new@example.com"}}, token=service)
    assert result["data"]["identifyRecipient"]["email"] == "new@example.com"
    assert await redis.exists(CACHE_KEY_PREFIX + user) == 0
