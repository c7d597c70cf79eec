"""OFREP's evaluations are bounded by REQUEST_TIMEOUT_SECONDS as /v1 is: a database that does
not answer (here, a real one: its `agents` table locked by another transaction) gives a 503
in OFREP's shape, in time, and the stalled query is cancelled.

tests/system/test_frozen_database.py checks the same of a real server on a frozen PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import admin_key, bearer, create_agent, settings_for_tests, unique

pytestmark = pytest.mark.live

SECONDS = 0.5  # REQUEST_TIMEOUT_SECONDS here
BOUND = 5.0  # generous: a request that hangs shows as a failure after this long, not a stuck test
EVALUATE = "/ofrep/v1/evaluate/flags"
# Queries of this database waiting for a lock: the stalled evaluation's, until it is cancelled.
WAITING = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")


@pytest.fixture
async def slow(live_url: str) -> AsyncIterator[Database]:
    """The app's database: statements may wait far longer than the request's deadline."""
    database = Database.from_url(live_url, pool_size=4, max_overflow=0, statement_timeout_seconds=30)
    yield database
    await database.dispose()


@pytest.fixture
async def http(slow: Database, live_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for_tests(request_timeout_seconds=SECONDS), database=slow)
    secret = await admin_key(live_db, unique("ofrep-deadline").replace(" ", "-"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=bearer(secret)) as client:
        yield client


async def stalled(live_db: Database, request: Any) -> tuple[httpx.Response, float]:
    """The answer to `request` (a coroutine) while another transaction holds `agents`
    locked, how long it took; the lock is held until the stalled query has gone."""
    assert live_db.engine is not None
    holder: AsyncConnection
    async with live_db.engine.connect() as holder, holder.begin():
        await holder.execute(text("LOCK TABLE agents IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        response = await asyncio.wait_for(request, BOUND)
        elapsed = time.monotonic() - started
        # Its work was cancelled: the query no longer waits for the lock (held still).
        async with live_db.engine.connect() as watcher:
            while await watcher.scalar(WAITING):
                assert time.monotonic() - started < BOUND, "the stalled query was not cancelled"
                await asyncio.sleep(0.05)
    return response, elapsed


def assert_ofrep_unavailable(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"  # OFREP's shape, not problem+json
    assert response.headers["retry-after"] == "1"
    assert set(response.json()) == {"errorDetails"}
    assert f"within {SECONDS:g} s" in response.json()["errorDetails"]
    assert SECONDS <= elapsed < BOUND, elapsed


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_an_evaluation_the_database_stalls_is_a_503_in_ofreps_shape_in_time(
    http: httpx.AsyncClient, live_db: Database, bulk: bool
) -> None:
    agent = await create_agent(http)  # not resolved yet: its evaluation must query
    url = EVALUATE if bulk else f"{EVALUATE}/{agent['slug']}"
    context: dict[str, Any] = {"targetingKey": "user-42", **({"agents": [agent["slug"]]} if bulk else {})}
    response, elapsed = await stalled(live_db, http.post(url, json={"context": context}))
    assert_ofrep_unavailable(response, elapsed)
    # The database answers again: so does OFREP, as before.
    again = await http.post(url, json={"context": context})
    assert again.status_code == 200, again.text
    evaluated = again.json()["flags"][0] if bulk else again.json()
    assert evaluated["key"] == agent["slug"] and evaluated["reason"] == "DEFAULT"


async def test_v1_keeps_its_problem_under_the_same_stall(http: httpx.AsyncClient, live_db: Database) -> None:
    agent = await create_agent(http)
    response, elapsed = await stalled(live_db, http.get(f"/v1/agents/{agent['id']}/resolved"))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "service_unavailable"
    assert SECONDS <= elapsed < BOUND, elapsed
