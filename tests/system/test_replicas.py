"""Two real `agent-variants serve` processes on one database: cross-process invalidation.

A change made through one process is served by the other within the propagation bound;
killing a process's LISTEN connection (pg_terminate_backend) never leads to stale reads,
and the listener comes back. The processes run on a database of their own, dropped after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from services.api import embedded
from services.api.db import RESOLUTION_CHANNEL
from services.api.resolution.listener import APPLICATION_NAME
from tests.helpers import config, unique

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
# The contract's bound: after it, no process serves a config older than the last write.
PROPAGATION_BOUND = 1.0
ACTIVATIONS = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def listener_name(self) -> str:
        # With one worker, uvicorn serves in the process we started.
        return f"{APPLICATION_NAME} {self.process.pid}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Replicas:
    a: Server
    b: Server
    database: str
    conn: AsyncConnection  # the test's own, autocommit
    http: httpx.AsyncClient
    url: str  # the database's, for more servers


def start(
    name: str, database_url: str, log_dir: Path, *, migrate: bool, port: int | None = None, **settings: str
) -> Server:
    """A `serve` process (on `port`, else a free one; `settings` as environment variables);
    its output goes to `<name>.log`."""
    port = port or free_port()
    log = log_dir / f"{name}.log"
    # DATA_DIR: where the first server writes the admin key it makes on an empty database.
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning", "DATA_DIR": str(log_dir), **settings}
    command = [sys.executable, "-m", "services.api.cli", "serve", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command + ([] if migrate else ["--no-migrate"]), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Server(name, process, f"http://127.0.0.1:{port}", log)


@asynccontextmanager
async def own_database(server_url: str, name: str) -> AsyncIterator[str]:
    """A database of its own on the test server (made anew, dropped after): its URL."""
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield embedded.with_database(server_url, name)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


async def wait_ready(http: httpx.AsyncClient, server: Server, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert server.process.poll() is None, f"{server.name} exited:\n{server.output()}"
        try:
            if (await http.get(f"{server.url}/readyz", timeout=2)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{server.name} did not become ready:\n{server.output()}"
        await asyncio.sleep(0.1)


async def listener_pids(conn: AsyncConnection, database: str, server: Server) -> list[int]:
    """The backends of the server's LISTEN connection (normally one)."""
    rows = await conn.execute(
        text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :name"),
        {"db": database, "name": server.listener_name},
    )
    return [row.pid for row in rows]


async def wait_listening(replicas: Replicas, server: Server, *, not_pid: int | None = None, timeout: float = 10) -> int:
    """The pid of the server's listener backend once there is one (other than `not_pid`)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in await listener_pids(replicas.conn, replicas.database, server) if pid != not_pid]
        if pids:
            assert len(pids) == 1, pids
            return pids[0]
        assert time.monotonic() < deadline, f"{server.name} has no listener:\n{server.output()}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def replicas(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Replicas]:
    database = f"av_replicas_{os.getpid()}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = embedded.with_database(server_url, database)
    own = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    log_dir = tmp_path_factory.mktemp("replicas")
    servers: list[Server] = []
    try:
        async with httpx.AsyncClient(timeout=10) as http, own.connect() as conn:
            # The first one migrates; the second starts on the migrated database.
            servers.append(start("A", url, log_dir, migrate=True))
            await wait_ready(http, servers[0])
            # A found no key and made the first admin key: the test uses it everywhere.
            admin_secret = (log_dir / "admin-key").read_text().strip()
            assert admin_secret in servers[0].output()  # printed once, at that first start
            http.headers["Authorization"] = f"Bearer {admin_secret}"
            servers.append(start("B", url, log_dir, migrate=False))
            await wait_ready(http, servers[1])
            replicas = Replicas(servers[0], servers[1], database, conn, http, url)
            for server in servers:
                await wait_listening(replicas, server)
            yield replicas
    finally:
        for server in servers:
            stop(server)
        await own.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


# ----------------------------------------------------------------------------- helpers


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def setup_agent(replicas: Replicas) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    http, a = replicas.http, replicas.a.url
    agent = await ok(
        http.post(f"{a}/v1/agents", json={"name": unique("replicas"), "config": config(system_prompt="base")}), 201
    )
    variants = [
        await ok(
            http.post(
                f"{a}/v1/agents/{agent['id']}/variants",
                json={"variant_name": name, "overrides": {"prompt_version": name}},
            ),
            201,
        )
        for name in ("one", "two")
    ]
    return agent, variants


async def resolved(replicas: Replicas, server: Server, ref: str) -> dict[str, Any]:
    return await ok(replicas.http.get(f"{server.url}/v1/agents/{ref}/resolved"))


async def warm(replicas: Replicas, server: Server, ref: str) -> dict[str, Any]:
    """Resolve twice, so the server holds the answer in its cache (when it trusts it)."""
    first = await resolved(replicas, server, ref)
    assert await resolved(replicas, server, ref) == first
    return first


async def seen_within_bound(
    replicas: Replicas, server: Server, ref: str, expected: Any, field: str, *, written_at: float
) -> float:
    """Seconds from the write's response until `server` serves `expected`; then it stays."""
    while True:
        body = await resolved(replicas, server, ref)
        latency = time.perf_counter() - written_at
        if body[field] == expected:
            break
        assert latency < PROPAGATION_BOUND, f"{server.name} still serves {field}={body[field]!r} after {latency:.3f} s"
    for _ in range(3):  # never back to the old value
        assert (await resolved(replicas, server, ref))[field] == expected
    return latency


