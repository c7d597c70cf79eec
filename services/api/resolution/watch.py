"""Watching an agent's bundle: one in-memory hub per process fans changes out to streams.

The same signals that invalidate the resolve cache reach the hub: this process's commits
and the listener's NOTIFYs (any replica's changes). Per watched agent the hub keeps a
channel: the bundle as its streams send it, encoded once as the event's bytes, and the
streams waiting on it. A change costs one bundle build per agent, and wakes the agent's
streams only if the bundle's etag changed (a commit is heard twice, from the commit and
from its NOTIFY: the second build finds the same etag and wakes nobody); each woken stream
writes the shared bytes. A key change or a listener reconnect wakes every stream (to check
its key). Nothing is polled per watcher while the listener is up.

With 3,000 streams a process holds some 650,000 objects (about 210 per stream: uvicorn's,
Starlette's and FastAPI's, and ours), and a full collection of them pauses it for about
280 ms (on the bench's 2 cores). What each fan-out leaves alive (every stream's next wait)
brings the next full collection closer, so waiting allocates as little as it can (no task
or new timer per wait), and while a change's streams write their event the collector is
held off: the collection that falls due then runs after the last of them has written
(bench/README.md, "Watch streams").
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from services.api.db import ALL_AGENTS, Database, parse_changes
from services.api.principal import Principal
from services.api.resolution import bundle
from services.shared.agent_config import AgentNotFound, EnvironmentNotFound

Build = Callable[[str], Awaitable[tuple[bytes, str, str]]]
# A channel: one agent (by id) in one environment (as the streams name it, or the default's id).
ChannelKey = tuple[str, str]

log = logging.getLogger(__name__)

# Every hub of this process, so the server's shutdown can end every stream.
_HUBS: weakref.WeakSet[WatchHub] = weakref.WeakSet()

# While the listener is down, changes are not heard: streams re-read this often, all at
# once (on a grid of the event loop's clock), so the key ring checks each key once per poll.
POLL_SECONDS = 1.0
# A stream whose key expires wakes this long after `expires_at` (its key is then refused).
EXPIRY_MARGIN_SECONDS = 0.01
# A bundle build that failed (the database, say) is tried again this long after.
RETRY_SECONDS = 1.0


class CollectorHold:
    """Keeps the garbage collector off while fan-outs run (it is on again, as it was, when
    the last ends). Collection is only postponed: the work happens just after."""

    def __init__(self) -> None:
        self.holds = 0
        self.restore = False

    def hold(self) -> None:
        if self.holds == 0:
            self.restore = gc.isenabled()
            gc.disable()
        self.holds += 1

    def release(self) -> None:
        self.holds -= 1
        if self.holds == 0 and self.restore:
            gc.enable()


COLLECTOR = CollectorHold()


def bundle_event(payload: bytes, etag: str) -> bytes:
    return b"event: bundle\nid: " + etag.encode() + b"\ndata: " + payload + b"\n\n"


class Watcher:
    """One stream's wake-ups: the hub (a change, a key change, the end) or its timer."""

    __slots__ = ("woken", "_waiter", "_timer", "_timer_at")

    def __init__(self) -> None:
        self.woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def wake(self) -> None:
        self.woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _ring(self) -> None:
        self._timer = None
        self.wake()

    async def wait(self, until: float) -> None:
        """Until woken, or the loop's clock reaches `until`. The timer is kept when it rings
        no later than `until`: a deadline that moved later (the keepalive, after an event)
        costs one early wake-up instead of a new timer after every change."""
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer_at > until + 0.001:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(until, self._ring)
            self._timer_at = until
        if not self.woken:
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.woken = False

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Channel:
    """One watched agent: its bundle as its streams send it, and the streams."""

    __slots__ = ("watchers", "event", "etag", "as_of", "deleted", "build", "dirty", "refreshing")

    def __init__(self, event: bytes, etag: str, as_of: int, build: Build) -> None:
        self.watchers: set[Watcher] = set()
        self.event = event  # the `bundle` event's bytes, shared by every stream
        self.etag = etag
        self.as_of = as_of  # the hub's `ticks` when the build behind `event` began
        self.deleted = False
        self.build = build
        self.dirty = False
        self.refreshing: asyncio.Task[None] | None = None

    def wake(self) -> None:
        for watcher in self.watchers:
            watcher.wake()

    def fan_out(self) -> None:
        """Wake the streams to send a new event, the collector held off until they have
        written it: each woken stream writes in its first step (unless its client reads too
        slowly), and those steps run before a callback scheduled after them."""
        COLLECTOR.hold()
        try:
            self.wake()
        finally:
            asyncio.get_running_loop().call_soon(COLLECTOR.release)


