"""`watch.stream` in process: the race between a stream's first build and its subscription."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx

from services.api.db import Database
from services.api.resolution import bundle, watch
from tests.helpers import create_agent, create_variant


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
    first = await bundle.build(db, agent["id"])
    # The change commits, and is heard, after the first build but before the stream subscribes:
    # the hub tracks watched agents only, so it wakes no one.
    activated = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert activated.status_code == 200, activated.text
    hub.changed({agent["id"]})

    # The client already has the first bundle (Last-Event-ID): only the change may come.
    events = watch.stream(state_with(hub), db, first, first[1], None, ticks_before_first=ticks)
    try:
        chunk = await asyncio.wait_for(anext(events), 5)  # not the 15 s keepalive
    finally:
        await events.aclose()
    now = await bundle.build(db, agent["id"])
    assert now[1] != first[1]
    assert chunk.startswith(b"event: bundle\nid: " + now[1].encode() + b"\n"), chunk[:80]


async def test_without_a_change_in_between_the_client_is_not_sent_what_it_has(
    client: httpx.AsyncClient, db: Database
) -> None:
    agent = await create_agent(client)
    hub = watch.WatchHub()
    ticks = hub.ticks
    first = await bundle.build(db, agent["id"])
    events = watch.stream(state_with(hub), db, first, first[1], None, ticks_before_first=ticks)
    try:
        pending = asyncio.ensure_future(anext(events))
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "a stream sent the bundle the client said it has"
        hub.close()  # the server stops: the stream ends without another event
        with_close = await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 5)
        assert isinstance(with_close[0], StopAsyncIteration)
    finally:
        await events.aclose()
