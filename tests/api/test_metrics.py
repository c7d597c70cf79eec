"""GET /metrics: Prometheus' text format (read back with prometheus-client's own parser),
counts that move with the requests made, labelled by route template (never an id), the
cache, listener, watch and pool gauges, the services' counters, and who may read it.
tests/system/test_workers.py checks that a 2-worker `serve` sums its workers."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_app
from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.api.scheduler import rollouts as scheduler
from services.shared.identifiers import new_id
from tests.api.test_rollouts import setup as start_rollout
from tests.helpers import bearer, create_agent, settings_for_tests

RESOLVED = "/v1/agents/{agent}/resolved"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Each family's type, and every sample's value by name and labels."""
    types, samples = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


async def scrape(http: httpx.AsyncClient, **headers: str) -> tuple[dict[str, str], Samples]:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


def requests(samples: Samples, route: str, method: str = "GET", status: int = 200) -> float:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return samples.get(("agent_variants_http_requests_total", labels), 0)


async def key(db: Database, scope: str) -> str:
    created = await keys_service.create_key(
        db, KeyCreate(name=f"metrics-{scope}-{new_id('api_key')[-8:].lower()}", scope=scope)
    )
    return str(created["secret"])


async def test_the_text_format_parses_and_counts_move_by_route_template(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    _, before = await scrape(client)
    for _ in range(5):  # the fast path: a miss, then hits
        assert (await client.get(f"/v1/agents/{agent['slug']}/resolved")).status_code == 200
    etag = (await client.get(f"/v1/agents/{agent['id']}/resolved")).headers["etag"]
    assert (await client.get(f"/v1/agents/{agent['id']}/resolved", headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(f"/v1/agents/{agent['id']}")).status_code == 200  # through FastAPI
    assert (await client.get("/v1/agents/no-such-agent")).status_code == 404
    assert (await client.get(f"/v1/agents/{agent['id']}/resolved?explain=maybe")).status_code == 422  # FastAPI's too
    assert (await client.get("/v1/agents", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await client.get("/nowhere/at/all")).status_code == 404
    types, after = await scrape(client)

    assert requests(after, RESOLVED) - requests(before, RESOLVED) == 6
    assert requests(after, RESOLVED, status=304) - requests(before, RESOLVED, status=304) == 1
    assert requests(after, RESOLVED, status=422) - requests(before, RESOLVED, status=422) == 1
    agent_route = "/v1/agents/{agent}"
    assert requests(after, agent_route) - requests(before, agent_route) == 1
    assert requests(after, agent_route, status=404) - requests(before, agent_route, status=404) == 1
    assert requests(after, "/v1/agents", status=401) - requests(before, "/v1/agents", status=401) == 1
    assert requests(after, "unmatched", status=404) - requests(before, "unmatched", status=404) == 1
    # Labels are templates: no agent's id or slug, no path as sent.
    values = {value for _, labels in after for _, value in labels}
    assert not any(agent["id"] in v or agent["slug"] in v or "no-such" in v or "nowhere" in v for v in values)

    hits = ("agent_variants_resolve_cache_hits_total", ())
    misses = ("agent_variants_resolve_cache_misses_total", ())
    assert after[hits] - before[hits] >= 5 and after[misses] - before[misses] >= 2
    assert after[("agent_variants_resolve_cache_entries", ())] >= 2
    assert after[("agent_variants_resolve_cache_trusted", ())] == 1
    for name, kind in {
        "agent_variants_http_requests": "counter",
        "agent_variants_resolve_cache_hits": "counter",
        "agent_variants_resolve_cache_misses": "counter",
        "agent_variants_resolve_cache_evictions": "counter",
        "agent_variants_resolve_cache_entries": "gauge",
        "agent_variants_resolve_cache_trusted": "gauge",
        "agent_variants_listener_connected": "gauge",
        "agent_variants_listener_connects": "counter",
        "agent_variants_watch_streams": "gauge",
        "agent_variants_db_pool_in_use": "gauge",
        "agent_variants_db_pool_waiting": "gauge",
        "agent_variants_db_pool_max": "gauge",
        "agent_variants_outcomes_ingested": "counter",
        "agent_variants_split_transitions": "counter",
        "agent_variants_webhook_deliveries": "counter",
        "agent_variants_workers": "gauge",
    }.items():
        assert types.get(name) == kind, (name, types.get(name))


async def test_evictions_are_counted(db: Database) -> None:
    app = create_app(settings_for_tests(resolve_cache_size=2), database=db)
    secret = await key(db, "admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=bearer(secret)) as http:
        agents = [await create_agent(http) for _ in range(4)]
        for agent in agents:
            assert (await http.get(f"/v1/agents/{agent['id']}/resolved")).status_code == 200
        _, samples = await scrape(http)
    assert samples[("agent_variants_resolve_cache_evictions_total", (("reason", "capacity"),))] == 2
    assert samples[("agent_variants_resolve_cache_entries", ())] == 2


async def test_outcomes_and_split_transitions_are_counted(client: httpx.AsyncClient, db: Database) -> None:
    agent = await create_agent(client)
    _, before = await scrape(client)
    outcome = {"variant_id": None, "input_tokens": 1, "output_tokens": 1, "latency_ms": 10.0}
    assert (await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": [outcome] * 3})).status_code == 202
    rollout_agent, _, _ = await start_rollout(client)
    assert await scheduler.tick(db) == ["advance"]
    _, after = await scrape(client)
    ingested = ("agent_variants_outcomes_ingested_total", ())
    assert after[ingested] - before[ingested] == 3
    advances = ("agent_variants_split_transitions_total", (("action", "advance"),))
    assert after[advances] - before.get(advances, 0) == 1


async def test_a_read_key_may_scrape_a_resolve_key_may_not(client: httpx.AsyncClient, db: Database) -> None:
    read, resolve = await key(db, "read"), await key(db, "resolve")
    assert (await client.get("/metrics", headers=bearer(read))).status_code == 200
    refused = await client.get("/metrics", headers=bearer(resolve))
    assert refused.status_code == 403, refused.text
    assert (await client.get("/metrics", headers={"Authorization": ""})).status_code == 401


async def test_metrics_open_lets_anyone_scrape(db: Database) -> None:
    for opened, status in ((True, 200), (False, 401)):
        app = create_app(settings_for_tests(metrics_open=opened), database=db)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as anonymous:
            assert (await anonymous.get("/metrics")).status_code == status
            assert (await anonymous.get("/v1/agents")).status_code == 401  # nothing else opens


@pytest.mark.live
async def test_listener_and_pool_gauges_of_a_real_lifespan(live_url: str, live_db: Database) -> None:
    secret = await key(live_db, "read")
    app = create_app(settings_for_tests(database_url=live_url))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers=bearer(secret)
        ) as http:
            deadline = time.monotonic() + 10
            while not app.state.resolution_listener.connected.is_set():
                assert time.monotonic() < deadline, "the listener did not connect"
                await asyncio.sleep(0.05)
            assert (await http.get("/v1/agents")).status_code == 200  # uses the read pool
            _, samples = await scrape(http)
    assert samples[("agent_variants_listener_connected", ())] == 1
    assert samples[("agent_variants_listener_connects_total", ())] >= 1
    assert samples[("agent_variants_resolve_cache_trusted", ())] == 1
    assert samples[("agent_variants_watch_streams", ())] == 0
    for pool in ("write", "read"):
        assert samples[("agent_variants_db_pool_max", (("pool", pool),))] >= 1
        assert samples[("agent_variants_db_pool_waiting", (("pool", pool),))] == 0
        assert ("agent_variants_db_pool_in_use", (("pool", pool),)) in samples
    assert ("agent_variants_db_pool_in_use", (("pool", "resolve"),)) in samples


async def test_webhook_deliveries_are_counted_by_result(db: Database) -> None:
    from tests.api.test_webhooks import Receiver, deliver

    app = create_app(settings_for_tests(webhooks_allow_private=True), database=db)
    secret = await key(db, "admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=bearer(secret)) as http:
        _, before = await scrape(http)
        ok, failing = Receiver(), Receiver(status=500)
        for receiver in (ok, failing):
            made = await http.post("/v1/webhooks", json={"url": receiver.url, "events": ["webhook.test"]})
            assert made.status_code == 201, made.text
            assert (await http.post(f"/v1/webhooks/{made.json()['id']}/test")).status_code == 200
        assert await deliver(db) == 2
        _, after = await scrape(http)
        for receiver in (ok, failing):
            receiver.shutdown()
    for result in ("delivered", "retrying"):
        sample = ("agent_variants_webhook_deliveries_total", (("result", result),))
        assert after[sample] - before.get(sample, 0) == 1, result
