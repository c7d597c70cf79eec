"""Outcome numbers are bounded (contract 1.1), and results, usage and the console's pages
answer with finite figures whatever the outcomes hold: the extremes the bounds allow, and
rows stored before the bounds existed (issue 16, item 2)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats as scipy_stats
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.app import create_app
from services.api.db import Database
from tests.console.conftest import Browser, make_key
from tests.helpers import assert_problem, create_agent, create_variant, problem_params, settings_for_tests

BOUND = 10**12


def outcome(variant_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"variant_id": variant_id, "input_tokens": 100, "output_tokens": 20, "latency_ms": 500.0, **fields}


async def running_experiment(client: httpx.AsyncClient) -> tuple[dict[str, Any], list[str | None], str]:
    """An agent, its arms' variant ids (arm 0 the base config, arm 1 a variant) and its
    running experiment."""
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"prompt_version": "v2"})
    response = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "extremes", "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]},
    )
    assert response.status_code == 201, response.text
    experiment = response.json()["id"]
    started = await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment}/start")
    assert started.status_code == 200, started.text
    return agent, [None, variant["id"]], experiment


@pytest.fixture
async def console(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A console session (an admin key signed in) on the test's database."""
    app = create_app(settings_for_tests(), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        _, secret = await make_key(db, "admin")
        signed = await Browser(http).sign_in(secret)
        assert signed.status_code == 303, signed.text
        yield http


def all_finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a decoded JSON body."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    return True


async def readable(client: httpx.AsyncClient, console: httpx.AsyncClient, agent: dict, experiment: str) -> dict:
    """/results, /usage, the experiment's page and the agent's page all answer 200, with finite
    numbers or null; the results object is returned."""
    results = await client.get(f"/v1/agents/{agent['id']}/experiments/{experiment}/results")
    usage = await client.get(f"/v1/agents/{agent['id']}/usage")
    page = await console.get(f"/console/agents/{agent['slug']}/experiments/{experiment}")
    agent_page = await console.get(f"/console/agents/{agent['slug']}")
    statuses = [r.status_code for r in (results, usage, page, agent_page)]
    assert statuses == [200, 200, 200, 200], (results.text[:300], usage.text[:300], page.text[-300:])
    for body in (results.text, usage.text):
        assert "NaN" not in body and "Infinity" not in body
        assert all_finite(json.loads(body))
    return results.json()


async def store_directly(conn: AsyncConnection, agent_id: str, experiment: str, variant_id: str | None, rows) -> None:
    """Rows written straight into the table, as outcomes stored before the bounds existed (or
    by hand) may be: (input_tokens, output_tokens, latency_ms, score), the floats as text so
    that 'Infinity' and 'NaN' go in too."""
    await conn.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms, score)"
            " SELECT :agent, :variant, :experiment, i, o, CAST(l AS float8), CAST(s AS float8)"
            " FROM unnest(CAST(:inputs AS bigint[]), CAST(:outputs AS bigint[]), CAST(:latencies AS text[]),"
            "             CAST(:scores AS text[])) AS r(i, o, l, s)"
        ),
        {
            "agent": agent_id,
            "variant": variant_id,
            "experiment": experiment,
            "inputs": [r[0] for r in rows],
            "outputs": [r[1] for r in rows],
            "latencies": [r[2] for r in rows],
            "scores": [r[3] for r in rows],
        },
    )


def clamped(score: float) -> float:
    """How results count a stored score: clamped to the bounds (NaN sorts above every number)."""
    return float(BOUND) if math.isnan(score) else max(-BOUND, min(BOUND, score))


