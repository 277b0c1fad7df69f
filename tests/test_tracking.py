"""Open and click tracking's links (backend/services/tracking.py): what the HTML of an email
becomes, and which tokens the endpoints accept."""

from __future__ import annotations

import json
import re
from html import unescape
from urllib.parse import urlsplit

import pytest

from backend.config import Settings
from backend.errors import ValidationError
from backend.services import tracking
from tests.conftest import make_settings

BASE = "https://herald.example.com"


def settings(*, opens: bool = True, clicks: bool = True, secret: str = "s" * 40) -> Settings:
    return make_settings(
        public_url=BASE,
        email_track_opens=opens,
        email_track_clicks=clicks,
        tracking_secret=secret,
    )


def token_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[1]


def test_http_links_are_rewritten_to_signed_redirects_to_the_same_url() -> None:
    s = settings()
    html = (
        '<p><a class="x" href="https://shop.example/a?b=1&amp;c=2">A</a>'
        "<A HREF='http://shop.example/b'>B</A></p>"
    )

    out = tracking.instrument_html(s, html, delivery_id="d-1", critical=False)

    hrefs = [unescape(h) for h in re.findall(r"""href=["']([^"']+)""", out, re.IGNORECASE)]
    assert [h.startswith(f"{BASE}/t/c/") for h in hrefs] == [True, True]
    clicks = [tracking.read_click_token(s, token_of(h)) for h in hrefs]
    assert [(c.delivery_id, c.url) for c in clicks] == [
        ("d-1", "https://shop.example/a?b=1&c=2"),
        ("d-1", "http://shop.example/b"),
    ]
    assert '<a class="x" href=' in out and ">A</a>" in out


@pytest.mark.parametrize(
    "href",
    [
        "mailto:help@example.com",
        "tel:+331234",
        "#top",
        "/relative/path",
        "javascript:alert(1)",
        "https://shop.example/Unsubscribe?u=1",
        f"{BASE}/preferences/abc.def",
        f"{BASE}/unsubscribe/abc.def",
    ],
)
def test_links_that_must_stay_as_written_are_kept(href: str) -> None:
    html = f'<a href="{href}">x</a>'

    assert (
        tracking.instrument_html(settings(opens=False), html, delivery_id="d", critical=False)
        == html
    )


def test_the_pixel_goes_before_the_closing_body_or_at_the_end() -> None:
    s = settings(clicks=False)
    with_body = tracking.instrument_html(
        s, "<html><body><p>x</p></BODY></html>", delivery_id="d-9", critical=False
    )
    without = tracking.instrument_html(s, "<p>x</p>", delivery_id="d-9", critical=False)

    pixel = tracking.open_url(s, delivery_id="d-9")
    assert with_body.index(pixel) < with_body.index("</BODY>")
    assert without.startswith("<p>x</p><img ") and pixel in without
    assert tracking.read_open_token(s, token_of(pixel).removesuffix(".gif")) == "d-9"


def test_nothing_changes_when_tracking_is_off_or_the_email_is_critical() -> None:
    html = '<body><a href="https://shop.example/">x</a></body>'
    off = settings(opens=False, clicks=False)

    assert tracking.instrument_html(off, html, delivery_id="d", critical=False) == html
    assert tracking.instrument_html(settings(), html, delivery_id="d", critical=True) == html


def test_a_tampered_or_foreign_token_is_refused() -> None:
    s = settings()
    click = token_of(tracking.click_url(s, delivery_id="d-1", url="https://shop.example/"))
    payload, signature = click.split(".")
    evil = tracking._b64(json.dumps(["d-1", "https://evil.example/"]).encode())
    opened = token_of(tracking.open_url(s, delivery_id="d-1")).removesuffix(".gif")

    for bad in (
        f"{evil}.{signature}",  # another URL under the old signature
        f"{payload}.{signature[:-1]}A" if signature[-1] != "A" else f"{payload}.{signature[:-1]}B",
        payload,  # unsigned
        opened,  # an open token is no click token
        "x" * 9000,
    ):
        with pytest.raises(ValidationError):
            tracking.read_click_token(s, bad)
    with pytest.raises(ValidationError):
        tracking.read_open_token(s, click)
    # Another key: every link signed before stops working.
    with pytest.raises(ValidationError):
        tracking.read_click_token(settings(secret="t" * 40), click)


def test_a_signed_token_never_redirects_to_anything_but_http() -> None:
    s = settings()
    token = tracking._sign(s, "c", ["d-1", "javascript:alert(1)"])

    with pytest.raises(ValidationError):
        tracking.read_click_token(s, token)
