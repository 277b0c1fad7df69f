"""The dispatch queue's consumer: events taken off ``herald.dispatch`` in batches.

Celery hands a pool process one message at a time, so each single event used to cost a task of
its own: its recipients' preferences read, its inbox row written, its history row inserted, its
live message published and its message acknowledged, one round trip each. Here a process of its
own (started and watched by ``herald worker``, see ``supervise``) consumes the dispatch queue
with a prefetch of ``dispatch_prefetch`` messages and takes what is ready, up to
``dispatch_batch_size`` messages, waiting at most ``dispatch_batch_wait_ms`` for more once one
has arrived. A batch starts beside a running one only once that one has run for
``dispatch_batch_overlap_ms`` (a batch held up, say by a slow auth service, holds up nothing
else for long), and at most ``dispatch_batches_in_flight`` run at once: what arrives while
they run joins the next batch, so batches grow with the load and each event costs less (an
event on a quiet queue still goes at once, alone). The first deliveries of in-app events for
a few users (most single events) are dispatched as one (``units.dispatch_together``: one
preferences query, one transaction, one inbox statement, one Redis publish call, one history
insert); any other message is run as its Celery task would run it, concurrently with the
rest.

The messages are the Celery task messages the API publishes (protocol v2, ``backend.broker``),
so producers do not know who consumes them. Exactly-once per delivery rests on what it rests on
for a Celery task (``backend.services.deliveries``), with the same acknowledgement: a message
is acknowledged only once its event's writes committed and its hand-ons were published (a
batch's messages with one ``multiple`` ack where that is safe, see ``Acknowledgements``). A
consumer that dies leaves its unacknowledged messages to RabbitMQ, which redelivers them
(flagged, so they take the re-run path, one event at a time). An event whose dispatch failed is
retried alone, its message kept unacknowledged, with the Celery tasks' backoff, until it gets
through: an accepted event is never dropped. The other task on the dispatch queue (a workflow
run's steps) is run as its Celery task runs it; a message that is not a task Herald knows is
rejected to the dead-letter queue, as Celery's pool does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import orjson
from aio_pika.abc import AbstractIncomingMessage

from backend.config import Settings, get_settings
from backend.observability import tracing
from backend.queues import DISPATCH, TASK_DISPATCH, TASK_WORKFLOW_ADVANCE, WORK_QUEUE_ARGUMENTS
from backend.services import deliveries, workflows
from backend.services.retries import backoff_seconds, task_retry_delay
from backend.workers import units
from backend.workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
_PARENT_ENV = "HERALD_DISPATCH_CONSUMER_PARENT"


@dataclass(frozen=True, slots=True)
class _Task:
    """One message as a task: its name, arguments and whether it is a re-run."""

    message: AbstractIncomingMessage
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    rerun: bool  # redelivered by RabbitMQ, or a Celery retry's message
    eta: datetime | None


def _task(message: AbstractIncomingMessage) -> _Task | None:
    """The message as a task; None if it is not a Celery protocol v2 message."""
    headers = message.headers or {}
    name = headers.get("task")
    try:
        args, kwargs, _embed = orjson.loads(message.body)
        eta_text = headers.get("eta")
        eta = datetime.fromisoformat(str(eta_text)) if eta_text else None
    except (ValueError, TypeError):
        return None
    if not isinstance(name, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
        return None
    if eta is not None and eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    retries = headers.get("retries") or 0
    rerun = bool(message.redelivered) or (isinstance(retries, int) and retries > 0)
    return _Task(message, name, args, kwargs, rerun, eta)


def _event(task: _Task) -> dict[str, Any]:
    return task.args[0] if task.args else task.kwargs["event"]


class Acknowledgements:
    """Settles a consumer's messages in as few frames as is safe.

    One ``basic.ack`` with ``multiple`` settles every message of the channel up to its delivery
    tag, so a batch of 100 costs RabbitMQ and this process one frame instead of 100. It is
    safe only below the lowest tag still being worked on: a message retried alone (its backoff
    can last minutes) must stay unacknowledged while the batches after it finish. So what is
    finished below that tag goes in one ack, and what is finished above it (a batch done
    before an earlier one, or a message run alone) is acknowledged one by one.

    Every message is ``received`` here when it arrives and leaves through ``ack`` or
    ``reject``. Frames are decided and sent under one lock: an ack for a tag that an earlier
    ``multiple`` ack already settled would make RabbitMQ close the channel. Tags count per
    channel; after a reconnection the new channel starts again from 1, and the old channel's
    messages can no longer be settled (RabbitMQ redelivers them)."""

    def __init__(self) -> None:
        self._channel: object | None = None
        self._working: set[int] = set()  # tags received on ``_channel``, not settled yet
        self._lock = asyncio.Lock()

    def received(self, message: AbstractIncomingMessage) -> None:
        channel = _channel_of(message)
        if channel is None or message.delivery_tag is None:
            return
        if channel is not self._channel:
            self._channel, self._working = channel, set()
        self._working.add(message.delivery_tag)

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        async with self._lock:
            here = [m for m in messages if self._here(m)]
            self._working.difference_update(_tag(m) for m in here)
            lowest = min(self._working, default=None)
            below = [m for m in here if lowest is None or _tag(m) < lowest]
            if below:
                await _settle(max(below, key=_tag).ack(multiple=True))
            covered = {id(m) for m in below}
            for message in messages:
                if id(message) not in covered:
                    await _settle(message.ack())

    async def reject(self, message: AbstractIncomingMessage) -> None:
        """Dead-letter the message (``requeue=False``)."""
        async with self._lock:
            if self._here(message):
                self._working.discard(_tag(message))
            await _settle(message.reject(requeue=False))

    def _here(self, message: AbstractIncomingMessage) -> bool:
        return message.delivery_tag is not None and _channel_of(message) is self._channel


def _tag(message: AbstractIncomingMessage) -> int:
    return message.delivery_tag or 0


def _channel_of(message: AbstractIncomingMessage) -> object | None:
    """The channel ``message`` came on; None once it closed (aio-pika raises then)."""
    try:
        channel = message.channel
    except Exception:
        return None
    return None if channel.is_closed else channel


class DispatchConsumer:
    """Consumes the dispatch queue of ``settings.rabbitmq_url`` until ``stop`` is called.
    ``http``: the client workflow steps call webhooks with; ``queue``: the queue's name."""

    def __init__(
        self,
        settings: Settings,
        ctx: deliveries.DeliveryContext,
        http: httpx.AsyncClient | None = None,
        *,
        queue: str = DISPATCH,
    ) -> None:
        self.settings, self.ctx, self.http, self.queue = settings, ctx, http, queue
        self.batch_size = settings.dispatch_batch_size
        self.wait = settings.dispatch_batch_wait_ms / 1000
        self.prefetch = settings.dispatch_prefetch
        self.alone = asyncio.Semaphore(settings.dispatch_alone_concurrency)
        self.in_flight = asyncio.Semaphore(settings.dispatch_batches_in_flight)
        self.overlap = settings.dispatch_batch_overlap_ms / 1000
        self.running: dict[int, float] = {}  # each running batch's start (monotonic)
        self.batch_ended = asyncio.Event()
        self.batches = itertools.count()
        self.ready: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.acks = Acknowledgements()
        self.working: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def _connect(self) -> aio_pika.abc.AbstractRobustConnection | None:
        """A robust connection, tried again with the project's backoff (0.5 s doubling to
        10 s) until RabbitMQ answers (None if stopped first)."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                return await aio_pika.connect_robust(self.settings.rabbitmq_url, timeout=5)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
                attempt += 1
                delay = backoff_seconds(attempt, base=0.5, cap=10.0)
                log.warning("RabbitMQ is not reachable yet (%s); retrying in %.1f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
        return None

    async def run(self) -> None:
        connection = await self._connect()
        if connection is None:
            return
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(
                self.queue, durable=True, arguments=WORK_QUEUE_ARGUMENTS
            )
            tag = await queue.consume(self._arrived)
            log.info("consuming %s (batches of up to %d)", self.queue, self.batch_size)
            stopped = asyncio.create_task(self.stopping.wait())
            while not self.stopping.is_set():
                taking = asyncio.create_task(self._batch())
                await asyncio.wait({taking, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await taking
                    break
                number, messages = taking.result()
                self._start(self._handle_in_flight(number, messages))
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
            # What was taken is finished; what was prefetched and not taken goes back to
            # RabbitMQ when the channel closes.
            stopped.cancel()
            if self.working:
                await asyncio.wait(set(self.working), timeout=30)
        finally:
            await connection.close()

    async def _arrived(self, message: AbstractIncomingMessage) -> None:
        self.acks.received(message)
        self.ready.put_nowait(message)

    async def _batch(self) -> tuple[int, list[AbstractIncomingMessage]]:
        """What is ready once fewer than ``dispatch_batches_in_flight`` batches run (their
        slot taken here, given back by ``_handle_in_flight``) and none has run for less than
        ``overlap``: one message, then more for up to ``wait`` seconds. Meanwhile messages
        gather in ``ready``, so the next batch takes them together. The batch counts as
        running from here (its number in ``running``) until ``_handle_in_flight`` ends."""
        await self.in_flight.acquire()
        try:
            await self._overlap_allowed()
            messages = await self._gather()
        except BaseException:
            self.in_flight.release()
            raise
        number = next(self.batches)
        self.running[number] = time.monotonic()
        return number, messages

    async def _overlap_allowed(self) -> None:
        """Returns once no batch runs or the latest one started has run for ``overlap``."""
        while self.running:
            left = max(self.running.values()) + self.overlap - time.monotonic()
            if left <= 0:
                return
            self.batch_ended.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.batch_ended.wait()

    async def _handle_in_flight(self, number: int, messages: list[AbstractIncomingMessage]) -> None:
        try:
            await self._handle(messages)
        finally:
            del self.running[number]
            self.batch_ended.set()
            self.in_flight.release()

    async def _gather(self) -> list[AbstractIncomingMessage]:
        batch = [await self.ready.get()]
        deadline = time.monotonic() + self.wait
        while len(batch) < self.batch_size:
            if not self.ready.empty():
                batch.append(self.ready.get_nowait())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    batch.append(await self.ready.get())
            except TimeoutError:
                break
        return batch

    def _start(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.working.add(task)
        task.add_done_callback(self.working.discard)

    async def _handle(self, messages: list[AbstractIncomingMessage]) -> None:
        batch: list[tuple[_Task, deliveries.Envelope]] = []
        starting: list[tuple[_Task, deliveries.Envelope]] = []
        for message in messages:
            task = _task(message)
            if task is None or task.name not in (TASK_DISPATCH, TASK_WORKFLOW_ADVANCE):
                log.error(
                    "rejecting a message on %s that is no Herald task (%s)",
                    self.queue,
                    (message.headers or {}).get("task"),
                )
                await self.acks.reject(message)
                continue
            if task.name == TASK_DISPATCH:
                try:
                    envelope = deliveries.Envelope.from_wire(_event(task))
                except Exception as exc:
                    log.error("rejecting an undecodable dispatch message: %s", exc)
                    await self.acks.reject(message)
                    continue
                if not task.rerun and task.eta is None and deliveries.together(self.ctx, envelope):
                    batch.append((task, envelope))
                    continue
                if not task.rerun and task.eta is None and self._starts_runs(envelope):
                    starting.append((task, envelope))
                    continue
                # A re-run, a delayed retry or an event that cannot go with others: as its
                # Celery task would run it.
                self._start(self._alone(task, envelope))
                continue
            # A workflow's step: as its Celery task would run it.
            self._start(self._alone(task))
        if starting:  # on its own: waiting for a slot of those run alone holds no batch up
            self._start(self._starting(starting))
        await self._together(batch, units.dispatch_together)

    async def _starting(self, batch: list[tuple[_Task, deliveries.Envelope]]) -> None:
        """Events that start runs, together: as many batches at once as messages run alone
        (each takes its runs through their first steps, a few database sessions at a time)."""
        if batch:
            async with self.alone:
                await self._together(batch, units.start_workflow_runs)

    def _starts_runs(self, envelope: deliveries.Envelope) -> bool:
        """Whether the event only starts workflow runs (it cancels none): such events are
        dispatched together (``units.start_workflow_runs``)."""
        return not envelope.cancels and workflows.starts_runs(
            envelope, part_size=self.settings.dispatch_part_size, split=True
        )

    async def _together(
        self,
        batch: list[tuple[_Task, deliveries.Envelope]],
        unit: Callable[[deliveries.DeliveryContext, list[deliveries.Envelope]], Awaitable[None]],
    ) -> None:
        """Run a batch of events as one; on an error, each again alone, as a re-run."""
        # Messages whose channel closed while they waited come back redelivered.
        batch = [(task, envelope) for task, envelope in batch if _open(task.message)]
        if not batch:
            return
        try:
            with tracing.task_span(TASK_DISPATCH, [t.message.headers for t, _ in batch]):
                await unit(self.ctx, [envelope for _, envelope in batch])
        except Exception as exc:
            log.warning("a batch of %d events failed, each will be retried: %s", len(batch), exc)
            for task, envelope in batch:
                self._start(self._alone(task, envelope, retries=1))
            return
        await self.acks.ack([task.message for task, _ in batch])

    async def _alone(
        self, task: _Task, envelope: deliveries.Envelope | None = None, *, retries: int = 0
    ) -> None:
        """Run one task by itself, retrying it until it succeeds; then acknowledge it. A
        retry is a re-run (``redelivered``), as a Celery task's retry is. A message whose
        channel closed meanwhile (RabbitMQ restarted) is left to its redelivered copy."""
        if task.eta is not None:
            await asyncio.sleep(max(0.0, (task.eta - datetime.now(UTC)).total_seconds()))
        while True:
            if retries:
                await asyncio.sleep(task_retry_delay(retries - 1))
            async with self.alone:
                if not _open(task.message):
                    return
                try:
                    with tracing.task_span(task.name, [task.message.headers]):
                        await self._run(task, envelope, rerun=task.rerun or retries > 0)
                except Exception as exc:
                    log.warning("%s failed, will retry: %s", task.name, exc)
                    retries += 1
                    continue
            await self.acks.ack([task.message])
            return

    async def _run(self, task: _Task, envelope: deliveries.Envelope | None, *, rerun: bool) -> None:
        """``envelope``: a dispatch task's event, decoded when its message was taken."""
        if envelope is None:
            ids = task.args[0] if task.args else task.kwargs["run_ids"]
            # A message that came back (its worker died) takes over the runs it held.
            await units.advance_workflow_runs(
                self.ctx,
                run_ids=[ids] if isinstance(ids, str) else ids,
                http=self.http,
                takeover=rerun,
            )
        else:
            await units.dispatch(self.ctx, envelope, redelivered=rerun)


