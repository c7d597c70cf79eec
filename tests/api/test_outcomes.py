"""Outcomes (validated whole, stored whole), usage totals, and experiment results checked
against SciPy and statsmodels on fixed data."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params


def outcome(variant_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"variant_id": variant_id, "input_tokens": 100, "output_tokens": 20, "latency_ms": 500.0, **fields}


async def usage(client: httpx.AsyncClient, agent: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent['id']}/usage")
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_new_agent_has_zero_usage(client):
    agent = await create_agent(client)
    assert await usage(client, agent) == {
        "object": "usage",
        "environment": None,  # every environment's (contract 1.1)
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "outcomes": 0,
        "cost_usd": 0.0,
        "estimated_cost_usd": 0.0,
        "by_variant": [],
    }


async def test_one_outcome_and_a_batch_are_stored_and_counted(client):
    # A model the catalog does not price: no cost is known (test_estimated_costs.py has the estimates).
    agent = await create_agent(client, config=config(model_provider="nobody", model_name="unpriced"))
    variant = await create_variant(client, agent["id"])
    one = await client.post(f"/v1/agents/{agent['slug']}/outcomes", json=outcome(None, input_tokens=7))
    assert one.status_code == 202, one.text
    batch = [outcome(variant["id"], input_tokens=n, output_tokens=2 * n) for n in range(1000)]
    response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": batch})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1000
    got = await usage(client, agent)
    inputs, outputs = sum(range(1000)), 2 * sum(range(1000))
    assert got["outcomes"] == 1001 and got["input_tokens"] == 7 + inputs and got["output_tokens"] == 20 + outputs
    assert got["total_tokens"] == got["input_tokens"] + got["output_tokens"]
    assert (got["cost_usd"], got["estimated_cost_usd"]) == (0.0, 0.0)
    assert got["by_variant"] == [
        {
            "variant_id": None,
            "input_tokens": 7,
            "output_tokens": 20,
            "total_tokens": 27,
            "outcomes": 1,
            "cost_usd": 0.0,
            "estimated_cost_usd": 0.0,
        },
        {
            "variant_id": variant["id"],
            "input_tokens": inputs,
            "output_tokens": outputs,
            "total_tokens": inputs + outputs,
            "outcomes": 1000,
            "cost_usd": 0.0,
            "estimated_cost_usd": 0.0,
        },
    ]


async def test_a_batch_with_bad_items_is_rejected_whole_naming_every_bad_item(client):
    agent = await create_agent(client)
    batch = [outcome() for _ in range(10)]
    batch[2] = outcome(input_tokens=-1)
    batch[5] = outcome(latency_ms="fast")
    batch[7] = {**outcome(), "surprise": 1}
    batch[9] = outcome(variant_id="not-an-id", success="yes")
    response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": batch})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {
        "data[2].input_tokens",
        "data[5].latency_ms",
        "data[7].surprise",
        "data[9].variant_id",
        "data[9].success",
    }
    assert (await usage(client, agent))["outcomes"] == 0
    too_many = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": [outcome()] * 1001})
    assert_problem(too_many, 422, "validation_error")
    assert problem_params(too_many) == {"data"}
    empty = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": []})
    assert problem_params(empty) == {"data"}
    missing = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"latency_ms": 1})
    assert problem_params(missing) == {"variant_id", "input_tokens", "output_tokens"}
    assert (await usage(client, agent))["outcomes"] == 0


async def test_an_unknown_experiment_is_404_naming_each_item(client):
    agent = await create_agent(client)
    ghost = "exp_01J00000000000000000000000"
    batch = [outcome(), outcome(experiment_id=ghost), outcome(), outcome(experiment_id=ghost)]
    response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": batch})
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"data[1].experiment_id", "data[3].experiment_id"}
    assert (await usage(client, agent))["outcomes"] == 0
    assert_problem(await client.post("/v1/agents/nobody/outcomes", json=outcome()), 404, "resource_missing")


# ----------------------------------------------------------------------------- results

RNG = np.random.default_rng(20261122)
# Fixed data: three arms with different success rates and score distributions.
ARM_DATA = [
    {"success": RNG.random(400) < 0.30, "score": RNG.normal(3.0, 1.0, 400), "latency": RNG.gamma(2.0, 300, 400)},
    {"success": RNG.random(350) < 0.38, "score": RNG.normal(3.3, 1.4, 350), "latency": RNG.gamma(2.0, 280, 350)},
    {"success": RNG.random(50) < 0.30, "score": RNG.normal(2.9, 0.5, 50), "latency": RNG.gamma(2.0, 310, 50)},
]


async def experiment_with(client: httpx.AsyncClient, arms: int = 3) -> tuple[dict, list[str | None], str]:
    agent = await create_agent(client, config=config(system_prompt="base"))
    variants = [
        await create_variant(client, agent["id"], overrides={"prompt_version": f"v{n}"}) for n in range(arms - 1)
    ]
    ids = [None, *(v["id"] for v in variants)]
    response = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "results", "arms": [{"variant": v or "base", "weight": 1} for v in ids]},
    )
    assert response.status_code == 201, response.text
    return agent, ids, response.json()["id"]


async def results(client: httpx.AsyncClient, agent: dict, experiment: str) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent['id']}/experiments/{experiment}/results")
    assert response.status_code == 200, response.text
    return response.json()


def cs_by_hand(arm: np.ndarray, control: np.ndarray, *, binary: bool = False) -> list[float]:
    """Results' always-valid interval of arm - control, written out from the contract: one stratum,
    alpha = 0.05, N* = 10,000 (variance p~(1 - p~), p~ = (s + 1)/(n + 2), for a success rate)."""

    def variance(x: np.ndarray) -> float:
        if binary:
            p = (float(x.sum()) + 1) / (len(x) + 2)
            return p * (1 - p)
        return float(np.var(x, ddof=1))

    d = float(arm.mean() - control.mean())
    v = variance(arm) / len(arm) + variance(control) / len(control)
    n = len(arm) + len(control)
    rho2 = (-2 * math.log(0.05) + math.log(1 - 2 * math.log(0.05))) / 10_000
    h = math.sqrt(v * 2 * (n * rho2 + 1) / (n * rho2) * math.log(math.sqrt(n * rho2 + 1) / 0.05))
    return [d - h, d + h]


async def test_results_equal_the_reference_libraries(client):
    agent, ids, experiment = await experiment_with(client)
    for variant_id, data in zip(ids, ARM_DATA, strict=True):
        batch = [
            outcome(
                variant_id,
                experiment_id=experiment,
                success=bool(s),
                score=float(sc),
                latency_ms=float(lat),
                input_tokens=n,
                output_tokens=n % 7,
                cost_usd=float(lat) / 1e6,
            )
            for n, (s, sc, lat) in enumerate(zip(data["success"], data["score"], data["latency"], strict=True))
        ]
        response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": batch})
        assert response.status_code == 202, response.text
    # Outcomes outside the experiment, or of a variant that is no arm, count nowhere here.
    await client.post(f"/v1/agents/{agent['id']}/outcomes", json=outcome(ids[1], success=True, score=99))
    body = await results(client, agent, experiment)
    assert body["object"] == "experiment_results" and body["status"] == "draft"
    control = ARM_DATA[0]
    for arm, data in zip(body["arms"], ARM_DATA, strict=True):
        n = len(data["success"])
        successes = int(data["success"].sum())
        assert arm["outcomes"] == n
        assert arm["input_tokens"] == sum(range(n)) and arm["mean_input_tokens"] == pytest.approx(sum(range(n)) / n)
        assert arm["latency_ms_p50"] == pytest.approx(float(np.percentile(data["latency"], 50)), rel=1e-9)
        assert arm["latency_ms_p95"] == pytest.approx(float(np.percentile(data["latency"], 95)), rel=1e-9)
        assert arm["success_rate"] == pytest.approx(successes / n)
        assert arm["success_rate_ci"] == pytest.approx(
            list(proportion_confint(successes, n, method="wilson")), rel=1e-9
        )
        mean = float(data["score"].mean())
        sem = float(scipy_stats.sem(data["score"]))
        assert arm["score_mean"] == pytest.approx(mean, rel=1e-9)
        assert arm["score_mean_ci"] == pytest.approx(
            list(scipy_stats.t.interval(0.95, n - 1, loc=mean, scale=sem)), rel=1e-9
        )
        if arm["arm"] == 0:
            assert arm["vs_control"] is None and arm["sequential"] is None
            continue
        c_tokens, tokens = (np.arange(len(d["success"])) % 7 for d in (control, data))
        assert arm["sequential"] == {
            "success_rate_diff_cs": pytest.approx(cs_by_hand(data["success"], control["success"], binary=True)),
            "score_mean_diff_cs": pytest.approx(cs_by_hand(data["score"], control["score"])),
            "latency_ms_mean_diff_cs": pytest.approx(cs_by_hand(data["latency"], control["latency"])),
            "cost_usd_mean_diff_cs": pytest.approx(cs_by_hand(data["latency"] / 1e6, control["latency"] / 1e6)),
            "output_tokens_mean_diff_cs": pytest.approx(cs_by_hand(tokens, c_tokens)),
        }
        versus = arm["vs_control"]
        c_successes, c_n = int(control["success"].sum()), len(control["success"])
        assert versus["success_rate_diff"] == pytest.approx(successes / n - c_successes / c_n)
        assert versus["success_p_value"] == pytest.approx(
            float(proportions_ztest([successes, c_successes], [n, c_n])[1]), rel=1e-7
        )
        assert versus["score_mean_diff"] == pytest.approx(mean - float(control["score"].mean()))
        assert versus["score_p_value"] == pytest.approx(
            float(scipy_stats.ttest_ind(data["score"], control["score"], equal_var=False).pvalue), rel=1e-7
        )


async def test_empty_arms_give_nulls_never_nan(client):
    agent, ids, experiment = await experiment_with(client, arms=2)
    body = await results(client, agent, experiment)
    for arm in body["arms"]:
        assert arm["outcomes"] == 0 and arm["input_tokens"] == 0
        for name in (
            "mean_input_tokens",
            "latency_ms_p50",
            "latency_ms_p95",
            "success_rate",
            "success_rate_ci",
            "score_mean",
            "score_mean_ci",
        ):
            assert arm[name] is None, name
    assert body["arms"][1]["vs_control"] == {
        "success_rate_diff": None,
        "success_p_value": None,
        "score_mean_diff": None,
        "score_p_value": None,
    }
    assert body["arms"][1]["sequential"] == {
        "success_rate_diff_cs": None,
        "score_mean_diff_cs": None,
        "latency_ms_mean_diff_cs": None,
        "cost_usd_mean_diff_cs": None,
        "output_tokens_mean_diff_cs": None,
    }
    # One outcome without success or score: counts and latency, still no intervals.
    await client.post(f"/v1/agents/{agent['id']}/outcomes", json=outcome(ids[1], experiment_id=experiment))
    arm = (await results(client, agent, experiment))["arms"][1]
    assert arm["outcomes"] == 1 and arm["latency_ms_p50"] == 500.0 and arm["success_rate"] is None
    assert arm["score_mean_ci"] is None
    text = (await client.get(f"/v1/agents/{agent['id']}/experiments/{experiment}/results")).text
    assert "NaN" not in text and "Infinity" not in text
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in arm.values())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.sampled_from([None, 0, 1]), st.integers(0, 10**12), st.integers(0, 10**6)),
            min_size=1,
            max_size=20,
        ),
        min_size=1,
        max_size=6,
    )
)
async def test_usage_totals_equal_the_outcomes_own_sums_even_when_batches_race(live_client, live_db, batches) -> None:
    """/usage reads per-variant totals kept by every batch; they must equal what the stored
    outcomes add up to, with batches for the same agent and variants sent at once."""
    import asyncio

    from sqlalchemy import text as sql

    agent = await create_agent(live_client)
    variants = [await create_variant(live_client, agent["id"]) for _ in range(2)]

    async def send(batch: list[tuple[int | None, int, int]]) -> None:
        data = [
            {
                "variant_id": None if v is None else variants[v]["id"],
                "input_tokens": i,
                "output_tokens": o,
                "latency_ms": 1,
            }
            for v, i, o in batch
        ]
        response = await live_client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": data})
        assert response.status_code == 202, response.text

    await asyncio.gather(*(send(batch) for batch in batches))
    usage = (await live_client.get(f"/v1/agents/{agent['id']}/usage")).json()
    async with live_db.read() as conn:
        rows = await conn.execute(
            sql(
                "SELECT variant_id, count(*) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o,"
                "       coalesce(sum(coalesce(estimated_cost_usd, cost_usd::numeric)), 0) AS c,"
                "       coalesce(sum(estimated_cost_usd), 0) AS e"
                " FROM outcomes WHERE agent_id = :agent GROUP BY variant_id ORDER BY variant_id NULLS FIRST"
            ),
            {"agent": agent["id"]},
        )
        expected = [
            {
                "variant_id": r.variant_id,
                "input_tokens": int(r.i),
                "output_tokens": int(r.o),
                "total_tokens": int(r.i) + int(r.o),
                "outcomes": r.n,
                "cost_usd": float(r.c),
                "estimated_cost_usd": float(r.e),
            }
            for r in rows
        ]
    assert usage["by_variant"] == expected
    assert usage["outcomes"] == sum(len(b) for b in batches)
