"""A worker process's runtime on the event loop HERALD_WORKER_EVENT_LOOP names."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.workers.runtime import WorkerRuntime
from tests.conftest import make_settings


def _start_and_use(loop_name: str) -> tuple[type, int, bool]:
    """In a thread of its own (as a worker process's main thread: no loop yet), start the
    runtime, use its PostgreSQL, Redis and RabbitMQ clients, and close it."""
    runtime = WorkerRuntime(make_settings(worker_event_loop=loop_name))
    try:
        runtime.run(runtime.start())
        assert runtime.engine is not None and runtime.redis is not None
        assert runtime.broker is not None

        async def use() -> tuple[int, bool]:
            assert runtime.engine is not None and runtime.redis is not None
            async with runtime.engine.connect() as conn:
                one = (await conn.execute(text("SELECT 1"))).scalar_one()
            pong = await runtime.redis.ping()
            return one, pong

        one, pong = runtime.run(use())
        assert runtime.broker is not None and runtime.broker.is_ready()
        return type(runtime.loop), one, pong
    finally:
        runtime.run(runtime.close())
        runtime.loop.close()
        asyncio.set_event_loop(None)


@pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])
def test_the_runtime_runs_on_the_loop_its_setting_names(engine: AsyncEngine, loop_name: str):
    with ThreadPoolExecutor(1) as pool:
        loop_type, one, pong = pool.submit(_start_and_use, loop_name).result(timeout=60)
    assert issubclass(loop_type, uvloop.Loop) is (loop_name == "uvloop")
    assert issubclass(loop_type, asyncio.AbstractEventLoop)
    assert (one, pong) == (1, True)


def test_uvloop_is_the_default():
    assert make_settings().worker_event_loop == "uvloop"
