"""RabbitMQ publishing over one long-lived aio-pika connection, with publisher confirms.

Herald's API (and its workers, for fan-out) publish Celery task messages directly, in Celery's
documented message protocol v2, so nothing is "accepted" before RabbitMQ confirms it and no
synchronous Celery client sits on the request path. tests/pipeline/test_broker.py proves a
real Celery worker runs what this module publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiormq.exceptions
import orjson
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from backend.config import Settings
from backend.errors import UnavailableError
from backend.queues import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    WORK_QUEUE_ARGUMENTS,
    WORK_QUEUES,
)

log = logging.getLogger(__name__)
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
# A channel closed under a publish (the broker restarting) raises aiormq's
# ChannelInvalidStateError, a RuntimeError rather than an AMQPError.
_BROKER_ERRORS = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
)


def celery_task_message(
    task: str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    task_id: str | None = None,
    countdown: float | None = None,
) -> aio_pika.Message:
    """A persistent message in Celery's protocol v2 (JSON body: ``[args, kwargs, embed]``)."""
    task_id = task_id or str(uuid.uuid4())
    eta = None
    if countdown:
        eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat()
    body = orjson.dumps(
        [
            list(args),
            kwargs or {},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        ]
    )
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": eta,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "",
        "kwargsrepr": "",
        "origin": _ORIGIN,
        "ignore_result": True,
    }
    return aio_pika.Message(
        body,
        headers=headers,
        content_type="application/json",
        content_encoding="utf-8",
        correlation_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=task_id,
    )


class Broker:
    """Owns one robust connection and a confirming channel.

    Starting never fails: while RabbitMQ is down the API still serves reads, reports not-ready,
    answers publishes with ``UNAVAILABLE``, and keeps reconnecting in the background.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        max_inflight: int = 1000,
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self._inflight = asyncio.Semaphore(max_inflight)
        self._connector: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Broker:
        """The broker a Herald process publishes through, as its settings describe it."""
        return cls(
            settings.rabbitmq_url,
            publish_timeout=settings.publish_timeout_seconds,
            max_inflight=settings.max_inflight_publishes,
        )

    async def start(self) -> None:
        try:
            await self._connect()
        except _BROKER_ERRORS as exc:
            log.warning("RabbitMQ is not reachable yet (%s); retrying in the background", exc)
            self._connector = asyncio.create_task(self._keep_connecting())

    async def _connect(self) -> None:
        connection = await aio_pika.connect_robust(self.url, timeout=self.connect_timeout)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await declare_topology(channel)
        except BaseException:
            await connection.close()
            raise
        self.connection, self.channel = connection, channel

    async def _keep_connecting(self) -> None:
        delay = 0.5
        while self.connection is None:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except _BROKER_ERRORS:
                delay = min(delay * 2, 10.0)

    def is_ready(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self.channel is not None
            and not self.channel.is_closed
        )

    async def publish(self, routing_key: str, message: aio_pika.Message) -> None:
        """Publish and wait for RabbitMQ's confirm; raise UnavailableError on any failure."""
        if not self.is_ready():
            raise UnavailableError("The message broker is unavailable; nothing was accepted")
        assert self.channel is not None
        async with self._inflight:
            try:
                await self.channel.default_exchange.publish(
                    message, routing_key=routing_key, mandatory=True, timeout=self.publish_timeout
                )
            except _BROKER_ERRORS as exc:
                log.warning("publish to %s failed: %s", routing_key, exc)
                raise UnavailableError(
                    "The message broker did not confirm; nothing was accepted"
                ) from exc
            except aio_pika.exceptions.DeliveryError as exc:
                raise UnavailableError(f"The broker could not route to {routing_key}") from exc

    async def publish_task(
        self,
        queue: str,
        task: str,
        *,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        countdown: float | None = None,
    ) -> str:
        message = celery_task_message(
            task, args=args, kwargs=kwargs, task_id=task_id, countdown=countdown
        )
        await self.publish(queue, message)
        return str(message.message_id)

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self.connection is not None:
            await self.connection.close()


async def declare_topology(channel: AbstractChannel) -> None:
    """Declare the work queues and the dead-letter exchange and queue (idempotent)."""
    dead = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
    await dead_queue.bind(dead)
    for name in WORK_QUEUES:
        await channel.declare_queue(name, durable=True, arguments=WORK_QUEUE_ARGUMENTS)


async def purge_work_queues(url: str) -> None:
    """Empty Herald's work and dead-letter queues in the virtual host of ``url``. For test
    and benchmark runs, which must not work off what an earlier run left behind."""
    connection = await aio_pika.connect(url)
    async with connection:
        for name in (*WORK_QUEUES, DEAD_LETTER_QUEUE):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                await queue.purge()
            except aio_pika.exceptions.ChannelClosed:
                pass  # not declared yet in this virtual host