class WatchHub:
    def __init__(self) -> None:
        self._channels: dict[ChannelKey, Channel] = {}
        # Per agent reference (id or slug) and environment, the first bundle being built for
        # streams opening now.
        self._firsts: dict[tuple[str, str], tuple[int, asyncio.Future[tuple[bytes, str, str]]]] = {}
        # Counts every change heard, watched agent or not: a stream whose first bundle was
        # built before its subscription compares it, so a change in between is not missed.
        self.ticks = 0
        self.closing = False
        _HUBS.add(self)

    def subscribe(
        self,
        watcher: Watcher,
        first: tuple[bytes, str, str],
        environment: str,
        build: Build,
        *,
        ticks_before_first: int,
    ) -> Channel:
        """Join the channel of `first`'s agent in the environment (made from `first` if nobody
        watches it yet). If a change was heard since `first` was built, the bundle is built
        again. `build` builds the bundle of an agent id in that environment."""
        payload, etag, agent_id = first
        key = (agent_id, environment)
        channel = self._channels.get(key)
        if channel is None or channel.deleted:  # a deleted channel's streams are ending: start anew
            channel = self._channels[key] = Channel(bundle_event(payload, etag), etag, ticks_before_first, build)
            if self.ticks != ticks_before_first:
                self._refresh(key, channel)  # the agent was not watched: its change was not followed
        elif ticks_before_first > channel.as_of and etag != channel.etag and not channel.deleted:
            # Newer than what the channel sends (its own build is still running): send it now.
            channel.event, channel.etag, channel.as_of = bundle_event(payload, etag), etag, ticks_before_first
            channel.wake()
        channel.watchers.add(watcher)
        return channel

    def unsubscribe(self, key: ChannelKey, channel: Channel, watcher: Watcher) -> None:
        channel.watchers.discard(watcher)
        if not channel.watchers and self._channels.get(key) is channel:
            del self._channels[key]  # nobody watches this agent there any more: keep nothing of it

    @property
    def watchers(self) -> int:
        return sum(len(channel.watchers) for channel in self._channels.values())

    def changed(self, agent_ids: set[str]) -> None:
        """These agents' resolution may have changed (`db.resolution_change` payloads: an
        agent id, or an agent id with one environment; `ALL_AGENTS`): build their bundles in
        the environments concerned again, and wake their streams if a bundle differs."""
        if ALL_AGENTS in agent_ids:
            self.changed_all()
            return
        self.ticks += 1
        changed = parse_changes(agent_ids)
        for key, channel in list(self._channels.items()):  # only watched agents are tracked
            if key[0] in changed:
                environments = changed[key[0]]
                if environments is None or key[1] in environments:
                    self._refresh(key, channel)

    def changed_all(self, _ids: set[str] | None = None) -> None:
        """Anything may have changed (a key, a listener reconnect): build every watched
        bundle again and wake every stream (each checks its key)."""
        self.changed({agent_id for agent_id, _ in self._channels})
        for channel in list(self._channels.values()):
            channel.wake()

    def close(self) -> None:
        """The server is stopping: every stream ends."""
        self.closing = True
        for channel in list(self._channels.values()):
            channel.wake()

    def _refresh(self, key: ChannelKey, channel: Channel) -> None:
        channel.dirty = True
        if channel.refreshing is None and not channel.deleted:
            channel.refreshing = asyncio.ensure_future(self._refreshing(key, channel))

    async def _refreshing(self, key: ChannelKey, channel: Channel) -> None:
        """Build the agent's bundle until no change was heard during a build; each build that
        differs from what the channel sends is sent (a storm of changes never starves the
        streams). A deletion is final; any other failure is tried again RETRY_SECONDS later."""
        failures = 0
        try:
            agent_id = key[0]
            while channel.dirty and self._channels.get(key) is channel and not self.closing:
                channel.dirty = False
                as_of = self.ticks
                try:
                    payload, etag, _ = await channel.build(agent_id)
                except (AgentNotFound, EnvironmentNotFound):  # gone: the stream ends
                    channel.deleted = True
                    channel.wake()
                    return
                except Exception as error:  # noqa: BLE001 - the streams wait for the next try
                    failures += 1
                    level = logging.WARNING if failures == 1 else logging.DEBUG  # once per outage
                    log.log(level, "building the bundle of %s for its watch streams failed: %s", agent_id, error)
                    channel.dirty = True
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                failures = 0
                if as_of < channel.as_of:
                    continue  # a stream brought a newer one meanwhile
                channel.as_of = as_of
                if etag != channel.etag:
                    channel.event, channel.etag = bundle_event(payload, etag), etag
                    channel.fan_out()
        finally:
            channel.refreshing = None

    async def first(self, agent: str, environment: str, build: Build) -> tuple[tuple[bytes, str, str], int]:
        """A new stream's first bundle, and the `ticks` it was built as of. Streams opening
        together share one build: thousands reconnecting at once cost one, not one each
        queued for the pool past its timeout and the request deadline. A build that started
        before a change was heard is not joined."""
        key = (agent, environment)
        running = self._firsts.get(key)
        if running is None or running[0] != self.ticks:
            running = (self.ticks, asyncio.ensure_future(build(agent)))
            self._firsts[key] = running
            running[1].add_done_callback(functools.partial(self._first_done, key, running))
        return await asyncio.shield(running[1]), running[0]

    def _first_done(
        self,
        key: tuple[str, str],
        running: tuple[int, asyncio.Future[tuple[bytes, str, str]]],
        future: asyncio.Future[Any],
    ) -> None:
        if self._firsts.get(key) is running:  # only streams opening meanwhile share it
            del self._firsts[key]
        if not future.cancelled():
            future.exception()  # its waiters have it; none left must not make it "never retrieved"


