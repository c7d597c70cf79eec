"""One HTTP exchange with the service: the request, when to retry it, and what it means.

Both clients share everything here; only the waiting differs (`send` blocks,
`send_async` awaits). A request is retried only when a retry cannot do anything twice:

- a connection that was never made (nothing reached the service): any request;
- a 429 (the service did nothing): any request, after its `Retry-After`;
- a lost answer or 502/503/504: `GET`; `POST`, which always carries an
  `Idempotency-Key`, so the service answers a retry with the first response; and a
  `PATCH` without `If-Match` (a merge patch applied twice leaves the same state);
- 409 `idempotency_key_in_use`: the first attempt is still running; wait for it.

`DELETE` and conditional `PATCH` are not retried after they may have reached the service:
a second attempt would answer 404 or 412 for a change that did happen.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from agent_variants.errors import Unavailable, from_response, seconds_until

ATTEMPTS = 4
FIRST_DELAY = 0.2
# The longest `Retry-After` worth waiting for inside one call; longer, the caller decides.
MAX_RETRY_AFTER = 10.0


def new_idempotency_key() -> str:
    return "sdk-" + secrets.token_urlsafe(24)


def segment(ref: str) -> str:
    """An id or slug as one path segment (a slug never needs it; a stray `/` must not move the path)."""
    return quote(ref, safe="")


def etag(value: int | str) -> str:
    """An `If-Match` value: a version number becomes its strong ETag; `*` and quoted tags pass."""
    if isinstance(value, int):
        return f'"{value}"'
    return value if value == "*" or value.startswith(('"', 'W/"')) else f'"{value}"'


@dataclass(frozen=True)
class Call:
    """One request, as sent on every attempt (the idempotency key included)."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        if_match: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> Call:
        headers: dict[str, str] = {}
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or new_idempotency_key()
        if if_match is not None:
            headers["If-Match"] = etag(if_match)
        kept = {name: _param(value) for name, value in (params or {}).items() if value is not None}
        return cls(method, path, json, kept or None, headers)

    @property
    def replayable(self) -> bool:
        """Whether sending it again after it may have reached the service is harmless."""
        return self.method in ("GET", "POST") or (self.method == "PATCH" and "If-Match" not in self.headers)

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        if self.json is None:
            return client.build_request(self.method, self.path, params=self.params, headers=self.headers)
        return client.build_request(self.method, self.path, params=self.params, headers=self.headers, json=self.json)


def _param(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def wait_before_retry(
    call: Call, attempt: int, response: httpx.Response | None, error: Exception | None
) -> float | None:
    """Seconds to wait before attempt `attempt + 1`, or None: this attempt's result stands."""
    if attempt >= ATTEMPTS:
        return None
    backoff = FIRST_DELAY * 2.0 ** (attempt - 1) * (0.5 + random.random())
    if error is not None:
        never_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        return backoff if never_sent or call.replayable else None
    assert response is not None
    status = response.status_code
    if status == 409 and call.method == "POST" and _code(response) == "idempotency_key_in_use":
        return backoff
    # A 429 was not processed at all: any request may go again. A 5xx may have been.
    if status == 429 or (status in (502, 503, 504) and call.replayable):
        after = retry_after(response)
        if after is None:
            return backoff
        return after if after <= MAX_RETRY_AFTER else None
    return None


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date (RFC 9110); None if absent or unreadable."""
    return seconds_until(response.headers.get("retry-after"))


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def result(response: httpx.Response | None, error: Exception | None) -> Any:
    """The body of a successful answer (None for 204/304), or the typed error."""
    if error is not None:
        raise Unavailable(f"The service cannot be reached: {error!r}") from error
    assert response is not None
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise from_response(response.status_code, body, response.headers)
    if response.status_code in (204, 304) or not response.content:
        return None
    return response.json()


def send(client: httpx.Client, call: Call) -> Any:
    """Send `call`, retrying as the module says; its body, or the typed error."""
    attempt = 0
    while True:
        attempt += 1
        response, error = None, None
        try:
            response = client.send(call.request(client))
        except httpx.HTTPError as caught:
            error = caught
        wait = wait_before_retry(call, attempt, response, error)
        if wait is None:
            return result(response, error)
        time.sleep(wait)


async def send_async(client: httpx.AsyncClient, call: Call) -> Any:
    """`send`, awaiting instead of blocking."""
    attempt = 0
    while True:
        attempt += 1
        response, error = None, None
        try:
            response = await client.send(call.request(client))
        except httpx.HTTPError as caught:
            error = caught
        wait = wait_before_retry(call, attempt, response, error)
        if wait is None:
            return result(response, error)
        await asyncio.sleep(wait)
