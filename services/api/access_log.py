"""The access log: one line per request, written in batches off the request's path.

uvicorn's access log makes a `logging` record per request and writes it at once, through
the handler's lock, on the event loop: on a cache hit that cost about 45% of the request
(issue 17). Here a request only appends a tuple; a flusher formats the lines every
`FLUSH_SECONDS` and writes them in one call, on a worker thread, so a slow reader of the
log (a full pipe) never stalls a request. The lines read like uvicorn's, with the time the
answer took:

    INFO:     127.0.0.1:53712 - "GET /v1/agents/support/resolved HTTP/1.1" 200 0.4ms

Request lines are redacted like every other line (`log_redaction`). When the log cannot
keep up, lines beyond `MAX_PENDING` are dropped and counted (said in the next batch)
rather than held without bound. The last lines are written when the server shuts down.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import IO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.log_redaction import redact

FLUSH_SECONDS = 0.2
MAX_PENDING = 200_000
# What may hold a credential (`log_redaction` decides): a key's prefix, an Authorization-like
# value, a parameter whose name is a credential's (every name `log_redaction` redacts holds
# one of these, or is percent-encoded). Most request lines hold none (an agent's
# `?subject=user-42`) and skip the redaction's three regexes, which cost about 4 us a line.
# tests/api/test_access_log.py holds that a line this skips is one redaction leaves alone.
_MAYBE_SECRET = re.compile(r"avk|bearer|basic|key|token|secret|pass|pwd|auth|credential|jwt|session|sig|%")


def maybe_secret(target: str) -> bool:
    """Whether `target` may hold something `log_redaction.redact` would change. (Searched
    in lower case: an IGNORECASE alternation costs ten times as much.)"""
    return _MAYBE_SECRET.search(target.lower()) is not None


# Lines formatted between two turns of the event loop: a flush never holds it for long
# (formatting 8,000 lines at once held requests up to 8 ms, the p99 of a cached resolve).
CHUNK = 256

Pending = tuple[tuple[str, int] | None, str, str, bytes, str, int, float]


# A line's start by (client, method, path, query, version): agents repeat the same request
# on kept-alive connections, and the start costs more than the rest to format.
_starts: dict[tuple[tuple[str, int] | None, str, str, bytes, str], str] = {}
_STARTS_MAX = 4096
# Longer request lines are formatted every time: 4,096 cached megabyte URLs would hold GBs.
_CACHED_TARGET_MAX = 512


def line(entry: Pending) -> str:
    client, method, path, query, version, status, seconds = entry
    key = (client, method, path, query, version)
    start = _starts.get(key)
    if start is None:
        target = f"{path}?{query.decode('latin-1')}" if query else path
        if maybe_secret(target):
            target = redact(target)
        who = f"{client[0]}:{client[1]}" if client else "-"
        start = f'INFO:     {who} - "{method} {target} HTTP/{version}" '
        if len(target) <= _CACHED_TARGET_MAX:
            if len(_starts) >= _STARTS_MAX:
                _starts.clear()
            _starts[key] = start
    return f"{start}{status} {seconds * 1000:.1f}ms\n"


class AccessLog:
    """ASGI layer, outermost: notes each HTTP request's line when its handling ends."""

    def __init__(self, app: ASGIApp, *, stream: IO[str] | None = None) -> None:
        self.app = app
        self.stream = stream  # default: the process's stdout at write time (as uvicorn's)
        self.pending: list[Pending] = []
        self._batch: list[Pending] = []  # taken by the flusher, not yet formatted
        self._formatted: list[str] = []  # formatted by the flusher, not yet written
        self.dropped = 0
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self._flushing_at_shutdown(send))
            else:
                await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self.note(scope, status, began)

    def note(self, scope: Scope, status: int, began: float) -> None:
        """A request's line, to be written with the next batch: `status` is what was sent (0:
        no answer began, as when the client left), `began` its `time.perf_counter()` at the
        start. The resolve fast path, which answers in front of this layer, notes its own."""
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append(
            (
                scope.get("client"),
                scope["method"],
                scope["path"],
                scope["query_string"],
                scope["http_version"],
                status,
                time.perf_counter() - began,
            )
        )
        if self._flusher is None or self._flusher.done():  # none yet, or ended with a lifespan
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    def _flushing_at_shutdown(self, send: Send) -> Send:
        async def flushing(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                if self._flusher is not None:
                    self._flusher.cancel()
                self._write(self._take())
            await send(message)

        return flushing

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            # The batch being formatted stays on the instance (`_batch`, `_formatted`), so a
            # shutdown that cancels this task mid-batch still writes all of it (`_take`).
            self._batch, self.pending = self.pending, []
            while self._batch:
                chunk, self._batch = self._batch[:CHUNK], self._batch[CHUNK:]
                self._formatted.append("".join(map(line, chunk)))
                await asyncio.sleep(0)  # let requests in between chunks
            text = "".join(self._formatted) + self._dropped_note()
            self._formatted = []
            if text:
                await asyncio.to_thread(self._write, text)

    def _take(self) -> str:
        """Every line not yet written, formatted at once, and taken off (at shutdown): what
        a cancelled flush was formatting, then the pending lines."""
        batch, self._batch, self.pending = [*self._batch, *self.pending], [], []
        formatted, self._formatted = "".join(self._formatted), []
        return formatted + "".join(map(line, batch)) + self._dropped_note()

    def _dropped_note(self) -> str:
        if not self.dropped:
            return ""
        note = f"WARNING:  {self.dropped} access log lines dropped: the log was not read fast enough\n"
        self.dropped = 0
        return note

    def _write(self, text: str) -> None:
        if not text:
            return
        stream = self.stream or sys.stdout
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout: nothing else to tell
            pass
