"""Watching an agent's bundle: one in-memory hub per process fans changes out to streams.

Each `GET .../bundle/watch` stream subscribes an `asyncio.Event` under its agent's id. The
same signals that invalidate the resolve cache wake it: this process's commits and the
listener's NOTIFYs (any replica's changes); a key change or a listener reconnect wakes
every stream. Nothing is polled per watcher while the listener is up, and a change costs
one bundle build per agent, shared by all of that agent's streams.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from services.api.db import Database
from services.api.principal import Principal
from services.api.resolution import bundle
from services.shared.agent_config import AgentNotFound

Build = Callable[[str], Awaitable[tuple[bytes, str, str]]]

# Every hub of this process, so the server's shutdown can end every stream.
_HUBS: weakref.WeakSet[WatchHub] = weakref.WeakSet()


class WatchHub:
    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self._versions: dict[str, int] = {}
        self._builds: dict[str, tuple[int, asyncio.Future[tuple[bytes, str, str]]]] = {}
        # Per agent reference (id or slug), the first bundle being built for streams opening now.
        self._firsts: dict[str, tuple[int, asyncio.Future[tuple[bytes, str, str]]]] = {}
        # Counts every change heard, watched agent or not: a stream whose first bundle was
        # built before its subscription compares it, so a change in between is not missed.
        self.ticks = 0
        self.closing = False
        _HUBS.add(self)

    def subscribe(self, agent_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(agent_id, set()).add(event)
        return event

    def unsubscribe(self, agent_id: str, event: asyncio.Event) -> None:
        events = self._events.get(agent_id)
        if events is not None:
            events.discard(event)
            if not events:  # nobody watches this agent any more: keep nothing of it
                del self._events[agent_id]
                self._versions.pop(agent_id, None)
                self._builds.pop(agent_id, None)

    @property
    def watchers(self) -> int:
        return sum(len(events) for events in self._events.values())

    def changed(self, agent_ids: set[str]) -> None:
        """These agents' resolution may have changed: wake their streams."""
        self.ticks += 1
        for agent_id in agent_ids:
            events = self._events.get(agent_id)
            if not events:
                continue  # only watched agents are tracked
            self._versions[agent_id] = self._versions.get(agent_id, 0) + 1
            for event in events:
                event.set()

    def changed_all(self, _ids: set[str] | None = None) -> None:
        """Anything may have changed (a key, a listener reconnect): wake every stream."""
        self.changed(set(self._events))

    def close(self) -> None:
        """The server is stopping: every stream ends."""
        self.closing = True
        self.changed_all()

    async def first(self, agent: str, build: Build) -> tuple[tuple[bytes, str, str], int]:
        """A new stream's first bundle, and the `ticks` it was built as of. Streams opening
        together share one build: thousands reconnecting at once cost one, not one each
        queued for the pool past its timeout and the request deadline. A build that started
        before a change was heard is not joined."""
        running = self._firsts.get(agent)
        if running is None or running[0] != self.ticks:
            running = (self.ticks, asyncio.ensure_future(build(agent)))
            self._firsts[agent] = running
            running[1].add_done_callback(functools.partial(self._first_done, agent, running))
        return await asyncio.shield(running[1]), running[0]

    def _first_done(
        self, agent: str, running: tuple[int, asyncio.Future[tuple[bytes, str, str]]], future: asyncio.Future[Any]
    ) -> None:
        if self._firsts.get(agent) is running:  # only streams opening meanwhile share it
            del self._firsts[agent]
        if not future.cancelled():
            future.exception()  # its waiters have it; none left must not make it "never retrieved"

    async def latest(self, agent_id: str, build: Build) -> tuple[bytes, str, str]:
        """The agent's bundle as of now: one build per agent and change, however many
        streams ask (a build that started before the last change is not reused)."""
        version = self._versions.get(agent_id, 0)
        running = self._builds.get(agent_id)
        failed = (
            running is not None
            and running[1].done()
            and (
                running[1].cancelled()
                or isinstance(running[1].exception(), Exception)
                and not isinstance(running[1].exception(), AgentNotFound)
            )
        )
        if running is None or running[0] != version or failed:  # a failure is retried, a deletion is final
            future = asyncio.ensure_future(build(agent_id))
            self._builds[agent_id] = (version, future)
            running = (version, future)
        return await asyncio.shield(running[1])