# ------------------------------------------------------------------------------- tests


async def test_the_other_process_serves_from_its_cache_until_told(replicas: Replicas) -> None:
    """Control: B really caches, so propagation below is NOTIFY at work, not a cache miss.

    A change committed without a NOTIFY (raw SQL, no service involved) is not seen by B;
    the NOTIFY alone makes B drop its entry."""
    agent, _ = await setup_agent(replicas)
    assert (await warm(replicas, replicas.b, agent["id"]))["system_prompt"] == "base"
    await replicas.conn.execute(text("UPDATE agents SET system_prompt = 'raw' WHERE id = :id"), {"id": agent["id"]})
    assert (await resolved(replicas, replicas.b, agent["id"]))["system_prompt"] == "base"
    await replicas.conn.execute(
        text("SELECT pg_notify(:channel, :id)"), {"channel": RESOLUTION_CHANNEL, "id": agent["id"]}
    )
    await seen_within_bound(replicas, replicas.b, agent["id"], "raw", "system_prompt", written_at=time.perf_counter())


async def test_activations_through_a_are_served_by_b_within_the_bound(replicas: Replicas) -> None:
    http, a, b = replicas.http, replicas.a, replicas.b
    agent, variants = await setup_agent(replicas)
    latencies = []
    for n in range(ACTIVATIONS):
        target = variants[n % 2]
        ref = agent["slug"] if n % 4 < 2 else agent["id"]
        previous = variants[(n + 1) % 2]["id"] if n else None
        assert (await warm(replicas, b, ref))["variant_id"] == previous
        await ok(http.post(f"{a.url}/v1/agents/{agent['id']}/variants/{target['id']}/activate"))
        written_at = time.perf_counter()
        # The process that took the write never serves the old config after its 200.
        assert (await resolved(replicas, a, ref))["variant_id"] == target["id"]
        latencies.append(await seen_within_bound(replicas, b, ref, target["id"], "variant_id", written_at=written_at))
    latencies.sort()
    print(
        f"propagation over {len(latencies)} activations: p50 {statistics.median(latencies) * 1000:.1f} ms,"
        f" max {latencies[-1] * 1000:.1f} ms"
    )
    assert latencies[-1] < PROPAGATION_BOUND


async def test_variant_and_agent_patches_propagate_both_ways(replicas: Replicas) -> None:
    http = replicas.http
    agent, variants = await setup_agent(replicas)
    await ok(http.post(f"{replicas.a.url}/v1/agents/{agent['id']}/variants/{variants[0]['id']}/activate"))
    for n in range(6):
        writer, reader = (replicas.a, replicas.b) if n % 2 == 0 else (replicas.b, replicas.a)
        # A variant PATCH ...
        await warm(replicas, reader, agent["slug"])
        await warm(replicas, writer, agent["slug"])
        version = f"patched {n}"
        await ok(
            http.patch(
                f"{writer.url}/v1/agents/{agent['id']}/variants/{variants[0]['id']}",
                json={"overrides": {"prompt_version": version}},
            )
        )
        written_at = time.perf_counter()
        assert (await resolved(replicas, writer, agent["slug"]))["prompt_version"] == version
        await seen_within_bound(replicas, reader, agent["slug"], version, "prompt_version", written_at=written_at)
        # ... and an agent PATCH.
        await warm(replicas, reader, agent["id"])
        await warm(replicas, writer, agent["id"])
        prompt = f"prompt {n}"
        await ok(http.patch(f"{writer.url}/v1/agents/{agent['id']}", json={"config": {"system_prompt": prompt}}))
        written_at = time.perf_counter()
        assert (await resolved(replicas, writer, agent["id"]))["system_prompt"] == prompt
        await seen_within_bound(replicas, reader, agent["id"], prompt, "system_prompt", written_at=written_at)


