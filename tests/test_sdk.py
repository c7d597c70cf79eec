"""The SDK's `AsyncAgentVariants` against real server processes: it resolves what the
service resolves (arms included), and a change made through one process reaches an SDK
watching another within the propagation bound."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from agent_variants import AsyncAgentVariants, NotFound, ResolvedAgentConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_replicas import PROPAGATION_BOUND, Replicas, ok, replicas, setup_agent

pytestmark = pytest.mark.live
__all__ = ["replicas"]  # the module-scoped fixture: two servers on one database


def secret(replicas: Replicas) -> str:
    return replicas.http.headers["Authorization"].removeprefix("Bearer ")


def as_served(config: ResolvedAgentConfig) -> dict[str, Any]:
    """The config as `/resolved?explain=true` shows it."""
    body = {"agent_id": config.agent_id, "agent_slug": config.agent_slug, "variant_id": config.variant_id,
            "variant_slug": config.variant_slug, "source": config.source, "experiment_id": config.experiment_id,
            "arm": config.arm, **config.config(), "provenance": config.provenance}
    return body


async def served(replicas: Replicas, agent: str, **params: Any) -> dict[str, Any]:
    body = await ok(replicas.http.get(f"{replicas.b.url}/v1/agents/{agent}/resolved",
                                      params={"explain": "true", **params}))
    body.pop("object")
    return body


async def test_an_activation_through_a_reaches_an_sdk_watching_b_within_the_bound(replicas: Replicas) -> None:
    agent, variants = await setup_agent(replicas)
    async with AsyncAgentVariants(replicas.b.url, secret(replicas)) as client:
        first = await client.resolve(agent["slug"])
        assert as_served(first) == await served(replicas, agent["slug"])
        latencies = []
        for n in range(30):
            target = variants[n % 2]
            await ok(replicas.http.post(f"{replicas.a.url}/v1/agents/{agent['id']}/variants/{target['id']}/activate"))
            written = time.perf_counter()
            while (await client.resolve(agent["slug"])).variant_id != target["id"]:
                assert time.perf_counter() - written < PROPAGATION_BOUND, n
                await _yield()
            latencies.append(time.perf_counter() - written)
        latencies.sort()
        print(f"activation to SDK: p50 {statistics.median(latencies) * 1000:.1f} ms,"
              f" max {latencies[-1] * 1000:.1f} ms")


async def _yield() -> None:
    import asyncio

    await asyncio.sleep(0.001)


@pytest.fixture(scope="module")
async def experiment(replicas: Replicas) -> dict[str, Any]:
    agent, variants = await setup_agent(replicas)
    created = await ok(replicas.http.post(f"{replicas.a.url}/v1/agents/{agent['id']}/experiments", json={
        "name": "sdk", "arms": [{"variant": "base", "weight": 1}, {"variant": variants[0]["id"], "weight": 2},
                                {"variant": variants[1]["id"], "weight": 3}]}), 201)
    await ok(replicas.http.post(f"{replicas.a.url}/v1/agents/{agent['id']}/experiments/{created['id']}/start"))
    return agent


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=st.text(min_size=1, max_size=60))
async def test_local_assignment_equals_the_servers_subject_answer(
    replicas: Replicas, experiment: dict[str, Any], subject: str
) -> None:
    async with AsyncAgentVariants(replicas.b.url, secret(replicas)) as client:
        local = await client.resolve(experiment["id"], subject=subject)
    assert as_served(local) == await served(replicas, experiment["id"], subject=subject)


async def test_an_unknown_agent_is_not_found(replicas: Replicas) -> None:
    async with AsyncAgentVariants(replicas.b.url, secret(replicas)) as client:
        with pytest.raises(NotFound) as raised:
            await client.resolve("no-such-agent")
    assert raised.value.code == "resource_missing" and raised.value.status == 404


async def test_with_its_server_gone_the_sdk_serves_the_last_bundle_until_max_staleness(
    replicas: Replicas, tmp_path
) -> None:
    import asyncio

    from agent_variants import Unavailable

    from tests.test_replicas import start, stop, wait_ready

    agent, variants = await setup_agent(replicas)
    server = start("D", replicas.url, tmp_path, migrate=False)
    try:
        await wait_ready(replicas.http, server)
        patient = AsyncAgentVariants(server.url, secret(replicas))
        strict = AsyncAgentVariants(server.url, secret(replicas), max_staleness=0.5)
        try:
            before = await patient.resolve(agent["id"])
            assert (await strict.resolve(agent["id"])) == before
            server.process.kill()
            server.process.wait(10)
            await asyncio.sleep(1.0)
            # The service is gone: the last bundle is still served ...
            assert await patient.resolve(agent["id"]) == before
            # ... but not past max_staleness.
            with pytest.raises(Unavailable):
                await strict.resolve(agent["id"])
        finally:
            await patient.close()
            await strict.close()
    finally:
        stop(server)
