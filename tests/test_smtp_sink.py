"""The development SMTP sink keeps what it receives and shows it."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import httpx

from backend.standins.smtp_sink import Mailbox, create_mailbox_app, start_smtp
from tests.conftest import free_port


async def test_sink_receives_and_lists_messages():
    mailbox = Mailbox()
    port = free_port()
    controller = start_smtp(mailbox, host="127.0.0.1", port=port)
    try:
        message = EmailMessage()
        message["From"] = "noreply@herald.localhost"
        message["To"] = "ada@example.com"
        message["Subject"] = "Olá <3"
        message.set_content("plain body")
        message.add_alternative("<p>rich body</p>", subtype="html")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
    finally:
        controller.stop()
    transport = httpx.ASGITransport(app=create_mailbox_app(mailbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://sink") as client:
        listed = (await client.get("/api/messages")).json()
        page = (await client.get("/")).text
        missing = await client.get("/api/messages/99")
    assert [(m["to"], m["subject"]) for m in listed] == [(["ada@example.com"], "Olá <3")]
    assert listed[0]["text"].strip() == "plain body"
    assert listed[0]["html"].strip() == "<p>rich body</p>"
    assert "Olá &lt;3" in page
    assert missing.status_code == 404
