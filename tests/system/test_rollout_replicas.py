"""Rollouts in real server processes: three replicas tick, exactly one performs each
transition, a replica killed in the middle of one (a failpoint exits the process as
SIGKILL does, inside the transition's transaction) leaves nothing half done and another
replica performs it; a rollout goes from draft to completed, another to rolled_back on a
breached guardrail fed by simulated outcomes."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.helpers import config, unique
from tests.system.test_replicas import Server, ok, own_database, start, stop, wait_ready

pytestmark = pytest.mark.live
TICK = {"ROLLOUT_TICK_SECONDS": "0.2"}


async def wait_for(http: httpx.AsyncClient, url: str, status: str, *, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = await ok(http.get(url))
        if found["status"] == status:
            return found
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def rollout(http: httpx.AsyncClient, base: str, **body: Any) -> tuple[dict, dict, dict, dict]:
    agent = await ok(http.post(f"{base}/v1/agents", json={"name": unique("rollout"), "config": config()}), 201)
    path = f"{base}/v1/agents/{agent['id']}"
    current = await ok(http.post(f"{path}/variants", json={"variant_name": "current"}), 201)
    candidate = await ok(
        http.post(f"{path}/variants", json={"variant_name": "candidate", "overrides": {"temperature": 0.2}}), 201
    )
    await ok(http.post(f"{path}/variants/{current['id']}/activate"))
    draft = await ok(
        http.post(f"{path}/experiments", json={"kind": "rollout", "name": "ship", "variant": candidate["id"], **body}),
        201,
    )
    return agent, current, candidate, draft


async def actions(http: httpx.AsyncClient, base: str, agent: dict[str, Any]) -> Counter[tuple[str, str]]:
    revisions = await ok(http.get(f"{base}/v1/agents/{agent['id']}/revisions", params={"limit": 100}))
    return Counter((r["action"], r["target"]) for r in revisions["data"] if (r["actor"] or "").startswith("rollout:"))


async def test_one_replica_performs_each_transition_even_when_the_acting_one_dies(
    server_url: str, tmp_path: Any
) -> None:
    servers: list[Server] = []
    async with own_database(server_url, f"av_rollout_replicas_{random.getrandbits(32)}") as url:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                # A alone first, armed to die inside its first transition.
                servers.append(start("A", url, tmp_path, migrate=True, FAILPOINTS="rollout.before_commit", **TICK))
                await wait_ready(http, servers[0])
                http.headers["Authorization"] = f"Bearer {(tmp_path / 'admin-key').read_text().strip()}"
                a = servers[0].url
                steps = [{"percent": p, "hold_seconds": 0} for p in (10, 50, 100)]
                agent, _, candidate, draft = await rollout(http, a, steps=steps)
                experiment = f"/v1/agents/{agent['id']}/experiments/{draft['id']}"
                await ok(http.post(f"{a}{experiment}/start"))
                servers[0].process.wait(timeout=30)
                assert servers[0].process.returncode == 137  # died in the transition's transaction
                # B and C start on the same database: nothing of A's transition is there.
                servers += [start(name, url, tmp_path, migrate=False, **TICK) for name in ("B", "C")]
                for server in servers[1:]:
                    await wait_ready(http, server)
                b = servers[1].url
                done = await wait_for(http, f"{b}{experiment}", "completed")
                assert done["progress"]["step"] == 2 and done["progress"]["percent"] == 100
                # Each transition exactly once, whoever of B and C made it.
                assert await actions(http, b, agent) == Counter(
                    {("advance", "experiment"): 2, ("complete", "experiment"): 1, ("activate", "variant"): 1}
                )
                assert (await ok(http.get(f"{servers[2].url}/v1/agents/{agent['id']}")))["active_variant_id"] == (
                    candidate["id"]
                )
        finally:
            for server in servers:
                stop(server)


async def test_a_rollout_with_bad_outcomes_rolls_back_on_a_real_server(server_url: str, tmp_path: Any) -> None:
    servers: list[Server] = []
    async with own_database(server_url, f"av_rollout_back_{random.getrandbits(32)}") as url:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                servers.append(start("A", url, tmp_path, migrate=True, **TICK))
                await wait_ready(http, servers[0])
                http.headers["Authorization"] = f"Bearer {(tmp_path / 'admin-key').read_text().strip()}"
                a = servers[0].url
                steps = [{"percent": 25, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 0}]
                guardrails = [
                    {"metric": "success_rate", "max_degradation": 0.02},
                    {"metric": "latency_ms_mean", "max_degradation": 250},
                ]
                agent, current, candidate, draft = await rollout(
                    http, a, steps=steps, guardrails=guardrails, min_outcomes=100
                )
                experiment = f"/v1/agents/{agent['id']}/experiments/{draft['id']}"
                await ok(http.post(f"{a}{experiment}/start"))
                # Simulated traffic: each user reports what its arm served; the variant fails more often.
                generator = random.Random(20)
                batch = []
                for n in range(1500):
                    served = await ok(http.get(f"{a}/v1/agents/{agent['id']}/resolved", params={"subject": f"u{n}"}))
                    bad = served["variant_id"] == candidate["id"]
                    batch.append(
                        {
                            "variant_id": served["variant_id"],
                            "experiment_id": served["experiment_id"],
                            "input_tokens": 10,
                            "output_tokens": 10,
                            "latency_ms": generator.gauss(900, 100),
                            "success": generator.random() < (0.75 if bad else 0.95),
                        }
                    )
                    if len(batch) == 250:
                        await ok(http.post(f"{a}/v1/agents/{agent['id']}/outcomes", json={"data": batch}), 202)
                        batch = []
                done = await wait_for(http, f"{a}{experiment}", "rolled_back")
                assert "success_rate" in done["status_reason"]
                breached = [g for g in done["progress"]["guardrails"] if g["breached"]]
                assert [g["metric"] for g in breached] == ["success_rate"]
                body = await ok(http.get(f"{a}/v1/agents/{agent['id']}/resolved", params={"subject": "u1"}))
                assert body["variant_id"] == current["id"]  # everyone back on arm 0
                history = await ok(http.get(f"{a}{experiment}/guardrail_history"))
                assert history["data"] and history["data"][0]["guardrails"][0]["breached"]
        finally:
            for server in servers:
                stop(server)
