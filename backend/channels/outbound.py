"""What every outbound webhook POST shares, the status webhooks' and the webhook channel's:
Standard Webhooks signatures (https://www.standardwebhooks.com/) and the guard that keeps a
POST off private addresses.

Signatures: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>``
with the base64-decoded part of a ``whsec_<base64>`` secret as the key (any other string keys
with its UTF-8 bytes, the former scheme's key), and the deprecated ``Herald-Signature`` form.

The guard (:func:`pinned_target`): a URL's host must resolve to global addresses only, and the
request then goes to the very address that was checked (a name that resolves elsewhere the
second time cannot redirect it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
ATTEMPT_HEADER = "Herald-Webhook-Attempt"
LEGACY_SIGNATURE_HEADER = "Herald-Signature"
LEGACY_ID_HEADER = "Herald-Webhook-Id"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a secret)
SIGNATURE_TOLERANCE_SECONDS = 300


# --- signatures ----------------------------------------------------------------------------


def whsec_key(secret: str) -> bytes | None:
    """The key of a ``whsec_<base64>`` secret; None for any other string."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True) or None
    except (binascii.Error, ValueError):
        return None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64-decoded part of ``whsec_<base64>``; any other
    string (a secret from before Standard Webhooks, such as ``whsec_`` followed by URL-safe
    characters, or a passphrase) is its UTF-8 bytes, the key the former scheme used."""
    key = whsec_key(secret)
    return key if key is not None else secret.encode()


def standard_secret(secret: str) -> str:
    """``secret`` in the Standard Webhooks form, ``whsec_<base64 of the key>``: the same key, so
    a secret from before (``S``, keyed with its UTF-8 bytes) becomes ``whsec_`` +
    base64(UTF-8 of ``S``) and signatures made with it do not change."""
    return SECRET_PREFIX + base64.b64encode(signing_key(secret)).decode()


def sign(key: bytes, body: bytes, *, message_id: str, timestamp: int) -> str:
    """The ``webhook-signature`` value (Standard Webhooks ``v1``) for ``body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign_legacy(key: bytes, body: bytes, *, timestamp: int) -> str:
    """The deprecated ``Herald-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_legacy_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver of the deprecated header does: its ``v1`` matches and ``t`` is recent
    (replays of an old request are refused). ``secret``: the endpoint's secret, in either
    its former or its ``whsec_`` form."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = sign_legacy(signing_key(secret), body, timestamp=timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


# --- the SSRF guard ----------------------------------------------------------------------------


class TargetRefused(Exception):
    """The endpoint's address is one webhooks may not reach."""


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.partition("%")[0])  # an IPv6 zone ("%eth0") aside
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return not ip.is_global or ip.is_multicast


async def _addresses(parts: SplitResult) -> list[str]:
    assert parts.hostname is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(
        parts.hostname, port, type=socket.SOCK_STREAM
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_address(parts: SplitResult) -> str:
    """The address to connect to for ``parts``: every address its host resolves to must be
    global (a name with one private address among public ones is refused as well)."""
    addresses = await _addresses(parts)
    refused = [a for a in addresses if _forbidden(a)]
    if refused or not addresses:
        raise TargetRefused(
            f"{parts.hostname} resolves to {', '.join(refused) or 'nothing'}: private, loopback "
            "and link-local addresses are refused (HERALD_WEBHOOK_ALLOW_PRIVATE_TARGETS)"
        )
    return addresses[0]


async def pinned_target(url: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The SSRF guard for any outbound POST (the webhook channel's too): ``url``'s host must
    resolve to global addresses only (else :class:`TargetRefused`); returns the URL pinned to
    the checked address, the Host header and the httpx extensions (TLS server name)."""
    parts = urlsplit(url)
    address = await checked_address(parts)
    host = f"[{address}]" if ":" in address else address
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}" + (f":{parts.port}" if parts.port else "")
    extensions: dict[str, Any] = {}
    if parts.scheme == "https":
        extensions["sni_hostname"] = parts.hostname
    return parts._replace(netloc=netloc).geturl(), {"Host": hostport}, extensions
