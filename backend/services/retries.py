"""How long to wait before trying again: one exponential backoff for every retry in Herald."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """The wait after failed attempt ``attempt`` (1 for the first): base·2^(attempt-1), capped at
    ``cap``, times a random 0.5-1.0.

    The jitter spreads the retries of many processes that failed together; half the ceiling is
    kept as a floor so that a retry never comes back at once. Not security-relevant.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311


def task_retry_delay(retries: int) -> float:
    """The wait before a task that failed on infrastructure (a store or the broker down) runs
    again, ``retries`` being how often it was retried already (Celery's ``request.retries``):
    1 s doubling to a minute. The dispatch consumer retries its events on the same schedule."""
    return backoff_seconds(retries + 1, base=1.0, cap=60.0)
