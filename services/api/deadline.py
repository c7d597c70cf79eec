"""Every /v1 and OFREP request begins its answer within REQUEST_TIMEOUT_SECONDS, whatever it waits for.

Each database wait has its own bound (connect, pool checkout, statement: see `db.py`), but a
request may wait several times (its key checked, its `Idempotency-Key` claimed, its route's
transaction) and the bounds would add up. One deadline per request bounds the sum: it is set
by the first layer that may wait (the access gate's slow path, or `Deadline` for the rest)
and kept in the ASGI scope, so later layers use what is left of it.

Time spent waiting for the request's body (a slow upload) is the client's, not the
service's: `Deadline` gives it back. Work that misses the deadline is cancelled and left to
finish alone: its cleanup (closing a connection to a server that does not answer) may take
longer still, and nobody waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import ofrep_general_error, problem

log = logging.getLogger(__name__)

T = TypeVar("T")

# The event loop's time by which the request must have begun its answer.
SCOPE_KEY = "agent_variants.deadline"
API_PREFIX = "/v1/"
# OpenFeature's evaluations (`/ofrep/v1/...`): the same deadline, answered in OFREP's shape.
OFREP_PREFIX = "/ofrep/"
BOUNDED = (API_PREFIX, OFREP_PREFIX)
RETRY_AFTER = {"Retry-After": "1"}

# Cancelled work still finishing its cleanup: referenced here so it is not collected midway.
_abandoned: set[asyncio.Task[Any]] = set()


def deadline_of(scope: Scope, seconds: float) -> float:
    """The request's deadline, set now (`seconds` from now) by the first layer that asks."""
    deadline = scope.get(SCOPE_KEY)
    if deadline is None:
        deadline = scope[SCOPE_KEY] = asyncio.get_running_loop().time() + seconds
    return float(deadline)


async def _settled(task: asyncio.Task[Any], deadline: float) -> bool:
    """Wait until `task` is done or the loop's clock passes `deadline`; whether it is done.
    (What `asyncio.wait` does, for one task, at two thirds of its cost.)"""
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_at(deadline, wake)
    try:
        await woken
    except asyncio.CancelledError:  # the request itself is cancelled (the server stops, say)
        task.cancel()
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


def _forget(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("work abandoned at its deadline then failed: %r", task.exception())


def _abandon(task: asyncio.Task[Any]) -> None:
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget)


async def within(deadline: float, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or TimeoutError once the event loop's clock passes `deadline` (the
    work is then cancelled and left to finish alone)."""
    task = asyncio.ensure_future(work)
    if not await _settled(task, deadline):
        _abandon(task)
        raise TimeoutError("no answer before the request's deadline")
    return task.result()


def _late(scope: Scope, path: str, seconds: float) -> Response:
    """The 503 of a request past its deadline: problem+json `service_unavailable` under /v1;
    under /ofrep OFREP's general error, `{"errorDetails"}` (what its clients read, and what the
    gate and the OFREP routes answer for a database that is unavailable)."""
    detail = (
        f"The request could not be answered within {seconds:g} s (the database is slow or unavailable); retry shortly"
    )
    if path.startswith(OFREP_PREFIX):
        return ofrep_general_error(503, detail, RETRY_AFTER)
    return problem("service_unavailable", detail, request=Request(scope), headers=RETRY_AFTER)


class Deadline:
    """ASGI layer: a request under /v1 or /ofrep (OpenFeature's evaluations) that has not
    begun its answer by its deadline is answered 503 with `Retry-After` (`_late`), and its
    work cancelled. Once an answer has begun (a watch stream's, say), it runs as long as it
    needs."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope) if scope.get("root_path") else scope["path"]
        if not path.startswith(BOUNDED):
            await self.app(scope, receive, send)
            return
        deadline = deadline_of(scope, self.seconds)
        loop = asyncio.get_running_loop()
        began = False
        late = False
        # Time spent waiting for the client's body does not count: the deadline bounds what
        # the service waits for (the database), and a slow upload is the client's time. Each
        # wait is given back as it ends, in the scope, where later layers read the deadline.
        waiting_since: float | None = None

        async def timed_receive() -> Message:
            nonlocal waiting_since
            waiting_since = loop.time()
            try:
                return await receive()
            finally:
                scope[SCOPE_KEY] += loop.time() - waiting_since
                waiting_since = None

        async def send_in_time(message: Message) -> None:
            nonlocal began
            if late:
                return  # answered 503 already: what the cancelled work still sends is dropped
            if message["type"] == "http.response.start":
                began = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, timed_receive, send_in_time))
        while not await _settled(task, deadline) and not began:
            if waiting_since is not None:  # still waiting for the client: that is its time too
                now = loop.time()
                scope[SCOPE_KEY] += now - waiting_since
                waiting_since = now
            if scope[SCOPE_KEY] <= deadline:
                break  # the service's own time is up
            deadline = scope[SCOPE_KEY]
        if task.done() or began:
            await task  # its result or its error; a begun answer (a stream) runs to its end
            return
        late = True
        _abandon(task)
        log.warning("%s %s not answered within %.1f s: answered 503", scope["method"], path, self.seconds)
        await _late(scope, path, self.seconds)(scope, receive, send)
