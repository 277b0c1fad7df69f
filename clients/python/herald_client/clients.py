"""The clients services use: the generated operations (:mod:`herald_client.aio`,
:mod:`herald_client.sync`) with a bearer token or API key, retries on ``RATE_LIMITED`` and
``UNAVAILABLE`` (honouring ``retryAfterSeconds``), and an idempotency key on every event that
has none, so a retried send is delivered once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from herald_client import aio, sync
from herald_client.retries import RETRIED_CODES, RETRIED_STATUSES, backoff, retry_delay

Token = str | Callable[[], str]
Event = TypeVar("Event", aio.EventInput, sync.EventInput)


def _with_key(event: Event) -> Event:
    if event.idempotency_key:
        return event
    return event.model_copy(update={"idempotency_key": uuid.uuid4().hex})


def _endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/graphql") else f"{url}/graphql"


class _Retrying:
    """What both clients share: their options, the token per request and the retry policy.
    ``_http_class`` makes the HTTP client when none is given."""

    _http_class: Callable[..., Any]

    def __init__(
        self,
        url: str,
        *,
        token: Token,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | httpx.Client | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._token = token
        self.max_attempts = max_attempts
        self._base = backoff_base
        self._cap = backoff_cap
        # The generated client's; httpx's client is what its protocol describes, in looser types.
        super().__init__(  # type: ignore[call-arg]
            url=_endpoint(url), http_client=http_client or self._http_class(timeout=timeout)
        )

    def _request_headers(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        token = self._token() if callable(self._token) else self._token
        return {
            **kwargs,
            "headers": {"Authorization": f"Bearer {token}", **kwargs.get("headers", {})},
        }

    def _delay(self, response: Any, attempt: int) -> float | None:
        if attempt >= self.max_attempts:
            return None
        if response.status_code not in RETRIED_STATUSES and not any(
            code.encode() in response.content for code in RETRIED_CODES
        ):
            # Final without reading it: the generated client parses the body once, after this.
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        return retry_delay(
            response.status_code, response.headers, body, attempt, base=self._base, cap=self._cap
        )


class HeraldClient(_Retrying, aio.Client):
    """Herald for asyncio services::

        async with HeraldClient("https://herald.example.com", token=api_key) as herald:
            result = await herald.send_event(EventInput(type="user_registered", user_ids=["u1"]))
            if isinstance(result.send_event, SendEventSendEventEventAccepted): ...

    ``token`` is a bearer token or API key, or a function returning a fresh one per request.
    """

    _http_class = httpx.AsyncClient

    async def execute(
        self,
        query: str,
        operation_name: str | None = None,
        variables: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> aio.async_base_client.Response:
        attempt = 1
        while True:
            try:
                response = await super().execute(
                    query, operation_name, variables, **self._request_headers(kwargs)
                )
            except httpx.ConnectError:
                # Nothing was sent: as safe to repeat as an UNAVAILABLE answer.
                if attempt >= self.max_attempts:
                    raise
                delay: float | None = backoff(attempt, base=self._base, cap=self._cap)
            else:
                delay = self._delay(response, attempt)
                if delay is None:
                    return response
            await asyncio.sleep(delay or 0.0)
            attempt += 1

    async def send_event(self, input: aio.EventInput, **kwargs: Any) -> aio.SendEvent:
        """Send one event; an idempotency key is added when the input has none."""
        return await super().send_event(_with_key(input), **kwargs)

    async def send_events(self, inputs: list[aio.EventInput], **kwargs: Any) -> aio.SendEvents:
        """Send up to a batch of events at once, each with an idempotency key."""
        return await super().send_events([_with_key(event) for event in inputs], **kwargs)


class HeraldSyncClient(_Retrying, sync.Client):
    """Herald for blocking code: the same operations, results and retries as
    :class:`HeraldClient`."""

    _http_class = httpx.Client

    def execute(
        self,
        query: str,
        operation_name: str | None = None,
        variables: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> sync.base_client.Response:
        attempt = 1
        while True:
            try:
                response = super().execute(
                    query, operation_name, variables, **self._request_headers(kwargs)
                )
            except httpx.ConnectError:
                if attempt >= self.max_attempts:
                    raise
                delay: float | None = backoff(attempt, base=self._base, cap=self._cap)
            else:
                delay = self._delay(response, attempt)
                if delay is None:
                    return response
            time.sleep(delay or 0.0)
            attempt += 1

    def send_event(self, input: sync.EventInput, **kwargs: Any) -> sync.SendEvent:
        """Send one event; an idempotency key is added when the input has none."""
        return super().send_event(_with_key(input), **kwargs)

    def send_events(self, inputs: list[sync.EventInput], **kwargs: Any) -> sync.SendEvents:
        """Send up to a batch of events at once, each with an idempotency key."""
        return super().send_events([_with_key(event) for event in inputs], **kwargs)
