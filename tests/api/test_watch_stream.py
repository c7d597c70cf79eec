"""`watch.stream` in process: the race between a stream's first build and its subscription,
and what many streams of one key cost the database while the listener is down."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.access.keyring import KeyRing
from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.api.resolution import bundle, watch
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID as PROD
from tests.helpers import create_agent, create_variant, unique


def state_with(hub: watch.WatchHub) -> SimpleNamespace:
    # What `stream` reads of the app's state; no resolve cache means the listener is trusted.
    return SimpleNamespace(watch_hub=hub, watch_keepalive_seconds=15, resolve_cache=None, key_ring=None)


async def test_a_change_between_the_first_build_and_the_subscription_is_sent_at_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    hub = watch.WatchHub()
    ticks = hub.ticks
    first = await bundle.build(db, agent["id"], PROD)
    # The change commits, and is heard, after the first build but before the stream subscribes:
    # the hub tracks watched agents only, so it wakes no one.
    activated = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert activated.status_code == 200, activated.text
    hub.changed({agent["id"]})

    # The client already has the first bundle (Last-Event-ID): only the change may come.
    events = watch.stream(state_with(hub), db, first, PROD, first[1], None, ticks_before_first=ticks)
    try:
        chunk = await asyncio.wait_for(anext(events), 5)  # not the 15 s keepalive
    finally:
        await events.aclose()
    now = await bundle.build(db, agent["id"], PROD)
    assert now[1] != first[1]
    assert chunk.startswith(b"event: bundle\nid: " + now[1].encode() + b"\n"), chunk[:80]


async def test_without_a_change_in_between_the_client_is_not_sent_what_it_has(
    client: httpx.AsyncClient, db: Database
) -> None:
    agent = await create_agent(client)
    hub = watch.WatchHub()
    ticks = hub.ticks
    first = await bundle.build(db, agent["id"], PROD)
    events = watch.stream(state_with(hub), db, first, PROD, first[1], None, ticks_before_first=ticks)
    try:
        pending = asyncio.ensure_future(anext(events))
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "a stream sent the bundle the client said it has"
        hub.close()  # the server stops: the stream ends without another event
        with_close = await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 5)
        assert isinstance(with_close[0], StopAsyncIteration)
    finally:
        await events.aclose()


# ------------------------------------------------------------------ many streams, one key, no listener

STREAMS = 200


class CountingDatabase:
    """The key ring's database, counting the reads it is asked for."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.reads = 0

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        self.reads += 1
        return self.db.read()


async def open_streams(
    client: httpx.AsyncClient, db: Database, ring: KeyRing
) -> tuple[SimpleNamespace, list[AsyncIterator[bytes]], list[asyncio.Future[bytes]]]:
    """STREAMS streams of one agent and one resolve key, each past its first bundle and
    waiting, on a process whose listener is up."""
    agent = await create_agent(client)
    created = await keys_service.create_key(db, KeyCreate(name=unique("watcher").replace(" ", "-"), scope="resolve"))
    key = await ring.verify(created["secret"].encode())
    hub = watch.WatchHub()
    state = SimpleNamespace(
        watch_hub=hub, watch_keepalive_seconds=15, resolve_cache=SimpleNamespace(trusted=True), key_ring=ring
    )
    first = await bundle.build(db, agent["id"], PROD)
    streams = [watch.stream(state, db, first, PROD, None, key, ticks_before_first=hub.ticks) for _ in range(STREAMS)]
    for events in streams:
        assert (await anext(events)).startswith(b"event: bundle\n")
    waiting = [asyncio.ensure_future(anext(events)) for events in streams]
    await asyncio.sleep(0.05)
    return state, streams, waiting


def listener_drops(state: SimpleNamespace) -> None:
    """What `ResolutionListener` does when its connection is lost."""
    state.resolve_cache.trusted = False
    state.key_ring.listening = False
    state.watch_hub.changed_all()


async def close(streams: list[AsyncIterator[bytes]], waiting: list[asyncio.Future[bytes]]) -> None:
    for future in waiting:
        future.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    for events in streams:
        await events.aclose()  # type: ignore[attr-defined]


