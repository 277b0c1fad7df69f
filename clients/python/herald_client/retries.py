"""When a request to Herald is worth sending again, and after how long.

Herald answers an overloaded or rate-limited call with a typed error in the data
(``RATE_LIMITED`` with ``retryAfterSeconds``, ``UNAVAILABLE`` when a store or the broker is
down), or, in front of it, a proxy answers 429/502/503/504. Both are retried; anything else is
the caller's to read. Events carry an idempotency key, so sending one again is safe.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

RETRIED_CODES = frozenset({"RATE_LIMITED", "UNAVAILABLE"})
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


def _errors(value: Any) -> Iterator[dict[str, Any]]:
    """The typed errors in a field's result, and in a batch's ``results``."""
    if isinstance(value, dict):
        if value.get("code") in RETRIED_CODES:
            yield value
        for item in value.get("results") or ():
            yield from _errors(item)


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """``base``·2^(attempt-1), capped, times a 0.5-1.0 jitter."""
    # Jitter spreads retries of many callers; it needs no cryptographic randomness.
    return float(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))  # noqa: S311


def retry_delay(
    status_code: int, headers: Any, body: Any, attempt: int, *, base: float, cap: float
) -> float | None:
    """Seconds to wait before sending the request again, or None when its answer is final."""
    if status_code in RETRIED_STATUSES:
        try:
            return max(0.0, float(headers.get("retry-after")))
        except (TypeError, ValueError):
            return backoff(attempt, base=base, cap=cap)
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        return None
    errors = [error for value in body["data"].values() for error in _errors(value)]
    if not errors:
        return None
    waits = [
        e["retryAfterSeconds"]
        for e in errors
        if isinstance(e.get("retryAfterSeconds"), int | float)
    ]
    return max(waits) if waits else backoff(attempt, base=base, cap=cap)
