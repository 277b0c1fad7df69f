"""Development stand-in: an SMTP server that keeps every message, and a page to read them.

``herald dev`` runs it so that emails can be looked at without a real mail server (docker
compose uses Mailpit for the same purpose). Never used in production.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse

MAX_MESSAGES = 1000


@dataclass
class Mailbox:
    """The last :data:`MAX_MESSAGES` messages received."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        text = message.get_body(("plain",))
        rich = message.get_body(("html",))
        with self.lock:
            self.received += 1
            self.messages.append(
                {
                    "id": self.received,
                    "received_at": datetime.now(UTC).isoformat(),
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "subject": str(message.get("Subject", "")),
                    "text": text.get_content() if text is not None else None,
                    "html": rich.get_content() if rich is not None else None,
                    "headers": {k: str(v) for k, v in message.items()},
                }
            )
            del self.messages[:-MAX_MESSAGES]
        return "250 Message accepted"


def create_mailbox_app(mailbox: Mailbox) -> FastAPI:
    app = FastAPI(title="Herald development mailbox", docs_url=None, redoc_url=None)

    @app.get("/api/messages")
    def messages() -> list[dict[str, Any]]:
        with mailbox.lock:
            return list(reversed(mailbox.messages))

    @app.get("/api/messages/{message_id}")
    def message(message_id: int) -> dict[str, Any]:
        with mailbox.lock:
            for m in mailbox.messages:
                if m["id"] == message_id:
                    return m
        raise HTTPException(404, "no such message")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        with mailbox.lock:
            rows = "".join(
                f"<tr><td>{m['id']}</td><td>{html.escape(m['received_at'])}</td>"
                f"<td>{html.escape(', '.join(m['to']))}</td>"
                f"<td><details><summary>{html.escape(m['subject'])}</summary>"
                f"<pre>{html.escape(m['text'] or '')}</pre></details></td></tr>"
                for m in reversed(mailbox.messages)
            )
        return (
            "<!doctype html><meta charset=utf-8><title>Herald mailbox</title>"
            "<style>body{font:14px system-ui;margin:2rem}td,th{padding:4px 8px;"
            "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}</style>"
            "<h1>Development mailbox</h1><table><tr><th>#</th><th>received</th><th>to</th>"
            f"<th>subject</th></tr>{rows}</table>"
        )

    return app


def start_smtp(mailbox: Mailbox, *, host: str, port: int) -> Controller:
    controller = Controller(mailbox, hostname=host, port=port)
    controller.start()
    return controller
