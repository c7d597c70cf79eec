"""A database that stops answering (frozen with SIGSTOP) never hangs a request.

A real `serve` process runs on an embedded PostgreSQL of its own (never the suite's shared
one). The test freezes that PostgreSQL, every process of it, and checks that each kind of
wait is bounded: `/readyz` answers 503 within 2 s; an uncached read, a write, a write with an
`Idempotency-Key` and a request whose key the ring must check in the database each answer
503 `service_unavailable` with `Retry-After` within 5 s, and OFREP's evaluations (single and
bulk) a 503 in OFREP's shape with `Retry-After` as soon (here the resolver's pool gives up
connecting first; tests/api/test_ofrep_deadline.py stalls one past the deadline itself). A
cached resolution is served from memory while the listener still trusts the cache, and no
longer once the listener has noticed (its ping: within 1 s). After SIGCONT, everything works
again.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from services.api import embedded
from services.api.db import asyncpg_dsn
from services.api.resolution.listener import APPLICATION_NAME
from tests.helpers import bearer, config, unique
from tests.system.test_replicas import Server, start, stop, wait_ready

pytestmark = pytest.mark.live

READY_BOUND = 2.0  # /readyz
REQUEST_BOUND = 5.0  # any /v1 or OFREP request
LISTENER_BOUND = 1.0  # the listener notices a silent database (ping_seconds + ping_timeout)
# The client gives up well after the bounds, so a hang shows as a slow failure, not a stuck test.
CLIENT_TIMEOUT = 12.0
DATABASE = "agent_variants"


@dataclass
class Frozen:
    server: Server
    postgres_pid: int
    dsn: str  # asyncpg's, for the test's own checks
    admin: str  # the first admin key's secret


@contextmanager
def frozen(postmaster: int) -> Iterator[None]:
    """PostgreSQL stopped dead (postmaster first, so it forks no new backend, then every
    backend), then resumed whatever happens."""
    stopped: list[psutil.Process] = []
    try:
        main = psutil.Process(postmaster)
        main.suspend()
        stopped.append(main)
        for child in main.children(recursive=True):
            child.suspend()
            stopped.append(child)
        yield
    finally:
        for process in reversed(stopped):
            try:
                process.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Frozen]:
    # Its own PostgreSQL, in a directory the server's unprivileged user can enter (pytest's
    # tmp_path is private to us), so freezing it stops nobody else's tests.
    data = Path(tempfile.mkdtemp(prefix="av-frozen-"))
    data.chmod(0o755)
    postgres = embedded.start(data / "postgres")
    url = embedded.ensure_database(postgres, DATABASE)
    server = start("frozen", url, tmp_path, migrate=True)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_ready(http, server)
        yield Frozen(server, postgres.get_pid(), asyncpg_dsn(url), (tmp_path / "admin-key").read_text().strip())
    finally:
        # Whatever the test did, PostgreSQL runs again before the server is asked to stop.
        for process in [psutil.Process(postgres.get_pid()), *psutil.Process(postgres.get_pid()).children(True)]:
            process.send_signal(signal.SIGCONT)
        stop(server)
        postgres.cleanup()
        shutil.rmtree(data, ignore_errors=True)


async def wait_listening(frozen_db: Frozen, *, timeout: float = 15) -> None:
    """Until the server's LISTEN connection is up (so it trusts its cache and key ring)."""
    name = f"{APPLICATION_NAME} {frozen_db.server.process.pid}"
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(frozen_db.dsn)
    try:
        while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name):
            assert time.monotonic() < deadline, f"no listener:\n{frozen_db.server.output()}"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    await asyncio.sleep(0.2)  # it trusts the cache right after LISTEN


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response | None, float]:
    """The response (None when the client gave up) and how long it took."""
    started = time.monotonic()
    try:
        response: httpx.Response | None = await request
    except httpx.TimeoutException:
        response = None
    return response, time.monotonic() - started


def unavailable(what: str, answer: tuple[httpx.Response | None, float], *, bound: float, code: str) -> None:
    response, seconds = answer
    assert response is not None, f"{what}: no answer after {seconds:.1f} s (bound {bound} s)"
    assert seconds < bound, f"{what}: answered {response.status_code} after {seconds:.1f} s (bound {bound} s)"
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    assert response.json()["code"] == code, f"{what}: {response.text}"
    assert response.headers.get("retry-after"), f"{what}: no Retry-After"


def ofrep_unavailable(what: str, answer: tuple[httpx.Response | None, float]) -> None:
    response, seconds = answer
    assert response is not None, f"{what}: no answer after {seconds:.1f} s (bound {REQUEST_BOUND} s)"
    assert seconds < REQUEST_BOUND, f"{what}: answered {response.status_code} after {seconds:.1f} s"
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == "application/json", what  # OFREP's shape, not problem+json
    assert set(response.json()) == {"errorDetails"}, f"{what}: {response.text}"
    assert response.headers.get("retry-after"), f"{what}: no Retry-After"