@pytest.mark.live  # concurrent reads need a pool, not the one rolled-back connection
async def test_streams_of_one_key_check_it_once_when_the_listener_drops(
    live_client: httpx.AsyncClient, live_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16, item 12: a dropped LISTEN connection wakes every stream to re-check its key
    against the database: one read per stream (thousands of transactions). Streams of one
    key now share one read per process."""
    monkeypatch.setattr(watch, "POLL_SECONDS", 60.0)  # this test is about the wake-up, not the polls
    counting = CountingDatabase(live_db)
    ring = KeyRing(lambda: counting, listening=True)  # type: ignore[arg-type, return-value]
    state, streams, waiting = await open_streams(live_client, live_db, ring)
    checks = 0
    still_valid = ring.still_valid

    async def counted(key: object) -> bool:
        nonlocal checks
        checks += 1
        return await still_valid(key)  # type: ignore[arg-type]

    ring.still_valid = counted  # type: ignore[method-assign]
    try:
        counting.reads = 0
        listener_drops(state)
        deadline = time.monotonic() + 30
        while checks < STREAMS:
            assert time.monotonic() < deadline, f"{checks} of {STREAMS} streams checked their key"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not any(future.done() for future in waiting)  # the key works: every stream goes on
        assert counting.reads == 1, f"{counting.reads} reads for {STREAMS} streams of one key"
    finally:
        await close(streams, waiting)


@pytest.mark.live
async def test_while_the_listener_is_down_streams_of_one_key_poll_it_once_a_second(
    live_client: httpx.AsyncClient, live_db: Database
) -> None:
    """Issue 16, item 12: while the listener is down each stream polls every second; streams
    of one key wake together, so a poll costs one read per key, not one per stream."""
    counting = CountingDatabase(live_db)
    ring = KeyRing(lambda: counting, listening=True)  # type: ignore[arg-type, return-value]
    state, streams, waiting = await open_streams(live_client, live_db, ring)
    try:
        counting.reads = 0
        listener_drops(state)
        started = time.monotonic()
        await asyncio.sleep(2.5)
        polls = time.monotonic() - started  # whole seconds: polls on the grid, plus the wake-up
        assert not any(future.done() for future in waiting)
        print(f"{counting.reads} key reads in {polls:.1f} s for {STREAMS} streams of one key")
        assert counting.reads <= int(polls) + 2, f"{counting.reads} reads in {polls:.1f} s for {STREAMS} streams"
    finally:
        await close(streams, waiting)


async def test_streams_opening_together_share_one_first_build() -> None:
    """Thousands of watch streams reconnecting at once cost one bundle build, so they all
    begin their answer in time (the herd in tests/system/test_watch.py: 2,000 streams of one
    agent queued 2,000 builds on a pool of 20, and most waited past the pool's timeout)."""
    hub = watch.WatchHub()
    builds: list[str] = []
    release = asyncio.Event()

    async def build(ref: str) -> tuple[bytes, str, str]:
        builds.append(ref)
        number = len(builds)
        await release.wait()
        return b"{}", f"etag-{number}", "agt_1"

    together = [asyncio.ensure_future(hub.first("support-bot", PROD, build)) for _ in range(100)]
    await asyncio.sleep(0)
    hub.changed({"agt_other"})  # a change heard while that build runs: later streams build again
    after_change = asyncio.ensure_future(hub.first("support-bot", PROD, build))
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*together)
    assert builds == ["support-bot", "support-bot"]
    assert set(results) == {((b"{}", "etag-1", "agt_1"), 0)}  # one build, as of ticks 0
    assert await after_change == ((b"{}", "etag-2", "agt_1"), 1)
    await hub.first("support-bot", PROD, build)  # finished builds are not reused
    assert len(builds) == 3


# ------------------------------------------------------------------ the fan-out (issue 17)


class FakeBuilds:
    """`bundle.build` for streams of agent agt_1: each build returns the etag set now (or
    raises what is set), and is counted."""

    def __init__(self, etag: str) -> None:
        self.etag = etag
        self.fail: Exception | None = None
        self.calls = 0

    async def __call__(self, _db: object, _agent: str, _environment: str) -> tuple[bytes, str, str]:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        return b'{"etag": "' + self.etag.encode() + b'"}', self.etag, "agt_1"


def open_fake_streams(hub: watch.WatchHub, count: int) -> list[AsyncIterator[bytes]]:
    """`count` streams whose client has bundle e1, the one they were opened on."""
    first = (b'{"etag": "e1"}', "e1", "agt_1")
    return [
        watch.stream(state_with(hub), None, first, PROD, "e1", None, ticks_before_first=hub.ticks) for _ in range(count)
    ]  # type: ignore[arg-type]


async def test_a_change_is_built_once_and_its_bytes_written_to_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """One build per change, one encoding: every stream writes the same bytes object."""
    builds = FakeBuilds("e2")
    monkeypatch.setattr(watch.bundle, "build", builds)
    hub = watch.WatchHub()
    streams = open_fake_streams(hub, 100)
    waiting = [asyncio.ensure_future(anext(events)) for events in streams]
    try:
        await asyncio.sleep(0.05)
        assert hub.watchers == 100
        hub.changed({"agt_1"})
        chunks = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        assert builds.calls == 1
        assert chunks[0] == b'event: bundle\nid: e2\ndata: {"etag": "e2"}\n\n'
        assert all(chunk is chunks[0] for chunk in chunks)
    finally:
        await close(streams, waiting)


async def test_a_change_heard_twice_or_changing_nothing_wakes_no_stream_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit is heard from the commit and from its NOTIFY: the second build finds the
    same etag and sends nothing; a change that leaves the bundle as it was sends nothing."""
    builds = FakeBuilds("e1")
    monkeypatch.setattr(watch.bundle, "build", builds)
    hub = watch.WatchHub()
    streams = open_fake_streams(hub, 10)
    waiting = [asyncio.ensure_future(anext(events)) for events in streams]
    try:
        await asyncio.sleep(0.05)
        hub.changed({"agt_1"})  # the bundle is still e1
        await asyncio.sleep(0.1)
        assert builds.calls == 1 and not any(future.done() for future in waiting)
        builds.etag = "e2"
        hub.changed({"agt_1"})  # the commit
        await asyncio.sleep(0.1)
        hub.changed({"agt_1"})  # its NOTIFY
        await asyncio.sleep(0.1)
        assert builds.calls == 3
        assert all(future.result().startswith(b"event: bundle\nid: e2\n") for future in waiting)
        again = [asyncio.ensure_future(anext(events)) for events in streams]
        waiting += again
        await asyncio.sleep(0.1)
        assert not any(future.done() for future in again), "a stream was sent e2 twice"
    finally:
        await close(streams, waiting)


async def test_a_failed_build_is_tried_again_and_the_streams_stay_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database failing the build of a change ends no stream: the build is tried again
    RETRY_SECONDS later, and the streams get the change then."""
    builds = FakeBuilds("e2")
    builds.fail = ConnectionError("the database went away")
    monkeypatch.setattr(watch.bundle, "build", builds)
    monkeypatch.setattr(watch, "RETRY_SECONDS", 0.1)
    hub = watch.WatchHub()
    streams = open_fake_streams(hub, 3)
    waiting = [asyncio.ensure_future(anext(events)) for events in streams]
    try:
        await asyncio.sleep(0.05)
        hub.changed({"agt_1"})
        await asyncio.sleep(0.05)
        assert builds.calls == 1 and not any(future.done() for future in waiting)
        chunks = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        assert builds.calls == 2
        assert all(chunk.startswith(b"event: bundle\nid: e2\n") for chunk in chunks)
    finally:
        await close(streams, waiting)


async def test_the_collector_waits_until_the_streams_have_written_the_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection of thousands of streams' objects paused the process for about 280 ms
    in mid fan-out (bench/watch.py): the collector is off while the woken streams write, and
    as it was before (on, or off) once they have."""
    builds = FakeBuilds("e1")
    monkeypatch.setattr(watch.bundle, "build", builds)
    for enabled_before in (True, False):
        hub = watch.WatchHub()
        streams = open_fake_streams(hub, 5)
        writing: list[bool] = []

        async def read(events: AsyncIterator[bytes], writing: list[bool] = writing) -> bytes:
            chunk = await anext(events)
            writing.append(gc.isenabled())  # in the step that wrote the chunk
            return chunk

        waiting = [asyncio.ensure_future(read(events)) for events in streams]
        (gc.enable if enabled_before else gc.disable)()
        try:
            await asyncio.sleep(0.05)
            builds.etag = f"e2-{enabled_before}"
            hub.changed({"agt_1"})
            await asyncio.wait_for(asyncio.gather(*waiting), 5)
            assert writing == [False] * 5
            await asyncio.sleep(0)
            assert gc.isenabled() is enabled_before
        finally:
            gc.enable()
            await close(streams, waiting)