def close_all() -> None:
    """End every stream of this process (called as the server starts to shut down)."""
    for hub in list(_HUBS):
        hub.close()


# While the listener is down, changes are not heard: streams re-read this often, all at
# once (on a grid of the event loop's clock), so the key ring checks each key once per poll.
POLL_SECONDS = 1.0
# A stream whose key expires wakes this long after `expires_at` (its key is then refused).
EXPIRY_MARGIN_SECONDS = 0.01


async def stream(
    state: Any,
    db: Database,
    first: tuple[bytes, str, str],
    last_event_id: str | None,
    key: Principal | None,
    *,
    ticks_before_first: int,
) -> AsyncIterator[bytes]:
    """The events of one watch: `bundle` when the bundle differs from what the client has,
    `: keepalive` when quiet, `deleted` (and the end) when the agent is gone. The stream
    also ends when the server stops or the key that opened it stops working (revoked, or
    expired: the stream wakes at the key's `expires_at`).

    `first` was built before the stream could subscribe (its agent id comes from it), as
    of `ticks_before_first`: if any change was heard since, it is built again at once."""
    hub: WatchHub = state.watch_hub
    keepalive: float = state.watch_keepalive_seconds  # WATCH_KEEPALIVE_SECONDS
    payload, etag, agent_id = first
    event = hub.subscribe(agent_id)
    if hub.ticks != ticks_before_first:
        event.set()  # a change landed between the first build and the subscription
    sent = last_event_id
    quiet_since = time.monotonic()
    try:
        while True:
            if etag != sent:
                yield b"event: bundle\nid: " + etag.encode() + b"\ndata: " + payload + b"\n\n"
                sent, quiet_since = etag, time.monotonic()
            trusted = getattr(state.resolve_cache, "trusted", True)
            wait = keepalive - (time.monotonic() - quiet_since)
            if not trusted:
                # The loop's clock: the one its timers (and `wait_for`'s deadline) run on.
                wait = min(wait, POLL_SECONDS - asyncio.get_running_loop().time() % POLL_SECONDS)
            if key is not None and key.expires_at is not None:
                # Nothing announces an expiry: wake for it, so the stream ends then, not at
                # the next keepalive (`expires_at` is a Unix time).
                wait = min(wait, key.expires_at - time.time() + EXPIRY_MARGIN_SECONDS)
            try:
                await asyncio.wait_for(event.wait(), timeout=max(0.0, wait))
            except TimeoutError:
                pass
            event.clear()  # before reading: a change from now on wakes us again
            if hub.closing:
                return
            if key is not None and not await state.key_ring.still_valid(key):
                return
            if time.monotonic() - quiet_since >= keepalive:
                yield b": keepalive\n\n"
                quiet_since = time.monotonic()
            try:
                payload, etag, _ = await hub.latest(agent_id, lambda agent: bundle.build(db, agent))
            except AgentNotFound:
                yield b'event: deleted\ndata: {"agent_id": "' + agent_id.encode() + b'"}\n\n'
                return
    finally:
        hub.unsubscribe(agent_id, event)


def end_streams_when_the_server_stops() -> None:
    """Make uvicorn's exit signal (SIGTERM, SIGINT) end every watch stream.

    uvicorn finishes in-flight responses before it shuts the app down, and a watch never
    finishes by itself, so without this `serve` would hang until killed. The same approach
    as sse-starlette: wrap `Server.handle_exit`. Called when the CLI module loads, which
    is before uvicorn installs its handlers, in the server process and in each worker.
    """
    from uvicorn.server import Server

    if getattr(Server.handle_exit, "ends_watches", False):
        return
    original = Server.handle_exit

    def handle_exit(self: Server, sig: int, frame: Any) -> None:
        original(self, sig, frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(close_all)

    handle_exit.ends_watches = True  # type: ignore[attr-defined]
    Server.handle_exit = handle_exit  # type: ignore[method-assign]
