"""Exactly once across a crash (issue 16, item 4): a server killed after a POST's change
committed and before its idempotent response was stored. The client had the 201; its retry
under the same Idempotency-Key, once the claim's lease is over, gets that response again
and never makes a second object. The kill is a failpoint (`services/api/failpoints.py`):
the process ends at that instant as `kill -9` ends it, which a signal cannot aim at."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.helpers import config
from tests.system.test_replicas import own_database, start, stop, wait_ready

FAILPOINT = "idempotency.before_storing_the_response"


@pytest.fixture
async def database(server_url: str) -> AsyncIterator[str]:
    async with own_database(server_url, f"av_crash_{os.getpid()}") as url:
        yield url


async def test_a_retry_after_a_crash_between_commit_and_stored_response_acts_once(
    database: str, tmp_path: Path
) -> None:
    own = create_async_engine(database, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    dying = start("dying", database, tmp_path, migrate=True, FAILPOINTS=FAILPOINT)
    servers = [dying]
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_ready(http, dying)
            secret = (tmp_path / "admin-key").read_text().strip()
            http.headers["Authorization"] = f"Bearer {secret}"
            body = {"name": "Crash test", "config": config()}
            headers = {"Idempotency-Key": "create-crash-test"}
            first = await http.post(f"{dying.url}/v1/agents", json=body, headers=headers)
            assert first.status_code == 201  # the client has its answer; then the process dies
            assert dying.process.wait(timeout=10) == 137
            async with own.connect() as conn:
                count = text("SELECT count(*) FROM agents WHERE name = 'Crash test'")
                assert await conn.scalar(count) == 1  # the change committed
                state = await conn.scalar(text("SELECT state FROM idempotency_keys"))
                assert state == "in_flight"  # and no response was stored
                # The lease of the dead process's claim runs out (60 s; here at once).
                await conn.execute(text("UPDATE idempotency_keys SET locked_until = now() - interval '1 second'"))

            fresh = start("fresh", database, tmp_path, migrate=True)
            servers.append(fresh)
            await wait_ready(http, fresh)
            retry = await http.post(f"{fresh.url}/v1/agents", json=body, headers=headers)
            assert retry.status_code == 201, retry.text
            async with own.connect() as conn:
                assert await conn.scalar(count) == 1, "the retry made a second agent"
                stored_id = await conn.scalar(text("SELECT id FROM agents WHERE name = 'Crash test'"))
            assert retry.json()["id"] == stored_id == first.json()["id"]
            assert retry.headers["location"] == f"/v1/agents/{stored_id}"
            # From now on the stored response is replayed, as for any retry.
            again = await http.post(f"{fresh.url}/v1/agents", json=body, headers=headers)
            assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
            assert again.json() == retry.json()
    finally:
        for server in servers:
            stop(server)
        await own.dispose()
