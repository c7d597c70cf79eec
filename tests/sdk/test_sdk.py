"""The SDK's `resolve()` (sync `AgentVariants` and async `AsyncAgentVariants`) against real
server processes: it resolves what the service resolves (arms included), a change made
through one process reaches an SDK watching another within the propagation bound, and an
outage of the service never stops it from answering (until `max_staleness`)."""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agent_variants import AgentVariants, AsyncAgentVariants, NotFound, ResolvedAgentConfig, Unavailable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.system.test_replicas import PROPAGATION_BOUND, Replicas, ok, replicas, setup_agent, start, stop, wait_ready

pytestmark = pytest.mark.live
__all__ = ["replicas"]  # the module-scoped fixture: two servers on one database

Client = AgentVariants | AsyncAgentVariants
# The contract: p99 of the propagation bound.
P99_BOUND = 0.1


def secret(replicas: Replicas) -> str:
    return replicas.http.headers["Authorization"].removeprefix("Bearer ")


def as_served(config: ResolvedAgentConfig) -> dict[str, Any]:
    """The config as `/resolved?explain=true` shows it."""
    return {
        "agent_id": config.agent_id,
        "agent_slug": config.agent_slug,
        "variant_id": config.variant_id,
        "variant_slug": config.variant_slug,
        "source": config.source,
        "experiment_id": config.experiment_id,
        "arm": config.arm,
        "environment": config.environment,
        "rule_id": config.rule_id,
        **config.config(),
        "provenance": config.provenance,
    }


async def served(replicas: Replicas, agent: str, **params: Any) -> dict[str, Any]:
    body = await ok(
        replicas.http.get(f"{replicas.b.url}/v1/agents/{agent}/resolved", params={"explain": "true", **params})
    )
    body.pop("object")
    return body


async def resolve(client: Client, agent: str, subject: str | None = None) -> ResolvedAgentConfig:
    """`client.resolve`, whichever kind of client."""
    answer = client.resolve(agent, subject)
    return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]


async def close(client: Client) -> None:
    closed = client.close()
    if inspect.isawaitable(closed):
        await closed


def sdk(kind: str, url: str, key: str, **options: Any) -> Client:
    return AgentVariants(url, key, **options) if kind == "sync" else AsyncAgentVariants(url, key, **options)


@pytest.fixture(params=["async", "sync"])
async def watching_b(request: pytest.FixtureRequest, replicas: Replicas) -> AsyncIterator[Client]:
    """An SDK client of either kind, reading from server B."""
    client = sdk(request.param, replicas.b.url, secret(replicas))
    yield client
    await close(client)


async def activate(replicas: Replicas, agent: dict[str, Any], variant: dict[str, Any]) -> float:
    """Activate through A; the moment its answer arrived."""
    await ok(replicas.http.post(f"{replicas.a.url}/v1/agents/{agent['id']}/variants/{variant['id']}/activate"))
    return time.perf_counter()


async def until(check: Any, *, within: float, what: str) -> float:
    """Seconds until `check()` (sync or async) is true, failing after `within`."""
    began = time.perf_counter()
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return time.perf_counter() - began
        assert time.perf_counter() - began < within, f"not {what} after {within} s"
        await asyncio.sleep(0.001)


async def test_an_activation_through_a_reaches_an_sdk_watching_b_within_the_bound(
    replicas: Replicas, watching_b: Client
) -> None:
    agent, variants = await setup_agent(replicas)
    assert as_served(await resolve(watching_b, agent["slug"])) == await served(replicas, agent["slug"])
    latencies = []
    for n in range(100):
        target = variants[n % 2]
        written = await activate(replicas, agent, target)
        while (await resolve(watching_b, agent["slug"])).variant_id != target["id"]:
            assert time.perf_counter() - written < PROPAGATION_BOUND, f"change {n} not seen within the bound"
            await asyncio.sleep(0.0005)
        latencies.append(time.perf_counter() - written)
    latencies.sort()
    p99 = latencies[98]
    print(
        f"{type(watching_b).__name__}: activation to SDK p50 {statistics.median(latencies) * 1000:.1f} ms,"
        f" p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms over 100 changes"
    )
    assert p99 < P99_BOUND, f"p99 {p99 * 1000:.1f} ms over 100 changes"
    # What it holds at the end is what the service resolves, field for field.
    assert as_served(await resolve(watching_b, agent["slug"])) == await served(replicas, agent["slug"])


