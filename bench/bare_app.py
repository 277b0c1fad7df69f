"""The baseline: a bare FastAPI endpoint doing the same confirmed publish as sendEvent.

No GraphQL, no auth, no validation: what is left is FastAPI, JSON and one aio-pika publish
with a publisher confirm. bench/ingest.py measures Herald's /graphql beside it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
from fastapi import FastAPI, Request, Response

from backend.broker import Broker
from backend.config import get_settings
from backend.queues import DISPATCH, TASK_DISPATCH

broker = Broker(get_settings().rabbitmq_url)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await broker.start()
    yield
    await broker.close()


app = FastAPI(lifespan=lifespan)


@app.post("/events")
async def events(request: Request) -> Response:
    body = orjson.loads(await request.body())
    event_id = str(uuid.uuid4())
    envelope = {
        "id": event_id,
        "type": body["type"],
        "user_ids": body["userIds"],
        "payload": body.get("payload") or {},
        "template_slug": "welcome",
        "channels": ["in_app"],
        "locale": None,
        "critical": False,
        "created_at": datetime.now(UTC).isoformat(),
        "send_at": None,
        "actor": "bench",
        "campaign_id": None,
    }
    await broker.publish_task(DISPATCH, TASK_DISPATCH, kwargs={"event": envelope}, task_id=event_id)
    return Response(orjson.dumps({"eventId": event_id}), media_type="application/json")
