"""Outcomes and usage per environment (contract 1.1, "Environments": outcomes and /usage gain
`environment`, filter `?environment=`).

An outcome is stored in the environment it names (slug or id), else its experiment's, else
the request's (`?environment=`, a bound key's, else production); an unknown one is 422
naming the item, the batch stored whole or not at all; a bound key may name no other (403).
/usage sums every environment unless `?environment=` names one; a bound key sees its own.
Where an outcome went is read from the table itself, not only through /usage.

The tests run in-process on the rolled-back database (`client` is an unbound admin key).
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID
from tests.api.test_bound_keys import as_key, create_environment, create_key
from tests.helpers import assert_problem, create_agent, create_variant, problem_params


def outcome(variant_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"variant_id": variant_id, "input_tokens": 100, "output_tokens": 20, "latency_ms": 500.0, **fields}


@pytest.fixture
async def staging(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_environment(client, "staging")


@pytest.fixture
async def qa(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_environment(client, "qa")


@pytest.fixture
async def agent(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_agent(client)


async def post(client: httpx.AsyncClient, agent: dict[str, Any], body: dict[str, Any], **params: str) -> httpx.Response:
    return await client.post(f"/v1/agents/{agent['id']}/outcomes", json=body, params=params)


async def stored(conn: AsyncConnection, agent: dict[str, Any]) -> list[tuple[int, str]]:
    """(input_tokens, environment id) of every outcome of the agent, in the order stored."""
    rows = await conn.execute(
        text("SELECT input_tokens, environment_id FROM outcomes WHERE agent_id = :agent ORDER BY id"),
        {"agent": agent["id"]},
    )
    return [(n, environment) for n, environment in rows]


async def usage(client: httpx.AsyncClient, agent: dict[str, Any], **params: str) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent['id']}/usage", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def create_experiment(
    client: httpx.AsyncClient, agent: dict[str, Any], environment: str | None = None
) -> dict[str, Any]:
    variant = await create_variant(client, agent["id"])
    arms = [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]
    body: dict[str, Any] = {"name": "Split", "arms": arms}
    if environment is not None:
        body["environment"] = environment
    response = await client.post(f"/v1/agents/{agent['id']}/experiments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- where an outcome is stored ---------------------------------------------------------------


async def test_an_outcome_naming_no_environment_is_the_requests(client, conn, agent, staging):
    assert (await post(client, agent, outcome(input_tokens=1))).status_code == 202
    assert (await post(client, agent, outcome(input_tokens=2), environment="staging")).status_code == 202
    response = await post(client, agent, {"data": [outcome(input_tokens=3)]}, environment=staging["id"])
    assert response.status_code == 202, response.text
    assert await stored(conn, agent) == [(1, PRODUCTION_ENVIRONMENT_ID), (2, staging["id"]), (3, staging["id"])]


async def test_an_outcome_naming_an_experiment_is_the_experiments(client, conn, agent, staging):
    experiment = await create_experiment(client, agent, "staging")
    assert experiment["environment"] == "staging"
    # Neither the default (production) nor `?environment=` decides: the experiment's does.
    assert (await post(client, agent, outcome(input_tokens=1, experiment_id=experiment["id"]))).status_code == 202
    response = await post(
        client,
        agent,
        {"data": [outcome(input_tokens=2, experiment_id=experiment["id"]), outcome(input_tokens=3)]},
        environment="production",
    )
    assert response.status_code == 202, response.text
    assert await stored(conn, agent) == [(1, staging["id"]), (2, staging["id"]), (3, PRODUCTION_ENVIRONMENT_ID)]
    # It still counts in the experiment's results (its base arm).
    results = await client.get(
        f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/results", params={"environment": "staging"}
    )
    assert results.status_code == 200, results.text
    assert results.json()["arms"][0]["outcomes"] == 2


async def test_an_outcome_naming_an_environment_is_stored_there(client, conn, agent, staging, qa):
    experiment = await create_experiment(client, agent, "staging")
    batch = [
        outcome(input_tokens=1, environment="qa"),
        outcome(input_tokens=2, environment=qa["id"]),
        outcome(input_tokens=3, environment="production", experiment_id=experiment["id"]),  # wins over both
        outcome(input_tokens=4),
    ]
    response = await post(client, agent, {"data": batch}, environment="staging")
    assert response.status_code == 202, response.text
    assert await stored(conn, agent) == [
        (1, qa["id"]),
        (2, qa["id"]),
        (3, PRODUCTION_ENVIRONMENT_ID),
        (4, staging["id"]),
    ]
    assert (await post(client, agent, outcome(input_tokens=5, environment="staging"))).status_code == 202
    assert (await stored(conn, agent))[-1] == (5, staging["id"])


async def test_an_unknown_environment_is_422_naming_every_item_and_nothing_is_stored(client, conn, agent, staging):
    batch = [
        outcome(environment="staging"),
        outcome(environment="nowhere"),
        outcome(),
        outcome(environment="env_00000000000000000000000001"),
        outcome(environment="nowhere"),
    ]
    response = await post(client, agent, {"data": batch})
    body = assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"data[1].environment", "data[3].environment", "data[4].environment"}
    assert "'nowhere'" in body["detail"] and "'env_00000000000000000000000001'" in body["detail"]
    one = await post(client, agent, outcome(environment="nowhere"))
    assert_problem(one, 422, "validation_error")
    assert problem_params(one) == {"environment"}
    assert await stored(conn, agent) == []
    assert (await usage(client, agent))["outcomes"] == 0


async def test_an_unknown_request_environment_is_404(client, conn, agent):
    response = await post(client, agent, outcome(), environment="nowhere")
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"environment"}
    assert await stored(conn, agent) == []


# --- bound keys -------------------------------------------------------------------------------


async def test_a_bound_key_reports_in_its_environment(client, conn, agent, staging):
    key = await create_key(client, "write", environment="staging")
    experiment = await create_experiment(client, agent, "staging")
    async with as_key(client, key) as bound:
        assert (await post(bound, agent, outcome(input_tokens=1))).status_code == 202
        batch = [
            outcome(input_tokens=2, environment="staging"),
            outcome(input_tokens=3, environment=staging["id"]),
            outcome(input_tokens=4, experiment_id=experiment["id"]),
        ]
        assert (await post(bound, agent, {"data": batch}, environment="staging")).status_code == 202
    assert await stored(conn, agent) == [(n, staging["id"]) for n in (1, 2, 3, 4)]


async def test_a_bound_key_naming_another_environment_is_403_and_nothing_is_stored(client, conn, agent, staging, qa):
    key = await create_key(client, "write", environment="staging")
    elsewhere = await create_experiment(client, agent, "qa")
    async with as_key(client, key) as bound:
        query = await post(bound, agent, outcome(), environment="production")
        assert_problem(query, 403, "environment_forbidden")
        assert problem_params(query) == {"environment"}

        batch = [
            outcome(),
            outcome(environment="production"),
            outcome(environment="staging"),
            outcome(environment="nowhere"),
        ]
        items = await post(bound, agent, {"data": batch})
        body = assert_problem(items, 403, "environment_forbidden")
        # Any other name is refused, known or not, before anything is looked up.
        assert problem_params(items) == {"data[1].environment", "data[3].environment"}
        assert key["name"] in body["detail"] and "'staging'" in body["detail"]

        one = await post(bound, agent, outcome(environment=qa["id"]))
        assert_problem(one, 403, "environment_forbidden")
        assert problem_params(one) == {"environment"}

        # An experiment of another environment would store there: refused too.
        other = await post(bound, agent, {"data": [outcome(), outcome(experiment_id=elsewhere["id"])]})
        detail = assert_problem(other, 403, "environment_forbidden")["detail"]
        assert problem_params(other) == {"data[1].experiment_id"}
        assert f"'{elsewhere['id']}'" in detail and "'staging'" in detail
    assert await stored(conn, agent) == []
    # The same outcomes are fine for an unbound key.
    assert (
        await post(client, agent, {"data": [outcome(environment="production"), outcome(environment="qa")]})
    ).status_code == 202


# --- usage ------------------------------------------------------------------------------------


def totals(outcomes: list[dict[str, Any]], prices: tuple[Decimal, Decimal] | None = None) -> dict[str, Any]:
    """The usage object these outcomes add up to (without `environment`), each outcome's cost
    estimated exactly from `prices` (input, output per million tokens) of the model served."""
    by: dict[str | None, Counter[str]] = {}
    costs: dict[str | None, Decimal] = {}
    for o in outcomes:
        counts = by.setdefault(o["variant_id"], Counter())
        counts.update(input_tokens=o["input_tokens"], output_tokens=o["output_tokens"], outcomes=1)
        if prices is not None:
            cost = Decimal(o["input_tokens"]) * prices[0] / 10**6 + Decimal(o["output_tokens"]) * prices[1] / 10**6
            costs[o["variant_id"]] = costs.get(o["variant_id"], Decimal(0)) + cost
    rows = [
        {
            "variant_id": variant_id,
            "input_tokens": c["input_tokens"],
            "output_tokens": c["output_tokens"],
            "total_tokens": c["input_tokens"] + c["output_tokens"],
            "outcomes": c["outcomes"],
            "cost_usd": float(costs.get(variant_id, 0)),
            "estimated_cost_usd": float(costs.get(variant_id, 0)),
        }
        for variant_id, c in sorted(by.items(), key=lambda item: item[0] or "")
    ]
    return {
        "object": "usage",
        "input_tokens": sum(r["input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "total_tokens": sum(r["total_tokens"] for r in rows),
        "outcomes": sum(r["outcomes"] for r in rows),
        "cost_usd": float(sum(costs.values(), Decimal(0))),
        "estimated_cost_usd": float(sum(costs.values(), Decimal(0))),
        "by_variant": rows,
    }


async def test_usage_totals_are_exact_per_environment(client, conn, agent, staging, qa):
    variants = [
        None,
        (await create_variant(client, agent["id"]))["id"],
        (await create_variant(client, agent["id"]))["id"],
    ]
    rng = random.Random(18)
    # Outcomes report no cost: each gets one estimated from the prices of the agent's model (contract 1.1).
    prices = tuple(
        (
            await conn.execute(
                text("SELECT input_usd_per_mtok, output_usd_per_mtok FROM models WHERE provider = :p AND name = :n"),
                {"p": agent["config"]["model_provider"], "n": agent["config"]["model_name"]},
            )
        ).one()
    )
    places = {"production": PRODUCTION_ENVIRONMENT_ID, "staging": staging["id"], "qa": qa["id"]}
    sent: dict[str, list[dict[str, Any]]] = {slug: [] for slug in places}
    for _ in range(4):  # batches that add to rows earlier batches made
        batch = []
        for _ in range(rng.randint(1, 60)):
            slug = rng.choice(list(places))
            item = outcome(rng.choice(variants), input_tokens=rng.randint(0, 10**12), output_tokens=rng.randint(0, 999))
            if slug != "production" or rng.random() < 0.5:  # production's by default, or by name
                item["environment"] = rng.choice([slug, places[slug]])
            sent[slug].append(item)
            batch.append(item)
        response = await post(client, agent, {"data": batch})
        assert response.status_code == 202, response.text
    for slug, environment_id in places.items():
        expected = {**totals(sent[slug], prices), "environment": slug}
        assert await usage(client, agent, environment=slug) == expected
        assert await usage(client, agent, environment=environment_id) == expected  # by id, answered by slug
    everything = [o for items in sent.values() for o in items]
    assert await usage(client, agent) == {**totals(everything, prices), "environment": None}
    # The totals agree with the rows themselves.
    rows = await conn.execute(
        text(
            "SELECT environment_id, coalesce(variant_id, ''), count(*), sum(input_tokens), sum(output_tokens)"
            " FROM outcomes WHERE agent_id = :agent GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {"agent": agent["id"]},
    )
    kept = await conn.execute(
        text(
            "SELECT environment_id, variant_key, outcomes, input_tokens, output_tokens"
            " FROM usage_totals WHERE agent_id = :agent ORDER BY 1, 2"
        ),
        {"agent": agent["id"]},
    )
    assert [tuple(r) for r in rows] == [tuple(r) for r in kept]


async def test_usage_of_an_unknown_environment_is_404(client, agent):
    response = await client.get(f"/v1/agents/{agent['id']}/usage", params={"environment": "nowhere"})
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"environment"}


async def test_a_bound_key_sees_its_own_environments_usage(client, agent, staging):
    await post(client, agent, {"data": [outcome(input_tokens=1), outcome(input_tokens=2, environment="staging")]})
    key = await create_key(client, "read", environment="staging")
    async with as_key(client, key) as bound:
        mine = await usage(bound, agent)
        assert (mine["environment"], mine["outcomes"], mine["input_tokens"]) == ("staging", 1, 2)
        assert await usage(bound, agent, environment=staging["id"]) == mine
        forbidden = await bound.get(f"/v1/agents/{agent['id']}/usage", params={"environment": "production"})
        assert_problem(forbidden, 403, "environment_forbidden")
        assert problem_params(forbidden) == {"environment"}
    unbound = await usage(client, agent)
    assert (unbound["environment"], unbound["outcomes"], unbound["input_tokens"]) == (None, 2, 3)
    production = await usage(client, agent, environment="production")
    assert (production["environment"], production["outcomes"], production["input_tokens"]) == ("production", 1, 1)