@pytest.fixture(scope="module")
async def experiment(replicas: Replicas) -> dict[str, Any]:
    agent, variants = await setup_agent(replicas)
    created = await ok(
        replicas.http.post(
            f"{replicas.a.url}/v1/agents/{agent['id']}/experiments",
            json={
                "name": "sdk",
                "arms": [
                    {"variant": "base", "weight": 1},
                    {"variant": variants[0]["id"], "weight": 2},
                    {"variant": variants[1]["id"], "weight": 3},
                ],
            },
        ),
        201,
    )
    await ok(replicas.http.post(f"{replicas.a.url}/v1/agents/{agent['id']}/experiments/{created['id']}/start"))
    return agent


@pytest.fixture(scope="module")
async def both_clients(replicas: Replicas) -> AsyncIterator[tuple[AgentVariants, AsyncAgentVariants]]:
    sync, async_ = AgentVariants(replicas.b.url, secret(replicas)), AsyncAgentVariants(replicas.b.url, secret(replicas))
    yield sync, async_
    sync.close()
    await async_.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=st.text(min_size=1, max_size=60))
async def test_local_assignment_equals_the_servers_subject_answer(
    replicas: Replicas,
    experiment: dict[str, Any],
    both_clients: tuple[AgentVariants, AsyncAgentVariants],
    subject: str,
) -> None:
    sync, async_ = both_clients
    expected = await served(replicas, experiment["id"], subject=subject)
    assert as_served(await async_.resolve(experiment["id"], subject=subject)) == expected
    assert as_served(sync.resolve(experiment["id"], subject=subject)) == expected
    # Without a subject: the plain resolution, experiment or not.
    assert as_served(sync.resolve(experiment["id"])) == await served(replicas, experiment["id"])


async def test_an_unknown_agent_is_not_found(watching_b: Client) -> None:
    with pytest.raises(NotFound) as raised:
        await resolve(watching_b, "no-such-agent")
    assert raised.value.code == "resource_missing" and raised.value.status == 404


async def test_a_deleted_agent_becomes_not_found_and_a_new_one_under_its_slug_is_served(
    replicas: Replicas, watching_b: Client
) -> None:
    agent, _ = await setup_agent(replicas)
    await resolve(watching_b, agent["slug"])
    await ok(replicas.http.delete(f"{replicas.a.url}/v1/agents/{agent['id']}"), 204)

    async def gone() -> bool:
        try:
            await resolve(watching_b, agent["slug"])
        except NotFound:
            return True
        return False

    await until(gone, within=PROPAGATION_BOUND, what="NotFound once deleted")
    # A delete archives (contract 1.1): the slug stays taken until a purge frees it; then a
    # new agent under it is resolved afresh, not the old copy.
    await ok(replicas.http.delete(f"{replicas.a.url}/v1/agents/{agent['id']}", params={"purge": "true"}), 204)
    again = await ok(
        replicas.http.post(
            f"{replicas.a.url}/v1/agents",
            json={"name": "again", "slug": agent["slug"], "config": {"model_provider": "p", "model_name": "m"}},
        ),
        201,
    )
    assert (await resolve(watching_b, agent["slug"])).agent_id == again["id"]


async def test_a_quiet_open_watch_keeps_the_copy_fresh_under_max_staleness(replicas: Replicas) -> None:
    agent, _ = await setup_agent(replicas)
    async with AsyncAgentVariants(replicas.b.url, secret(replicas), max_staleness=0.2) as client:
        first = await client.resolve(agent["id"])
        await asyncio.sleep(1.0)  # nothing changes, nothing is sent: the open stream vouches for the copy
        assert await client.resolve(agent["id"]) == first