async def test_scores_of_1e155_are_refused_and_stored_ones_no_longer_break_results(
    client: httpx.AsyncClient, console: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    """Two outcomes scored 1e155 and -1e155 were accepted, then /results and the experiment's
    page were 500 for good (var_samp overflowed a double). Now the API refuses them, and the
    same two rows, stored before the bounds existed, leave every page readable."""
    agent, _, experiment = await running_experiment(client)
    batch = [
        outcome(None, experiment_id=experiment, score=1e155),
        outcome(None, experiment_id=experiment, score=-1e155),
    ]
    refused = await client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": batch})
    assert_problem(refused, 422, "validation_error")
    assert problem_params(refused) == {"data[0].score", "data[1].score"}

    await store_directly(conn, agent["id"], experiment, None, [(100, 20, "500", "1e155"), (100, 20, "500", "-1e155")])
    arm = (await readable(client, console, agent, experiment))["arms"][0]
    assert arm["outcomes"] == 2 and arm["score_mean"] == 0.0  # counted as +-1e12
    lo, hi = arm["score_mean_ci"]
    assert lo == pytest.approx(-hi) and hi == pytest.approx(float(scipy_stats.t.ppf(0.975, 1)) * BOUND, rel=1e-12)


async def test_every_number_beyond_its_bound_is_422_naming_it(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    path = f"/v1/agents/{agent['id']}/outcomes"
    at_the_bounds = outcome(input_tokens=BOUND, output_tokens=BOUND, latency_ms=1e12, cost_usd=1e12, score=-1e12)
    batch = [
        at_the_bounds,
        outcome(input_tokens=BOUND + 1),
        outcome(output_tokens=10**15),
        outcome(latency_ms=1.0000001e12),
        outcome(cost_usd=2e12),
        outcome(score=1e12 + 1),
        outcome(score=-1e13),
        outcome(score=10**400),  # an integer no float holds
        outcome(score=True),  # a boolean is not a number (before: stored as 1.0)
        outcome(latency_ms=False, cost_usd=True),
        outcome(input_tokens=2.5),  # tokens are whole; 2.0 is 2
        outcome(latency_ms=0, cost_usd=0, score=1e12, input_tokens=0.0, output_tokens=0),
    ]
    response = await client.post(path, json={"data": batch})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {
        "data[1].input_tokens",
        "data[2].output_tokens",
        "data[3].latency_ms",
        "data[4].cost_usd",
        "data[5].score",
        "data[6].score",
        "data[7].score",
        "data[8].score",
        "data[9].latency_ms",
        "data[9].cost_usd",
        "data[10].input_tokens",
    }
    # 1e400 is not a finite number: JSON can write it, no double holds it.
    infinite = await client.post(
        path,
        content=b'{"variant_id": null, "input_tokens": 1, "output_tokens": 1, "latency_ms": 1e400}',
        headers={"Content-Type": "application/json"},
    )
    assert problem_params(infinite) == {"latency_ms"}
    one = await client.post(path, json=outcome(score=-2e12, latency_ms=-1))
    assert problem_params(one) == {"score", "latency_ms"}
    accepted = await client.post(path, json={"data": [batch[0], batch[-1]]})
    assert accepted.status_code == 202, accepted.text


async def test_the_extremes_the_bounds_allow_give_exact_figures(
    client: httpx.AsyncClient, console: httpx.AsyncClient
) -> None:
    """Thousands of outcomes at the bounds: scores of +-1e12, a trillion tokens each, latencies
    of 0 and 1e12. Results, usage and the pages answer, equal to Python's own arithmetic."""
    agent, ids, experiment = await running_experiment(client)
    rng = np.random.default_rng(16_2)
    n = 3000
    data = [
        # The control: scores at both bounds (the widest spread there can be).
        {"score": [float(BOUND) if k % 2 else -float(BOUND) for k in range(n)], "latency": [0.0, 1e12] * (n // 2)},
        # The arm: scores anywhere in the bounds, a little above the control on average.
        {
            "score": [float(s) for s in np.clip(rng.normal(0.02e12, 0.6e12, n), -BOUND, BOUND)],
            "latency": [float(x) for x in rng.uniform(0, 1e12, n)],
        },
    ]
    for variant_id, arm in zip(ids, data, strict=True):
        batch = [
            outcome(
                variant_id,
                experiment_id=experiment,
                input_tokens=BOUND,
                output_tokens=BOUND - k,
                latency_ms=latency,
                cost_usd=1e12,
                success=k % 3 == 0,
                score=score,
            )
            for k, (score, latency) in enumerate(zip(arm["score"], arm["latency"], strict=True))
        ]
        for start in range(0, n, 1000):
            response = await client.post(
                f"/v1/agents/{agent['id']}/outcomes", json={"data": batch[start : start + 1000]}
            )
            assert response.status_code == 202, response.text

    results = await readable(client, console, agent, experiment)
    output_tokens = sum(BOUND - k for k in range(n))
    for arm, expected in zip(results["arms"], data, strict=True):
        scores = expected["score"]
        assert arm["outcomes"] == n
        assert arm["input_tokens"] == n * BOUND and arm["output_tokens"] == output_tokens
        assert arm["mean_input_tokens"] == BOUND
        assert arm["mean_output_tokens"] == pytest.approx(output_tokens / n, rel=1e-15)
        assert arm["latency_ms_p50"] == pytest.approx(float(np.percentile(expected["latency"], 50)), rel=1e-12)
        assert arm["latency_ms_p95"] == pytest.approx(float(np.percentile(expected["latency"], 95)), rel=1e-12)
        mean = float(sum(map(Fraction, scores)) / n)  # exact, rounded once
        assert arm["score_mean"] == pytest.approx(mean, rel=1e-12, abs=1e-3)
        sem = math.sqrt(statistics.variance(scores) / n)
        assert arm["score_mean_ci"] == pytest.approx(
            list(scipy_stats.t.interval(0.95, n - 1, loc=mean, scale=sem)), rel=1e-9
        )
    versus = results["arms"][1]["vs_control"]
    assert versus["score_mean_diff"] == pytest.approx(results["arms"][1]["score_mean"], rel=1e-12)
    welch = scipy_stats.ttest_ind(data[1]["score"], data[0]["score"], equal_var=False)
    assert versus["score_p_value"] == pytest.approx(float(welch.pvalue), rel=1e-6, abs=1e-300)

    usage = (await client.get(f"/v1/agents/{agent['id']}/usage")).json()
    assert usage["input_tokens"] == 2 * n * BOUND and usage["output_tokens"] == 2 * output_tokens
    assert usage["total_tokens"] == 2 * n * BOUND + 2 * output_tokens and usage["outcomes"] == 2 * n


async def test_rows_stored_before_the_bounds_give_finite_figures(
    client: httpx.AsyncClient, console: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    """Whatever a row holds (a score or latency near the largest double, infinities, NaN, the
    largest bigint of tokens; written straight into the tables), results, usage and the
    pages answer 200 with finite numbers or null, and the scores count clamped to the bounds."""
    agent, ids, experiment = await running_experiment(client)
    big = 2**63 - 1
    control = [
        (big, big, "1.7e308", "1.7e308"),
        (big, big, "1.7e308", "1.6e308"),
        (0, 0, "0", "-1.7e308"),
        (0, 0, "5", "1e155"),
        (0, 0, "5", "-1e155"),
        (0, 0, "5", "3.5"),
    ]
    arm = [(1, 2, "Infinity", "Infinity"), (1, 2, "Infinity", "-Infinity"), (1, 2, "Infinity", "NaN")]
    await store_directly(conn, agent["id"], experiment, ids[0], control)
    await store_directly(conn, agent["id"], experiment, ids[1], arm)
    # Usage totals of outcomes of up to 2**62 tokens, as the API accepted before the bounds.
    await conn.execute(
        text(
            "INSERT INTO usage_totals (agent_id, variant_key, outcomes, input_tokens, output_tokens)"
            " VALUES (:agent, '', 10000000, :huge, :huge)"
        ),
        {"agent": agent["id"], "huge": 10**7 * 2**62},
    )

    results = await readable(client, console, agent, experiment)
    first, second = results["arms"]
    assert first["outcomes"] == 6 and first["input_tokens"] == 2 * big and first["mean_input_tokens"] == 2 * big / 6
    assert first["latency_ms_p95"] == pytest.approx(float(np.percentile([1.7e308, 1.7e308, 0, 5, 5, 5], 95)))
    scores = [clamped(float(r[3])) for r in control]
    assert first["score_mean"] == pytest.approx(statistics.fmean(scores), rel=1e-12)
    sem = math.sqrt(statistics.variance(scores) / len(scores))
    expected = scipy_stats.t.interval(0.95, len(scores) - 1, loc=statistics.fmean(scores), scale=sem)
    assert first["score_mean_ci"] == pytest.approx(list(expected), rel=1e-9)
    # Infinite latencies have no finite percentile: null. Infinite and NaN scores clamp.
    assert second["latency_ms_p50"] is None and second["latency_ms_p95"] is None
    assert second["score_mean"] == pytest.approx(statistics.fmean([1e12, -1e12, 1e12]), rel=1e-12)
    assert second["vs_control"]["score_p_value"] is not None

    usage = (await client.get(f"/v1/agents/{agent['id']}/usage")).json()
    assert usage["input_tokens"] == 10**7 * 2**62 and usage["total_tokens"] == 2 * 10**7 * 2**62
