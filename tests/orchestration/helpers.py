"""What the orchestration tests share: sending events and reading deliveries over GraphQL."""

from __future__ import annotations

import uuid
from email.message import Message
from typing import Any

from backend.config import Settings
from tests.conftest import GraphQL
from tests.factories import token_for
from tests.pipeline.servers import eventually

ENDPOINT_FIELDS = """__typename
  ... on WebhookEndpoint { id url secret description eventTypes statuses engagements active
    legacySignature createdBy }
  ... on Error { code message field }"""
CREATE = (
    "mutation($input: WebhookEndpointInput!) { createWebhookEndpoint(input: $input) { "
    + ENDPOINT_FIELDS
    + " } }"
)
DELETE = """mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename
  ... on WebhookEndpointDeleted { id } ... on Error { code message field } } }"""

SEND = """mutation($input: EventInput!) { sendEvent(input: $input) { __typename
  ... on EventAccepted { eventId }
  ... on Error { code message field } } }"""

EVENT = """query($id: ID!) { event(id: $id) { id deliveries { id userId channel status
  attempts { number provider error } timeline { status reason } } } }"""

SET_PREFERENCES = """mutation($input: PreferencesInput!) { setPreferences(input: $input) {
  __typename ... on Preferences { disabledChannels disabledEventTypes } } }"""

PREFERENCES = """query($userId: ID) { preferences(userId: $userId) {
  disabledChannels disabledEventTypes } }"""

FINAL = ("SENT", "DELIVERED", "SKIPPED", "FAILED", "DEAD")


def part_of(mail: Message, content_type: str) -> str:
    """The decoded text of ``mail``'s first part of ``content_type``."""
    for part in mail.walk():
        if part.get_content_type() == content_type:
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError(f"no {content_type} part")


def admin(settings: Settings) -> str:
    return token_for(settings, "admin", sub="admin-1")


async def send(api: GraphQL, **event: Any) -> str:
    body = await api(SEND, {"input": event}, token=token_for(api.settings, "service", sub="svc"))
    result = body["data"]["sendEvent"]
    assert result["__typename"] == "EventAccepted", result
    return str(result["eventId"])


async def final_deliveries(api: GraphQL, event_id: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        body = await api(EVENT, {"id": event_id}, token=admin(api.settings))
        event = body["data"]["event"]
        items = event["deliveries"] if event else []
        done = [d for d in items if d["status"] in FINAL]
        return items if len(items) == count and len(done) == count else None

    return await eventually(check, timeout=30)


async def deliver(api: GraphQL, **event: Any) -> list[dict[str, Any]]:
    """Send ``event`` and wait for each of its users' deliveries to be final."""
    return await final_deliveries(api, await send(api, **event), len(event["userIds"]))


async def preferences(api: GraphQL, user_id: str) -> dict[str, Any]:
    body = await api(PREFERENCES, {"userId": user_id}, token=admin(api.settings))
    return dict(body["data"]["preferences"])


async def create_template(
    api: GraphQL, prefix: str, name: str, content: list[dict[str, Any]]
) -> str:
    """Create a template named ``name`` as a manager (it must succeed); its new slug, made
    from ``prefix``."""
    slug = f"{prefix}-{uuid.uuid4().hex[:8]}"
    body = await api(
        "mutation($i: CreateTemplateInput!) { createTemplate(input: $i) { __typename } }",
        {"i": {"slug": slug, "name": name, "content": content}},
        token=token_for(api.settings, "manager"),
    )
    assert body["data"]["createTemplate"]["__typename"] == "Template", body
    return slug


async def sms_template(api: GraphQL) -> str:
    return await create_template(
        api, "sms", "SMS", [{"channel": "SMS", "body": "Code {{ payload.code }}"}]
    )