async def test_with_its_server_gone_the_sdk_serves_the_last_bundle_and_catches_up_when_it_is_back(
    replicas: Replicas, tmp_path: Path
) -> None:
    agent, variants = await setup_agent(replicas)
    server = start("D", replicas.url, tmp_path, migrate=False)
    port = int(server.url.rsplit(":", 1)[1])
    patient = AsyncAgentVariants(server.url, secret(replicas))
    strict = AgentVariants(server.url, secret(replicas), max_staleness=0.5)
    try:
        await wait_ready(replicas.http, server)
        before = await patient.resolve(agent["id"])
        assert strict.resolve(agent["id"]) == before
        server.process.kill()
        server.process.wait(10)
        # Changes made while D is away, through A.
        await activate(replicas, agent, variants[1])
        await ok(
            replicas.http.patch(
                f"{replicas.a.url}/v1/agents/{agent['id']}",
                json={"config": {"system_prompt": "changed while D was away"}},
            )
        )
        await asyncio.sleep(1.0)
        # The service is gone: the last bundle is still served ...
        assert await patient.resolve(agent["id"]) == before
        # ... but not past max_staleness.
        with pytest.raises(Unavailable):
            strict.resolve(agent["id"])

        server = start("D", replicas.url, tmp_path, migrate=False, port=port)  # back, at the same address
        await wait_ready(replicas.http, server)
        expected = await served(replicas, agent["id"])
        for client in (patient, strict):

            async def caught_up(c: Client = client) -> bool:
                return await _as_served_or_none(c, agent["id"]) == expected

            took = await until(caught_up, within=15.0, what=f"{type(client).__name__} caught up")
            print(f"{type(client).__name__} caught up {took:.2f} s after D was ready")
        assert strict.resolve(agent["id"]).system_prompt == "changed while D was away"
    finally:
        await patient.close()
        strict.close()
        stop(server)


async def _as_served_or_none(client: Client, agent: str) -> dict[str, Any] | None:
    """What `resolve` gives, as served; None while it raises `Unavailable`."""
    try:
        return as_served(await resolve(client, agent))
    except Unavailable:
        return None