async def test_a_frozen_database_answers_503_within_the_bounds_and_service_resumes(served: Frozen) -> None:
    base = served.server.url
    async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT, headers=bearer(served.admin)) as http:
        cached = (await http.post("/v1/agents", json={"name": unique("cached"), "config": config()})).json()
        uncached = (await http.post("/v1/agents", json={"name": unique("uncached"), "config": config()})).json()
        keyed_body = {"name": unique("keyed"), "config": config()}
        reader = await http.post("/v1/keys", json={"name": "frozen-reader", "scope": "read"})
        assert reader.status_code == 201, reader.text
        read_key = bearer(reader.json()["secret"])
        await wait_listening(served)
        for _ in range(3):  # the answer is cached, the reader's key in the ring
            assert (await http.get(f"/v1/agents/{cached['id']}/resolved")).status_code == 200
            assert (await http.get("/v1/agents", headers=read_key)).status_code == 200

        with frozen(served.postgres_pid):
            # Right after the freeze the listener has not noticed yet: the cache is trusted.
            hit, hit_seconds = await timed(http.get(f"/v1/agents/{cached['id']}/resolved"))
            assert hit is not None and hit.status_code == 200, hit and hit.text
            assert hit_seconds < 0.5, f"a cached resolution took {hit_seconds:.1f} s"
            answers = await asyncio.gather(
                timed(http.get("/readyz")),
                timed(http.get(f"/v1/agents/{uncached['id']}/resolved")),
                timed(http.get(f"/v1/agents/{uncached['id']}")),
                timed(http.post("/v1/agents", json={"name": unique("write"), "config": config()})),
                timed(http.post("/v1/agents", json=keyed_body, headers={"Idempotency-Key": "frozen-1"})),
                timed(http.post(f"/ofrep/v1/evaluate/flags/{uncached['slug']}", json={"context": {}})),
                timed(http.post("/ofrep/v1/evaluate/flags", json={"context": {"agents": [uncached["slug"]]}})),
            )
            ready, resolve, read, write, keyed, evaluate, evaluate_bulk = answers
            whats = ("readyz", "resolve", "read", "write", "keyed write", "OFREP", "OFREP bulk")
            report = ", ".join(
                f"{what} {a[0].status_code if a[0] is not None else 'no answer'} in {a[1]:.2f} s"
                for what, a in zip(whats, answers, strict=True)
            )
            print(f"frozen: {report}")
            unavailable("/readyz", ready, bound=READY_BOUND, code="not_ready")
            unavailable("an uncached resolution", resolve, bound=REQUEST_BOUND, code="service_unavailable")
            unavailable("an uncached read", read, bound=REQUEST_BOUND, code="service_unavailable")
            unavailable("a write", write, bound=REQUEST_BOUND, code="service_unavailable")
            unavailable("a write with an Idempotency-Key", keyed, bound=REQUEST_BOUND, code="service_unavailable")
            ofrep_unavailable("an OFREP evaluation", evaluate)
            ofrep_unavailable("an OFREP bulk evaluation", evaluate_bulk)

            # By now the listener has noticed (its ping timed out): nothing it holds is
            # trusted, so the cached answer is not served and every key is checked in the
            # database, which does not answer.
            gone, checked = await asyncio.gather(
                timed(http.get(f"/v1/agents/{cached['id']}/resolved")),
                timed(http.get("/v1/agents", headers=read_key)),
            )
            print(f"after the listener noticed: cached {gone[1]:.2f} s, key check {checked[1]:.2f} s")
            unavailable("a formerly cached resolution", gone, bound=REQUEST_BOUND, code="service_unavailable")
            unavailable("a key the ring must check", checked, bound=REQUEST_BOUND, code="service_unavailable")

        # Resumed: everything works again, the listener included (the cache serves again).
        thawed = time.monotonic()
        async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT) as fresh:
            while (await fresh.get("/readyz")).status_code != 200:
                assert time.monotonic() - thawed < 10, "not ready 10 s after SIGCONT"
                await asyncio.sleep(0.1)
        await wait_listening(served)
        print(f"ready again {time.monotonic() - thawed:.2f} s after SIGCONT")
        assert (await http.get(f"/v1/agents/{cached['id']}/resolved")).status_code == 200
        assert (await http.get(f"/v1/agents/{uncached['id']}/resolved")).status_code == 200
        evaluated = await http.post(f"/ofrep/v1/evaluate/flags/{uncached['slug']}", json={"context": {}})
        assert evaluated.status_code == 200, evaluated.text
        assert (await http.get("/v1/agents", headers=read_key)).status_code == 200
        created = await http.post("/v1/agents", json={"name": unique("after"), "config": config()})
        assert created.status_code == 201, created.text
        # The keyed write that met the outage was not stored: its retry runs now.
        retried = await http.post("/v1/agents", json=keyed_body, headers={"Idempotency-Key": "frozen-1"})
        assert retried.status_code == 201, retried.text
