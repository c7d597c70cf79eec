"""Estimated costs (contract 1.1, "Models"): an outcome reported without `cost_usd` gets it
at ingestion from the catalog's prices of the model its config served, exactly; /usage and
experiment results say how much of their cost was estimated."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.outcomes.service import estimated_cost, reported_cost
from tests.helpers import create_agent, create_variant, unique

M = "/v1/models"


async def priced(client: httpx.AsyncClient, inputs: float, outputs: float) -> dict[str, str]:
    """A model of its own in the catalog with these prices, and a config naming it."""
    provider = unique("priced").replace(" ", "-")
    response = await client.put(
        f"{M}/{provider}/vendor/model", json={"input_usd_per_mtok": inputs, "output_usd_per_mtok": outputs}
    )
    assert response.status_code == 201, response.text
    return {"model_provider": provider, "model_name": "vendor/model"}


def outcome(variant_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"variant_id": variant_id, "input_tokens": 1234, "output_tokens": 567, "latency_ms": 80.0, **fields}


async def report(client: httpx.AsyncClient, agent: dict[str, Any], *outcomes: dict[str, Any]) -> None:
    response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": list(outcomes)})
    assert response.status_code == 202, response.text


async def stored(conn: AsyncConnection, agent: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows = await conn.execute(
        text("SELECT cost_usd, estimated_cost_usd FROM outcomes WHERE agent_id = :agent ORDER BY id"),
        {"agent": agent["id"]},
    )
    return [tuple(row) for row in rows]


async def usage_totals(conn: AsyncConnection, agent: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    rows = await conn.execute(
        text("SELECT variant_key, cost_usd, estimated_cost_usd FROM usage_totals WHERE agent_id = :agent"),
        {"agent": agent["id"]},
    )
    return {key: (cost, estimated) for key, cost, estimated in rows}


def test_estimated_cost_is_exact():
    assert estimated_cost(1234, 567, Decimal("0.15"), Decimal("0.6")) == Decimal("0.0005253")
    big = estimated_cost(10**12, 10**12 - 1, Decimal("0.075"), Decimal("123.456789"))
    assert big == Decimal(10**12) * Decimal("0.075") / 10**6 + Decimal(10**12 - 1) * Decimal("123.456789") / 10**6
    assert big == Decimal("75000") + Decimal("123456788.999876543211")
    assert estimated_cost(0, 0, Decimal(3), Decimal(15)) == 0


async def test_estimated_cost_equals_tokens_times_prices_exactly(client: httpx.AsyncClient, conn: AsyncConnection):
    model = await priced(client, 0.15, 0.6)
    agent = await create_agent(client, config=model)
    await report(client, agent, outcome(), outcome(input_tokens=10**12, output_tokens=3))
    first = Decimal(1234) * Decimal("0.15") / 10**6 + Decimal(567) * Decimal("0.6") / 10**6
    second = Decimal(10**12) * Decimal("0.15") / 10**6 + Decimal(3) * Decimal("0.6") / 10**6
    assert first == Decimal("0.0005253") and second == Decimal("150000.0000018")
    assert await stored(conn, agent) == [(float(first), first), (float(second), second)]
    assert await usage_totals(conn, agent) == {"": (first + second, first + second)}
    usage = (await client.get(f"/v1/agents/{agent['id']}/usage")).json()
    assert usage["cost_usd"] == usage["estimated_cost_usd"] == float(first + second)
    assert usage["by_variant"][0]["estimated_cost_usd"] == float(first + second)


async def test_an_outcome_that_reports_its_cost_is_not_estimated(client: httpx.AsyncClient, conn: AsyncConnection):
    model = await priced(client, 0.15, 0.6)
    agent = await create_agent(client, config=model)
    await report(client, agent, outcome(cost_usd=0.01), outcome(cost_usd=0.0))
    assert await stored(conn, agent) == [(0.01, None), (0.0, None)]
    usage = (await client.get(f"/v1/agents/{agent['id']}/usage")).json()
    assert (usage["cost_usd"], usage["estimated_cost_usd"]) == (0.01, 0.0)
    # Mixed: the reported part and the estimated part add up, and only the latter is estimated.
    await report(client, agent, outcome(cost_usd=1 / 3), outcome())
    estimate = Decimal("0.0005253")
    assert await usage_totals(conn, agent) == {"": (Decimal("0.01") + reported_cost(1 / 3) + estimate, estimate)}
    assert reported_cost(1 / 3) == Decimal("0.333333333333333")


async def test_the_model_served_is_the_variants_override_over_the_base(
    client: httpx.AsyncClient, conn: AsyncConnection
):
    base_model = await priced(client, 1, 2)
    other_model = await priced(client, 3, 4)
    agent = await create_agent(client, config=base_model)
    same = await create_variant(client, agent["id"], overrides={"temperature": 0.2})
    other = await create_variant(client, agent["id"], overrides=other_model)
    await report(
        client,
        agent,
        outcome(None, input_tokens=10, output_tokens=1),
        outcome(same["id"], input_tokens=10, output_tokens=1),
        outcome(other["id"], input_tokens=10, output_tokens=1),
    )
    assert [estimate for _, estimate in await stored(conn, agent)] == [
        Decimal("0.000012"),  # 10 × 1 + 1 × 2, per million
        Decimal("0.000012"),
        Decimal("0.000034"),  # 10 × 3 + 1 × 4, per million
    ]


async def test_unknown_models_and_unknown_variants_are_not_estimated(client: httpx.AsyncClient, conn: AsyncConnection):
    agent = await create_agent(client, config={"model_provider": "nobody", "model_name": unique("free")})
    await report(client, agent, outcome())
    model = await priced(client, 1, 2)
    priced_agent = await create_agent(client, config=model)
    # A variant id that no longer exists (or never did): its model is unknown.
    await report(client, priced_agent, outcome("var_01JDQ3W2Z4B6D8F0H2K4N6Q8S0"))
    assert await stored(conn, agent) == [(None, None)]
    assert await stored(conn, priced_agent) == [(None, None)]
    usage = (await client.get(f"/v1/agents/{agent['id']}/usage")).json()
    assert (usage["cost_usd"], usage["estimated_cost_usd"]) == (0.0, 0.0)


async def test_results_say_how_much_of_each_arms_cost_was_estimated(client: httpx.AsyncClient, conn: AsyncConnection):
    model = await priced(client, 0.15, 0.6)
    agent = await create_agent(client, config=model)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.1})
    created = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "costs", "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]},
    )
    experiment = created.json()["id"]
    assert (await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment}/start")).status_code == 200
    await report(
        client,
        agent,
        outcome(None, experiment_id=experiment),
        outcome(None, experiment_id=experiment, cost_usd=0.25),
        outcome(variant["id"], experiment_id=experiment),
        outcome(variant["id"], experiment_id=experiment),
    )
    estimate = Decimal("0.0005253")
    totals = await conn.execute(
        text("SELECT variant_key, cost_usd, estimated_cost_usd FROM experiment_arm_totals WHERE experiment_id = :e"),
        {"e": experiment},
    )
    assert {key: (cost, estimated) for key, cost, estimated in totals} == {
        "": (estimate + Decimal("0.25"), estimate),
        variant["id"]: (2 * estimate, 2 * estimate),
    }
    results = (await client.get(f"/v1/agents/{agent['id']}/experiments/{experiment}/results")).json()
    control, arm = results["arms"]
    assert (control["cost_usd"], control["estimated_cost_usd"]) == (float(estimate + Decimal("0.25")), float(estimate))
    assert (arm["cost_usd"], arm["estimated_cost_usd"]) == (float(2 * estimate), float(2 * estimate))
    # The arm totals lose what is deleted (a purge's cascade), costs with the counts.
    await conn.execute(text("DELETE FROM outcomes WHERE experiment_id = :e AND variant_id IS NULL"), {"e": experiment})
    remaining = await conn.execute(
        text("SELECT variant_key, cost_usd, estimated_cost_usd FROM experiment_arm_totals WHERE experiment_id = :e"),
        {"e": experiment},
    )
    assert {key: (cost, estimated) for key, cost, estimated in remaining} == {
        variant["id"]: (2 * estimate, 2 * estimate)
    }


async def test_an_experiment_arm_is_priced_by_the_model_of_its_snapshot(
    client: httpx.AsyncClient, conn: AsyncConnection
):
    started_with = await priced(client, 1, 2)
    changed_to = await priced(client, 3, 4)
    agent = await create_agent(client, config=started_with)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.2})
    arms = [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]
    experiment = (await client.post(f"/v1/agents/{agent['id']}/experiments", json={"name": "e", "arms": arms})).json()
    assert (await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/start")).status_code == 200
    # The variant changes model after the start; its arm still serves the snapshot's.
    patched = await client.patch(f"/v1/agents/{agent['id']}/variants/{variant['id']}", json={"overrides": changed_to})
    assert patched.status_code == 200, patched.text
    await report(
        client,
        agent,
        outcome(variant["id"], experiment_id=experiment["id"], input_tokens=10, output_tokens=1),
        outcome(variant["id"], input_tokens=10, output_tokens=1),  # outside the experiment: the model now
    )
    assert [estimate for _, estimate in await stored(conn, agent)] == [Decimal("0.000012"), Decimal("0.000034")]