async def test_a_forked_child_gets_its_own_watch_and_its_own_buffer(replicas: Replicas) -> None:
    """A pre-forking server imports the agent (and its client) once, then forks workers: each
    worker must watch for itself, and never send the outcomes its parent reported."""
    import os

    agent, variants = await setup_agent(replicas)
    client = AgentVariants(replicas.b.url, secret(replicas))
    try:
        assert client.resolve(agent["id"]).variant_id is None
        client.report(agent["id"], input_tokens=1, output_tokens=0, latency_ms=1)  # the parent's own
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the sync client only, then _exit (never the parent's event loop)
            code = 3
            try:
                client.resolve(agent["id"])  # starts the child's own background thread and watch
                os.write(ready_w, b"r")
                os.read(go_r, 1)  # the parent has activated
                deadline = time.monotonic() + PROPAGATION_BOUND
                while client.resolve(agent["id"]).variant_id != variants[0]["id"]:
                    if time.monotonic() > deadline:
                        os._exit(4)
                    time.sleep(0.002)
                client.report(agent["id"], input_tokens=10, output_tokens=0, latency_ms=1)
                client.close()
                code = 0 if client.report_stats().sent == 1 else 5
            finally:
                os._exit(code)
        assert await asyncio.to_thread(os.read, ready_r, 1) == b"r"
        await activate(replicas, agent, variants[0])
        os.write(go_w, b"g")
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "3: crashed, 4: change not seen, 5: not sent once"
        assert client.resolve(agent["id"]).variant_id == variants[0]["id"]  # the parent's watch is intact
        assert client.flush(timeout=10).sent == 1
    finally:
        client.close()
    usage = await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{agent['id']}/usage"))
    assert (usage["outcomes"], usage["input_tokens"]) == (2, 11)  # each outcome once


async def test_while_its_watch_is_refused_the_sdk_revalidates_with_if_none_match(replicas: Replicas) -> None:
    """A service that answers requests but not streams (a proxy that cuts them) still keeps
    the copy current, and fresh enough for `max_staleness`."""
    from tests.sdk.faulty_proxy import FaultyProxy

    agent, variants = await setup_agent(replicas)
    proxy = FaultyProxy(replicas.a.url, mode="no_streams")
    proxy.start()
    try:
        client = AgentVariants(proxy.url, secret(replicas), max_staleness=2.0)
        try:
            assert client.resolve(agent["id"]).variant_id is None
            await asyncio.sleep(3.0)  # past max_staleness: only revalidation keeps it fresh
            assert client.resolve(agent["id"]).variant_id is None
            await activate(replicas, agent, variants[0])
            took = await until(
                lambda: client.resolve(agent["id"]).variant_id == variants[0]["id"],
                within=5.0,
                what="the change revalidated",
            )
            print(f"the change reached the SDK by revalidation in {took:.2f} s")
            # The next stream attempt says what the SDK now has (Last-Event-ID): the new etag.
            new_etag = (await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{agent['id']}/bundle")))["etag"]
            await until(lambda: proxy.stream_ids[-1] == new_etag, within=20.0, what="a stream with the new etag")
        finally:
            client.close()
    finally:
        proxy.stop()
    bundle_path = f"/v1/agents/{agent['id']}/bundle"
    revalidations = [
        (status, condition)
        for method, path, status, condition in proxy.passed
        if path == bundle_path and condition is not None
    ]
    assert any(status == 304 for status, _ in revalidations), "no revalidation answered 304"
    assert any(status == 200 for status, _ in revalidations), "the change never came by revalidation"
    # Every stream attempt said what the SDK had: the old etag first, the new one at last.
    assert None not in proxy.stream_ids and proxy.stream_ids[0] != new_etag


async def test_a_stream_that_says_nothing_cannot_pass_a_stale_copy_off_as_fresh(replicas: Replicas) -> None:
    """A proxy that holds the stream open but passes nothing on: with `max_staleness`, the
    quiet copy is revalidated, so the change arrives all the same."""
    from tests.sdk.faulty_proxy import FaultyProxy

    agent, variants = await setup_agent(replicas)
    proxy = FaultyProxy(replicas.a.url, mode="silent_streams")
    proxy.start()
    client = AgentVariants(proxy.url, secret(replicas), max_staleness=1.0)
    try:
        assert client.resolve(agent["id"]).variant_id is None
        await activate(replicas, agent, variants[0])
        took = await until(
            lambda: client.resolve(agent["id"]).variant_id == variants[0]["id"],
            within=3.0,
            what="the change seen through a silent stream",
        )
        print(f"seen by revalidation {took:.2f} s after the change")
    finally:
        client.close()
        proxy.stop()


async def test_a_load_balancers_pages_are_an_outage_not_a_deletion_nor_a_word_from_the_service(
    replicas: Replicas,
) -> None:
    from tests.sdk.faulty_proxy import FaultyProxy

    agent, variants = await setup_agent(replicas)
    proxy = FaultyProxy(replicas.a.url, mode="pass")
    proxy.start()
    patient = AgentVariants(proxy.url, secret(replicas))
    strict = AgentVariants(proxy.url, secret(replicas), max_staleness=1.0)
    try:
        before = patient.resolve(agent["id"])
        assert strict.resolve(agent["id"]) == before
        for page in ("html_404", "maintenance"):
            proxy.mode = page
            await asyncio.sleep(1.5)
            assert patient.resolve(agent["id"]) == before, page  # never NotFound: the copy is kept
            with pytest.raises(Unavailable):
                strict.resolve(agent["id"])  # an HTML page does not vouch for the copy
        await activate(replicas, agent, variants[1])
        proxy.mode = "pass"
        for client in (patient, strict):
            await until(
                lambda c=client: _variant_or_none(c, agent["id"]) == variants[1]["id"],
                within=15.0,
                what="caught up once the service answers again",
            )
    finally:
        patient.close()
        strict.close()
        proxy.stop()


def _variant_or_none(client: AgentVariants, agent: str) -> str | None:
    try:
        return client.resolve(agent).variant_id
    except Unavailable:
        return None


async def test_more_agents_than_a_connection_pool_holds_are_watched_and_reported(replicas: Replicas) -> None:
    """Each watched agent holds a connection: 105 of them must not starve the 106th fetch
    nor the outcome sender."""
    http, a = replicas.http, replicas.a.url
    agents = [
        await ok(
            http.post(
                f"{a}/v1/agents",
                json={
                    "name": f"pool {n}",
                    "slug": f"pool-{n}-{time.time_ns()}",
                    "config": {"model_provider": "p", "model_name": "m"},
                },
            ),
            201,
        )
        for n in range(105)
    ]
    with AgentVariants(replicas.b.url, secret(replicas)) as client:
        for agent in agents:
            assert client.resolve(agent["slug"]).agent_id == agent["id"]
        client.report(agents[-1]["slug"], input_tokens=1, output_tokens=1, latency_ms=1)
        assert client.flush(timeout=10).sent == 1
        # And the last one's watch works.
        await ok(http.patch(f"{a}/v1/agents/{agents[-1]['id']}", json={"config": {"model_name": "m2"}}))
        await until(
            lambda: client.resolve(agents[-1]["slug"]).model_name == "m2",
            within=PROPAGATION_BOUND,
            what="the 105th agent's change",
        )
