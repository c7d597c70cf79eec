"""A write storm on one agent does not starve reads of the others (issue 16, item 5).

Writes to one agent queue on its row lock, each holding a pooled connection while it
waits. With one pool for everything, DB_POOL_SIZE blocked writers left reads of every
other agent waiting for a connection. A real `serve` process at the default pool sizes,
on a database of its own: the test holds agent A's row lock from its own connection,
sends DB_POOL_SIZE + 10 activations of A (all blocked), and while the lock is still held
reads agent B and B's (uncached) resolution. Then it lets the writers through.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api.settings import Settings
from tests.helpers import config
from tests.system.test_replicas import own_database, start, stop, wait_ready

pytestmark = pytest.mark.live

POOL_SIZE = Settings().db_pool_size
WRITERS = POOL_SIZE + 10
# Generous: the reads take milliseconds; before, they waited for a pooled connection.
PROMPTLY = 5.0


@pytest.fixture
async def database(server_url: str) -> AsyncIterator[str]:
    async with own_database(server_url, f"av_storm_{os.getpid()}") as url:
        yield url


async def created(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> dict[str, object]:
    response = await http.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_reads_of_other_agents_do_not_wait_for_writers_blocked_on_a_row_lock(
    database: str, tmp_path: Path
) -> None:
    # The writers wait on the lock longer than the default request deadline and pool wait
    # allow; raised here so every one of them can finish once it is released.
    server = start(
        "storm", database, tmp_path, migrate=True, REQUEST_TIMEOUT_SECONDS="60", DB_POOL_TIMEOUT_SECONDS="60"
    )
    own = create_async_engine(database, poolclass=NullPool)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await wait_ready(http, server)
            http.headers["Authorization"] = f"Bearer {(tmp_path / 'admin-key').read_text().strip()}"
            http.base_url = httpx.URL(server.url)
            a = await created(http, "/v1/agents", {"name": "Storm A", "config": config()})
            variants = [
                await created(http, f"/v1/agents/{a['id']}/variants", {"variant_name": f"v{i}"}) for i in range(2)
            ]
            b = await created(http, "/v1/agents", {"name": "Storm B", "config": config()})

            async with own.connect() as holder, own.connect() as watcher:
                lock = await holder.begin()
                await holder.execute(text("SELECT id FROM agents WHERE id = :id FOR UPDATE"), {"id": a["id"]})
                writers = [
                    asyncio.create_task(
                        http.post(f"/v1/agents/{a['id']}/variants/{variants[i % 2]['id']}/activate", timeout=60)
                    )
                    for i in range(WRITERS)
                ]
                # Every connection of the write pool is held by a writer waiting on the lock.
                waiting = text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                deadline = time.monotonic() + 20
                while (await watcher.scalar(waiting)) < POOL_SIZE:
                    assert time.monotonic() < deadline, server.output()
                    await watcher.commit()  # (a transaction sees pg_stat_activity as of its first look)
                    await asyncio.sleep(0.05)

                started = time.monotonic()
                agent = await http.get(f"/v1/agents/{b['id']}", timeout=PROMPTLY)
                resolved = await http.get(f"/v1/agents/{b['id']}/resolved", timeout=PROMPTLY)
                assert agent.status_code == 200, agent.text
                assert resolved.status_code == 200, resolved.text
                assert resolved.json()["agent_id"] == b["id"]
                assert time.monotonic() - started < PROMPTLY
                assert not any(writer.done() for writer in writers)  # the lock is still held
                await lock.rollback()

            answers = await asyncio.gather(*writers)
            refused = [r.text for r in answers if r.status_code != 200]
            assert not refused, refused
        async with own.connect() as conn:
            count = text("SELECT count(*) FROM activations WHERE agent_id = :id")
            assert await conn.scalar(count, {"id": a["id"]}) == 1
    finally:
        stop(server)
        await own.dispose()