def _open(message: AbstractIncomingMessage) -> bool:
    """Whether the channel ``message`` came on is still open (it can still be acknowledged)."""
    return _channel_of(message) is not None


async def _settle(acknowledgement: Awaitable[None]) -> None:
    """An ack or reject; on a channel that closed under it (RabbitMQ restarted), RabbitMQ
    redelivers the message instead, and its re-run stores and sends nothing twice."""
    try:
        await acknowledgement
    except Exception as exc:
        log.warning("could not settle a dispatch message (it will be redelivered): %s", exc)


def consume() -> None:
    """A dispatch consumer process's life (``herald dispatch-consumer``): its runtime and
    loop, consuming until SIGTERM or SIGINT."""
    _die_with_parent()
    runtime = WorkerRuntime(get_settings())
    runtime.run(runtime.start())
    gc.freeze()  # as the Celery pool processes do: what exists now lives as long as this
    assert runtime.context is not None
    consumer = DispatchConsumer(runtime.settings, runtime.context, runtime.http)
    for signum in (signal.SIGTERM, signal.SIGINT):
        runtime.loop.add_signal_handler(signum, consumer.stop)
    try:
        runtime.run(consumer.run())
    except Exception:
        log.exception("the dispatch consumer stopped on an error")  # its supervisor restarts it
        raise SystemExit(1) from None
    finally:
        runtime.run(runtime.close())
        runtime.loop.close()


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the ``herald worker`` that started this process dies
    (even by SIGKILL), and leave at once if it is already gone."""
    parent = os.environ.get(_PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        sys.exit(0)


def start_beside_forks(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` from a process that other threads fork (the Celery pool's processes
    are forked from the worker's main thread), by ``posix_spawn``.

    Started by fork and exec, ``Popen`` opens a pipe that reports a failed exec and waits
    until the child's exec closes it. A process forked by another thread in that moment
    holds the pipe's write end too, and ``Popen`` then waits until that process ends: a
    pool process lives as long as the worker, so the supervisor's thread hung and started
    no consumer again. ``posix_spawn`` reports a failed exec without a pipe; ``subprocess``
    uses it on glibc when ``close_fds`` is off, ``argv[0]`` is a path and no option needs a
    fork (a ``cwd``, a new session). The child still gets only inheritable file descriptors:
    standard input, output and error (Python opens every other one non-inheritable)."""
    return subprocess.Popen(argv, env=env, close_fds=False)


class Supervisor:
    """Starts ``count`` dispatch consumer processes beside the Celery worker, starts again any
    that ends (killed, or crashed) and stops them all when the worker stops."""

    def __init__(self, count: int, spawn: Callable[[], subprocess.Popen[bytes]] | None = None):
        self.count = count
        self.spawn = spawn or self._spawn
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="dispatch-consumers", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, _PARENT_ENV: str(os.getpid())}
        return start_beside_forks([sys.executable, "-m", "backend.cli", "dispatch-consumer"], env)

    def _watch(self) -> None:
        # Started from this thread, which lives as long as the worker: the death signal is
        # tied to the thread that started a process.
        self.processes = [self.spawn() for _ in range(self.count)]
        while not self.stopping.wait(0.5):
            for n, process in enumerate(self.processes):
                if process.poll() is not None and not self.stopping.is_set():
                    log.warning(
                        "dispatch consumer %d ended (exit %s); starting another",
                        process.pid,
                        process.returncode,
                    )
                    self.processes[n] = self.spawn()

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self.thread.join(5)
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
