"""A provider's body that is not the JSON it posts is a ValidationError naming the provider,
before anything is applied (the endpoints answer it 400 VALIDATION)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backend.errors import ValidationError
from backend.services.email_feedback import mailgun, postmark, sendgrid, ses

READERS: list[tuple[str, Callable[[bytes], Any], str, bytes]] = [
    ("mailgun", mailgun.load, "a Mailgun webhook", b"[]"),
    ("postmark", postmark.parse, "a Postmark webhook", b"[]"),
    ("sendgrid", sendgrid.parse, "a SendGrid event batch", b"{}"),
    ("ses", ses.parse_envelope, "an SNS message", b"[]"),
]


@pytest.mark.parametrize(("read", "what"), [r[1:3] for r in READERS], ids=[r[0] for r in READERS])
@pytest.mark.parametrize("body", [b"<xml/>", b"\xff\xfe", b""], ids=["text", "bytes", "empty"])
def test_a_body_that_is_not_json_is_refused(
    read: Callable[[bytes], Any], what: str, body: bytes
) -> None:
    with pytest.raises(ValidationError) as raised:
        read(body)
    assert raised.value.message == f"The body is not {what} (not JSON)"


@pytest.mark.parametrize(
    ("read", "what", "wrong"), [r[1:] for r in READERS], ids=[r[0] for r in READERS]
)
def test_json_of_the_wrong_shape_is_refused(
    read: Callable[[bytes], Any], what: str, wrong: bytes
) -> None:
    shape = "a JSON array" if wrong == b"{}" else "a JSON object"
    with pytest.raises(ValidationError) as raised:
        read(wrong)
    assert raised.value.message == f"The body is not {what} (not {shape})"