async def test_killing_the_listener_never_leads_to_stale_reads_and_it_comes_back(replicas: Replicas) -> None:
    http, a, b, conn = replicas.http, replicas.a, replicas.b, replicas.conn
    agent, variants = await setup_agent(replicas)
    activate = f"{a.url}/v1/agents/{agent['id']}/variants/{{}}/activate"
    await ok(http.post(activate.format(variants[0]["id"])))
    assert (await warm(replicas, b, agent["id"]))["variant_id"] == variants[0]["id"]

    killed = await wait_listening(replicas, b)
    terminated = await conn.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": killed})
    assert terminated is True

    # A change made while B's listener is gone: its NOTIFY cannot reach B.
    await ok(http.post(activate.format(variants[1]["id"])))
    written_at = time.perf_counter()
    await seen_within_bound(replicas, b, agent["id"], variants[1]["id"], "variant_id", written_at=written_at)

    # The listener comes back, on a new backend ...
    back = await wait_listening(replicas, b, not_pid=killed)
    assert back != killed
    # ... and B never served the old config meanwhile or since.
    for _ in range(5):
        assert (await resolved(replicas, b, agent["id"]))["variant_id"] == variants[1]["id"]

    # Once back, changes propagate again ...
    assert (await warm(replicas, b, agent["id"]))["variant_id"] == variants[1]["id"]
    await ok(http.post(activate.format(variants[0]["id"])))
    written_at = time.perf_counter()
    await seen_within_bound(replicas, b, agent["id"], variants[0]["id"], "variant_id", written_at=written_at)

    # ... through the cache B trusts again: a change without NOTIFY is not seen, its NOTIFY is.
    assert (await warm(replicas, b, agent["id"]))["system_prompt"] == "base"
    await conn.execute(text("UPDATE agents SET system_prompt = 'raw' WHERE id = :id"), {"id": agent["id"]})
    assert (await resolved(replicas, b, agent["id"]))["system_prompt"] == "base"
    await conn.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": RESOLUTION_CHANNEL, "id": agent["id"]})
    await seen_within_bound(replicas, b, agent["id"], "raw", "system_prompt", written_at=time.perf_counter())


async def test_both_listeners_killed_at_once_still_give_fresh_reads_on_both(replicas: Replicas) -> None:
    http, a, b, conn = replicas.http, replicas.a, replicas.b, replicas.conn
    agent, variants = await setup_agent(replicas)
    for server in (a, b):
        await wait_listening(replicas, server)
        await warm(replicas, server, agent["slug"])
    killed = await conn.scalars(
        text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name LIKE :name"),
        {"db": replicas.database, "name": f"{APPLICATION_NAME} %"},
    )
    pids = list(killed)
    assert len(pids) == 2
    for pid in pids:
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}) is True
    for n, (writer, reader) in enumerate(((b, a), (a, b))):
        target = variants[n]
        await ok(http.post(f"{writer.url}/v1/agents/{agent['id']}/variants/{target['id']}/activate"))
        written_at = time.perf_counter()
        assert (await resolved(replicas, writer, agent["slug"]))["variant_id"] == target["id"]
        await seen_within_bound(replicas, reader, agent["slug"], target["id"], "variant_id", written_at=written_at)
    for server in (a, b):
        await wait_listening(replicas, server, not_pid=None)
        assert not set(await listener_pids(conn, replicas.database, server)) & set(pids)


# --------------------------------------------------------------------------- API keys


async def status_with(replicas: Replicas, server: Server, secret: str, path: str) -> int:
    response = await replicas.http.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {secret}"})
    return response.status_code


async def refused_within_bound(
    replicas: Replicas, server: Server, secret: str, path: str, *, written_at: float
) -> float:
    """Seconds from the revocation's response until `server` refuses the key; then it stays refused."""
    while True:
        status = await status_with(replicas, server, secret, path)
        latency = time.perf_counter() - written_at
        if status == 401:
            break
        assert status == 200, status
        assert latency < PROPAGATION_BOUND, f"{server.name} still accepts the revoked key after {latency:.3f} s"
    for _ in range(3):
        assert await status_with(replicas, server, secret, path) == 401
    return latency


