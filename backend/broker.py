"""The API's long-lived RabbitMQ connection (aio-pika, robust: it reconnects by itself)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aio_pika
from aio_pika.abc import AbstractRobustConnection

log = logging.getLogger(__name__)


class Broker:
    """Owns one robust connection. Starting never fails: while RabbitMQ is down the API still
    serves reads, reports not-ready, and keeps trying to connect in the background."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.connection: AbstractRobustConnection | None = None
        self._connector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._connect()
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            log.warning("RabbitMQ is not reachable yet (%s); retrying in the background", exc)
            self._connector = asyncio.create_task(self._keep_connecting())

    async def _connect(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url, timeout=self.connect_timeout)

    async def _keep_connecting(self) -> None:
        delay = 0.5
        while self.connection is None:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
                delay = min(delay * 2, 10.0)

    def is_ready(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    async def close(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self.connection is not None:
            await self.connection.close()
