"""`agent-variants serve --workers N`: N processes, each with its own cache and listener.

One real server with two uvicorn workers on a database of its own: PostgreSQL sees one
LISTEN connection per worker (named after the worker's pid, a child of the server), and
a change made through whichever worker takes it is served by every worker within the
propagation bound, caches included.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api import embedded
from services.api.resolution.listener import APPLICATION_NAME
from tests.helpers import config, unique
from tests.system.test_replicas import PROPAGATION_BOUND, Server, free_port, stop, wait_ready

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2


@pytest.fixture(scope="module")
async def served(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Server, str]]:
    database = f"av_workers_{os.getpid()}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = embedded.with_database(server_url, database)
    log = tmp_path_factory.mktemp("workers") / "server.log"
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "warning", "DATA_DIR": str(log.parent)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.api.cli", "serve", "--port", str(port), "--workers", str(WORKERS)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("workers", process, f"http://127.0.0.1:{port}", log)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_ready(http, server)
        # The first start made an admin key (once, in the supervisor, not per worker).
        yield server, database, (log.parent / "admin-key").read_text().strip()
    finally:
        stop(server)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


async def listeners(server_url: str, database: str) -> list[str]:
    engine = create_async_engine(server_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT application_name FROM pg_stat_activity WHERE datname = :db AND application_name LIKE :p"),
                {"db": database, "p": f"{APPLICATION_NAME} %"},
            )
            return sorted(row.application_name for row in rows)
    finally:
        await engine.dispose()


async def test_each_worker_keeps_its_own_listener(served: tuple[Server, str, str], server_url: str) -> None:
    server, database, _ = served
    deadline = time.monotonic() + 15
    while len(names := await listeners(server_url, database)) < WORKERS:
        assert time.monotonic() < deadline, f"listeners: {names}\n{server.output()}"
        await asyncio.sleep(0.1)
    pids = {int(name.rsplit(" ", 1)[1]) for name in names}
    children = {child.pid for child in psutil.Process(server.process.pid).children(recursive=True)}
    # One per worker, each in a worker process of this server, none in the supervisor.
    assert len(names) == WORKERS and len(pids) == WORKERS, names
    assert pids <= children and server.process.pid not in pids, (pids, children)


async def test_a_change_reaches_every_workers_cache(served: tuple[Server, str, str]) -> None:
    server, _, secret = served
    base = server.url
    key = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(timeout=10, headers=key) as http:
        agent = (await http.post(f"{base}/v1/agents", json={"name": unique("workers"), "config": config()})).json()
        variants = []
        for name in ("one", "two"):
            response = await http.post(
                f"{base}/v1/agents/{agent['id']}/variants",
                json={"variant_name": name, "overrides": {"prompt_version": name}},
            )
            assert response.status_code == 201, response.text
            variants.append(response.json())

    async def fresh_get() -> dict:
        # A new connection each time, so the kernel spreads the requests over the workers.
        async with httpx.AsyncClient(timeout=10, headers=key) as one:
            response = await one.get(f"{base}/v1/agents/{agent['slug']}/resolved")
            assert response.status_code == 200, response.text
            return response.json()

    for round_, variant in enumerate(variants * 2):
        for _ in range(20):  # warm the caches of the workers
            await fresh_get()
        async with httpx.AsyncClient(timeout=10, headers=key) as http:
            response = await http.post(f"{base}/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
            assert response.status_code == 200, response.text
        written = time.perf_counter()
        while True:
            seen = [(await fresh_get())["variant_id"] for _ in range(20)]
            if set(seen) == {variant["id"]}:
                break
            assert time.perf_counter() - written < PROPAGATION_BOUND, (round_, seen)
        # And after the bound, no worker ever serves the old one again.
        await asyncio.sleep(max(0.0, PROPAGATION_BOUND - (time.perf_counter() - written)))
        assert {(await fresh_get())["variant_id"] for _ in range(20)} == {variant["id"]}


async def test_metrics_sum_every_worker(served: tuple[Server, str, str]) -> None:
    """GET /metrics reaches one worker and answers for both: each worker publishes its
    counts to the shared PROMETHEUS_MULTIPROC_DIR that `serve` made, so every scrape,
    whichever worker answers it, gives the same totals."""
    from prometheus_client.parser import text_string_to_metric_families

    server, _, secret = served
    base = server.url
    key = {"Authorization": f"Bearer {secret}"}
    resolved = ("agent_variants_http_requests_total", "/v1/agents/{agent}/resolved", "GET", "200")

    async def scrape() -> dict[tuple[str, ...], float]:
        async with httpx.AsyncClient(timeout=10, headers=key) as one:  # a new connection: any worker
            response = await one.get(f"{base}/metrics")
            assert response.status_code == 200, response.text
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = sample.labels
                samples[(sample.name, *(labels[k] for k in ("route", "method", "status") if k in labels))] = (
                    sample.value
                )
        return samples

    async with httpx.AsyncClient(timeout=10, headers=key) as http:
        agent = (await http.post(f"{base}/v1/agents", json={"name": unique("metrics"), "config": config()})).json()
    await asyncio.sleep(1.5)  # every worker has published what earlier tests made
    before = (await scrape()).get(resolved, 0)
    count = 40
    for _ in range(count):
        async with httpx.AsyncClient(timeout=10, headers=key) as one:
            assert (await one.get(f"{base}/v1/agents/{agent['slug']}/resolved")).status_code == 200
    async with (
        httpx.AsyncClient(timeout=10, headers=key) as watching,
        watching.stream("GET", f"{base}/v1/agents/{agent['slug']}/bundle/watch") as stream,
    ):
        assert stream.status_code == 200
        deadline = time.monotonic() + 10
        while True:  # the other worker publishes within a second
            scrapes = [await scrape() for _ in range(6)]
            totals = {s.get(resolved, 0) - before for s in scrapes}
            gauges = {
                (
                    s[("agent_variants_workers",)],
                    s[("agent_variants_listener_connected",)],
                    s[("agent_variants_watch_streams",)],
                )
                for s in scrapes
            }
            if totals == {count} and gauges == {(WORKERS, WORKERS, 1)}:
                break
            assert time.monotonic() < deadline, (totals, gauges)
            await asyncio.sleep(0.3)


async def test_a_killed_workers_counts_stay_and_its_gauges_go(served: tuple[Server, str, str]) -> None:
    """kill -9 of a worker: its counters stay in the sums (a counter never goes back), its
    gauges leave them (uvicorn starts a new worker, which adds its own)."""
    from prometheus_client.parser import text_string_to_metric_families

    server, _, secret = served
    key = {"Authorization": f"Bearer {secret}"}

    async def scrape() -> tuple[float, float]:
        async with httpx.AsyncClient(timeout=10, headers=key) as one:
            response = await one.get(f"{server.url}/metrics")
            assert response.status_code == 200, response.text
        total = workers = 0.0
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "agent_variants_http_requests_total":
                    total += sample.value
                elif sample.name == "agent_variants_workers":
                    workers = sample.value
        return total, workers

    await asyncio.sleep(1.5)  # every worker has published
    before, workers = await scrape()
    assert workers == WORKERS
    workers_now = [c for c in psutil.Process(server.process.pid).children() if "spawn_main" in " ".join(c.cmdline())]
    victim = workers_now[0]
    victim.kill()
    victim.wait(10)
    deadline = time.monotonic() + 30
    while True:
        total, workers = await scrape()
        assert total >= before, (total, before)  # the dead worker's counts are still summed
        if workers == WORKERS and victim.pid not in {c.pid for c in psutil.Process(server.process.pid).children()}:
            break
        assert time.monotonic() < deadline, f"workers {workers}\n{server.output()}"
        await asyncio.sleep(0.3)