async def test_a_key_revoked_through_a_is_refused_by_b_within_the_bound(replicas: Replicas) -> None:
    http, a, b = replicas.http, replicas.a, replicas.b
    agent, _ = await setup_agent(replicas)
    path = f"/v1/agents/{agent['id']}/resolved"
    latencies = []
    for n in range(10):
        key = await ok(
            http.post(
                f"{a.url}/v1/keys", json={"name": f"{unique('revoked').replace(' ', '-')}-{n}", "scope": "resolve"}
            ),
            201,
        )
        # Made on A, the key works on B as soon as B has heard of it (NOTIFY), and on A at once.
        assert await status_with(replicas, a, key["secret"], path) == 200
        deadline = time.perf_counter() + PROPAGATION_BOUND
        while await status_with(replicas, b, key["secret"], path) != 200:
            assert time.perf_counter() < deadline, "B never accepted the new key"
        await warm(replicas, b, agent["id"])  # B holds the key and the resolution in memory
        response = await http.delete(f"{a.url}/v1/keys/{key['name']}")
        assert response.status_code == 204, response.text
        written_at = time.perf_counter()
        # The process that took the revocation refuses the key at once ...
        assert await status_with(replicas, a, key["secret"], path) == 401
        # ... and the other within the bound.
        latencies.append(await refused_within_bound(replicas, b, key["secret"], path, written_at=written_at))
    latencies.sort()
    print(
        f"revocation reached B in p50 {statistics.median(latencies) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )


async def test_with_its_listener_gone_b_still_refuses_a_key_revoked_meanwhile(replicas: Replicas) -> None:
    http, a, b, conn = replicas.http, replicas.a, replicas.b, replicas.conn
    agent, _ = await setup_agent(replicas)
    path = f"/v1/agents/{agent['id']}/resolved"
    key = await ok(
        http.post(f"{a.url}/v1/keys", json={"name": unique("outage").replace(" ", "-"), "scope": "read"}), 201
    )
    deadline = time.perf_counter() + PROPAGATION_BOUND
    while await status_with(replicas, b, key["secret"], path) != 200:
        assert time.perf_counter() < deadline, "B never accepted the new key"

    killed = await wait_listening(replicas, b)
    assert await conn.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": killed}) is True
    # Revoked while B cannot hear it: B must not go on trusting what it holds.
    assert (await http.delete(f"{a.url}/v1/keys/{key['id']}")).status_code == 204
    latency = await refused_within_bound(replicas, b, key["secret"], path, written_at=time.perf_counter())
    # Refused by asking the database, not by a reloaded ring: the listener only comes back
    # after its 0.5 s retry delay, which started when it was killed.
    assert latency < 0.25, latency
    await wait_listening(replicas, b, not_pid=killed)
    assert await status_with(replicas, b, key["secret"], path) == 401


async def test_a_listener_that_stops_answering_costs_no_stale_answer_beyond_the_bound(replicas: Replicas) -> None:
    """The silent failure: B's LISTEN connection stays open but its backend stops answering
    (SIGSTOP, as a network that drops packets without a reset would look). NOTIFYs no
    longer reach B; B must stop trusting its cache and its key ring within the bound."""
    http, a, b, conn = replicas.http, replicas.a, replicas.b, replicas.conn
    agent, variants = await setup_agent(replicas)
    path = f"/v1/agents/{agent['id']}/resolved"
    key = await ok(http.post(f"{a.url}/v1/keys", json={"name": unique("hung").replace(" ", "-"), "scope": "read"}), 201)
    deadline = time.perf_counter() + PROPAGATION_BOUND
    while await status_with(replicas, b, key["secret"], path) != 200:
        assert time.perf_counter() < deadline, "B never accepted the new key"
    await ok(http.post(f"{a.url}/v1/agents/{agent['id']}/variants/{variants[0]['id']}/activate"))
    await seen_within_bound(replicas, b, agent["id"], variants[0]["id"], "variant_id", written_at=time.perf_counter())
    await warm(replicas, b, agent["id"])

    hung = await wait_listening(replicas, b)
    os.kill(hung, signal.SIGSTOP)
    try:
        # Both changes right after the hang: B cannot hear either.
        assert (await http.delete(f"{a.url}/v1/keys/{key['id']}")).status_code == 204
        revoked_at = time.perf_counter()
        await ok(http.post(f"{a.url}/v1/agents/{agent['id']}/variants/{variants[1]['id']}/activate"))
        activated_at = time.perf_counter()
        await refused_within_bound(replicas, b, key["secret"], path, written_at=revoked_at)
        await seen_within_bound(replicas, b, agent["id"], variants[1]["id"], "variant_id", written_at=activated_at)
    finally:
        os.kill(hung, signal.SIGCONT)
        await conn.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": hung})
    await wait_listening(replicas, b, not_pid=hung)
