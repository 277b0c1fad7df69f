"""The broker contract: nothing is accepted without a confirm; what the API publishes runs."""

from __future__ import annotations

import uuid

from backend.broker import Broker
from backend.queues import DISPATCH, TASK_DISPATCH
from tests.conftest import app_client, free_port, make_settings
from tests.factories import token_for
from tests.pipeline.servers import eventually


async def test_broker_down_is_a_typed_unavailable_error(engine):
    settings = make_settings(rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    async with app_client(settings) as client:
        r = await client.post(
            "/graphql",
            json={
                "query": 'mutation { sendEvent(input: {type: "user_registered", '
                'userIds: ["u-alice"]}) { __typename ... on Error { code message } } }'
            },
            headers={"Authorization": f"Bearer {token_for(settings, 'service')}"},
        )
    result = r.json()["data"]["sendEvent"]
    assert result["__typename"] == "UnavailableError"
    assert result["code"] == "UNAVAILABLE"


async def test_a_celery_worker_runs_what_the_broker_publishes(e2e, settings):
    """Contract: a protocol-v2 message published with aio-pika is executed by a real worker."""
    broker = Broker(settings.rabbitmq_url)
    await broker.start()
    event_id = str(uuid.uuid4())
    envelope = {
        "id": event_id,
        "type": "user_registered",
        "user_ids": ["u-alice"],
        "payload": {},
        "template_slug": "welcome",
        "channels": ["in_app"],
        "locale": None,
        "critical": False,
        "created_at": "2026-01-01T00:00:00+00:00",
        "send_at": None,
        "actor": "test",
        "campaign_id": None,
    }
    try:
        await broker.publish_task(
            DISPATCH, TASK_DISPATCH, kwargs={"event": envelope}, task_id=event_id
        )
    finally:
        await broker.close()
    admin = token_for(settings, "admin")

    async def delivered() -> bool:
        body = await e2e(
            "query($id: ID!) { event(id: $id) { deliveries { status } } }",
            {"id": event_id},
            token=admin,
        )
        return [d["status"] for d in body["data"]["event"]["deliveries"]] == ["SENT"]

    await eventually(delivered)