def close_all() -> None:
    """End every stream of this process (called as the server starts to shut down)."""
    for hub in list(_HUBS):
        hub.close()


async def stream(
    state: Any,
    db: Database,
    first: tuple[bytes, str, str],
    environment: str,
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
    loop = asyncio.get_running_loop()
    agent_id = first[2]
    watcher = Watcher()
    channel = hub.subscribe(
        watcher,
        first,
        environment,
        lambda agent: bundle.build(db, agent, environment),
        ticks_before_first=ticks_before_first,
    )
    sent = last_event_id
    quiet_since = loop.time()  # the loop's clock: the one its timers run on
    try:
        while True:
            if channel.deleted:
                yield b'event: deleted\ndata: {"agent_id": "' + agent_id.encode() + b'"}\n\n'
                return
            if channel.etag != sent:
                yield channel.event
                sent, quiet_since = channel.etag, loop.time()
            now = loop.time()
            until = quiet_since + keepalive
            if not getattr(state.resolve_cache, "trusted", True):
                until = min(until, now + POLL_SECONDS - now % POLL_SECONDS)
            if key is not None and key.expires_at is not None:
                # Nothing announces an expiry: wake for it, so the stream ends then, not at
                # the next keepalive (`expires_at` is a Unix time).
                until = min(until, now + key.expires_at - time.time() + EXPIRY_MARGIN_SECONDS)
            await watcher.wait(until)
            if hub.closing:
                return
            if key is not None and not await state.key_ring.still_valid(key):
                return
            if loop.time() - quiet_since >= keepalive:
                yield b": keepalive\n\n"
                quiet_since = loop.time()
    finally:
        watcher.stop()
        hub.unsubscribe((agent_id, environment), channel, watcher)


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
