"""Real servers standing in for the outside world: an SMTP server and HTTP providers."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import free_port
from tests.http_stubs import QuietHandler, serve


@dataclass
class SmtpSink:
    """Records delivered mail; can be told to refuse the next N messages with 451."""

    messages: list[Message] = field(default_factory=list)
    refuse_next: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                self.refused += 1
                return "451 4.3.0 Try again later"
            self.messages.append(message_from_bytes(envelope.content))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] and address in m["To"]]


def start_smtp() -> tuple[Controller, SmtpSink]:
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, sink


@dataclass
class HttpRecorder:
    """A provider stand-in: records JSON POSTs, answers with ``status`` (changeable)."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_http(recorder: HttpRecorder) -> tuple[ThreadingHTTPServer, str]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with recorder.lock:
                status = recorder.status
                if status < 300:
                    recorder.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
            self.reply_json(status, {"id": f"msg-{len(recorder.requests)}"})

    return serve(Handler)


async def eventually(check: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll an async ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


class TcpProxy:
    """A TCP forwarder to a real server that a test can cut (every connection dropped, new
    ones refused) and restore: a network partition between one process and, say, PostgreSQL,
    without stopping the server that other processes share."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        )
        started.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def drop() -> None:
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self.up = False
        self._loop.call_soon_threadsafe(drop)

    def restore(self) -> None:
        self.up = True


@dataclass
class FaultReport:
    """One line of the faults report: what was applied and what became of it."""

    name: str
    load: str
    fault: str
    accepted: int
    delivered: int
    lost: int
    duplicated: int
    refused: int = 0


FAULT_REPORTS: list[FaultReport] = []
