"""The console shows what runs cost (contract 1.1, "Models"): per config on the agent's page
and per arm on the experiment's, the part estimated from the model catalog's prices marked."""

from __future__ import annotations

import re

import httpx

from tests.console.conftest import Browser
from tests.helpers import create_agent, create_variant, unique


async def test_costs_per_variant_and_per_arm_mark_the_estimated_part(client: httpx.AsyncClient, admin: Browser):
    provider = unique("console-costs").replace(" ", "-")
    assert (
        await client.put(f"/v1/models/{provider}/m", json={"input_usd_per_mtok": 1, "output_usd_per_mtok": 2})
    ).status_code == 201
    agent = await create_agent(client, config={"model_provider": provider, "model_name": "m"})
    variant = await create_variant(client, agent["id"], slug="terse")
    created = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "Costs", "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]},
    )
    experiment = created.json()["id"]
    assert (await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment}/start")).status_code == 200
    runs = [
        # The base: 1,000,000 input tokens at $1 and 500,000 output tokens at $2, estimated: $2.
        {"variant_id": None, "input_tokens": 1_000_000, "output_tokens": 500_000, "latency_ms": 5},
        # The variant: one reported cost ($0.5), one estimated ($0.25).
        {"variant_id": variant["id"], "input_tokens": 10, "output_tokens": 10, "latency_ms": 5, "cost_usd": 0.5},
        {"variant_id": variant["id"], "input_tokens": 250_000, "output_tokens": 0, "latency_ms": 5},
    ]
    response = await client.post(
        f"/v1/agents/{agent['id']}/outcomes", json={"data": [{**run, "experiment_id": experiment} for run in runs]}
    )
    assert response.status_code == 202, response.text

    page = await admin.page(f"/console/agents/{agent['slug']}")
    table = re.search(r'<table class="list" id="usage-costs">.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    text = [re.sub(r"<[^>]+>", "", row) for row in rows[1:]]
    assert "base config" in text[0] and "$2 (all estimated)" in text[0]
    assert "terse" in text[1] and "$0.75 ($0.25 estimated)" in text[1]
    assert "All" in text[2] and "$2.75 ($2.25 estimated)" in text[2]
    assert page.count('class="estimated"') == 3

    page = await admin.page(f"/console/agents/{agent['slug']}/experiments/{experiment}")
    arms = [re.sub(r"<[^>]+>", "", row) for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)[1:3]]
    assert arms[0].strip().endswith("$2 (all estimated)")
    assert arms[1].strip().endswith("$0.75 ($0.25 estimated)")
