"""Experiment results from per-arm totals and latency bins (issue 17): triggers on outcomes
keep them in the transaction that stores (or deletes) the rows, and results read them
instead of every outcome. Their figures must equal those computed from the raw rows:
counts, sums, means and variances exactly (so intervals and p-values too), percentiles
exactly up to 100,000 outcomes per arm and within 1% beyond (contract 1.1)."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.outcomes import repository
from services.api.outcomes.figures import LATENCY_MAPPING, ArmFigures, results_from
from services.shared.stats import Moments
from tests.helpers import create_agent, create_variant

BOUND = 1e12
PERCENTILES = text(
    "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms) FROM outcomes"
    " WHERE experiment_id = :experiment AND variant_id IS NOT DISTINCT FROM :variant"
)


async def experiment_with(client: httpx.AsyncClient, arms: int = 3) -> tuple[dict, list[str | None], dict]:
    """An agent, its arms' variant ids (arm 0 the base config) and a draft experiment over them."""
    agent = await create_agent(client)
    ids: list[str | None] = [None] + [(await create_variant(client, agent["id"]))["id"] for _ in range(arms - 1)]
    response = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "scale", "arms": [{"variant": v or "base", "weight": 1} for v in ids]},
    )
    assert response.status_code == 201, response.text
    return agent, ids, response.json()


async def send(client: httpx.AsyncClient, agent: dict, outcomes: list[dict[str, Any]]) -> None:
    for start in range(0, len(outcomes), 1000):
        response = await client.post(
            f"/v1/agents/{agent['id']}/outcomes", json={"data": outcomes[start : start + 1000]}
        )
        assert response.status_code == 202, response.text


async def results(client: httpx.AsyncClient, agent: dict, experiment: dict) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/results")
    assert response.status_code == 200, response.text
    return response.json()


def clamped(score: float) -> float:
    """How results count a stored score: clamped to the bounds (NaN sorts above every number)."""
    return BOUND if math.isnan(score) else max(-BOUND, min(BOUND, score))


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def exact_moments(values: list[Fraction]) -> Moments:
    return Moments(len(values), sum(values, Fraction(0)), sum((v * v for v in values), Fraction(0)))


async def from_raw_rows(conn: AsyncConnection, experiment: dict) -> dict[str, Any]:
    """The results object computed from the experiment's rows themselves: Python's exact
    `statistics.mean` and `variance` (exact fractions, rounded once), percentile_cont over
    the rows, and the same statistics functions for intervals and p-values."""
    figures = []
    for arm in experiment["arms"]:
        params = {"experiment": experiment["id"], "variant": arm["variant_id"]}
        rows = (
            await conn.execute(
                text(
                    "SELECT input_tokens, output_tokens, success, score,"
                    "       coalesce(estimated_cost_usd, cost_usd::numeric) AS cost, estimated_cost_usd,"
                    # As the arm totals count latencies: clamped to the bounds, as numeric casts them.
                    "       greatest(least(latency_ms, float8 '1e12'), float8 '0')::numeric AS latency"
                    " FROM outcomes"
                    " WHERE experiment_id = :experiment AND variant_id IS NOT DISTINCT FROM :variant"
                ),
                params,
            )
        ).all()
        scores = [clamped(r.score) for r in rows if r.score is not None]
        judged = [r.success for r in rows if r.success is not None]
        p50, p95 = (await conn.scalar(PERCENTILES, params)) or (None, None)
        figures.append(
            ArmFigures(
                outcomes=len(rows),
                input_tokens=sum(r.input_tokens for r in rows),
                output_tokens=sum(r.output_tokens for r in rows),
                p50=finite(p50),
                p95=finite(p95),
                judged=len(judged),
                successes=sum(judged),
                scored=len(scores),
                score_mean=statistics.mean(scores) if scores else None,
                score_var=statistics.variance(scores) if len(scores) > 1 else None,
                cost_usd=sum((r.cost for r in rows if r.cost is not None), Decimal(0)),
                estimated_cost_usd=sum((r.estimated_cost_usd for r in rows if r.estimated_cost_usd), Decimal(0)),
                score=exact_moments([Fraction(s) for s in scores]),
                latency_ms=exact_moments([Fraction(r.latency) for r in rows]),
                cost=exact_moments([Fraction(r.cost) for r in rows if r.cost is not None]),
                output_tokens_moments=exact_moments([Fraction(r.output_tokens) for r in rows]),
            )
        )
    return results_from(experiment, figures)


# ------------------------------------------------------------------ exact sums, random batches

scores = st.one_of(
    st.none(),
    st.floats(-BOUND, BOUND, allow_nan=False),
    st.sampled_from([0.1, -0.0, 5e-324, 1e-300, BOUND, -BOUND, 4.0, 4.000000000000001]),
)
an_outcome = st.tuples(
    st.integers(0, 2),  # the arm
    st.integers(0, 10**12),
    st.integers(0, 10**6),
    st.one_of(st.floats(0, 1e12, allow_nan=False), st.sampled_from([0.0, 5e-324, 1.0, 930.5])),
    st.one_of(st.none(), st.booleans()),
    scores,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(an_outcome, min_size=1, max_size=40), min_size=1, max_size=6))
async def test_results_equal_the_figures_of_the_raw_rows_even_when_batches_race(live_client, live_db, batches) -> None:
    """Random batches, sent at once for the same arms: every figure of /results (counts,
    token sums and means, success rates, score means, intervals, p-values, percentiles)
    equals, to the last bit, what the stored rows give."""
    agent, ids, experiment = await experiment_with(live_client)

    def body(batch: list[tuple]) -> list[dict[str, Any]]:
        return [
            {
                "variant_id": ids[arm],
                "experiment_id": experiment["id"],
                "input_tokens": i,
                "output_tokens": o,
                "latency_ms": latency,
                **({} if success is None else {"success": success}),
                **({} if score is None else {"score": score}),
            }
            for arm, i, o, latency, success, score in batch
        ]

    await asyncio.gather(*(send(live_client, agent, body(batch)) for batch in batches))
    got = await results(live_client, agent, experiment)
    async with live_db.read() as conn:
        expected = await from_raw_rows(conn, experiment)
    assert got == expected
    assert sum(arm["outcomes"] for arm in got["arms"]) == sum(map(len, batches))


async def test_score_sums_are_exact_whatever_the_doubles(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    """The stored sums of scores and of their squares are the exact sums of the (clamped)
    doubles, subnormals, signed zeros and rows written past the bounds included."""
    agent, ids, experiment = await experiment_with(client, arms=2)
    values = ["0.1", "-0.0", "5e-324", "1e-300", "2.2250738585072014e-308", "1e12", "-1e12", "123456.789",
              "1e155", "-1.7e308", "Infinity", "-Infinity", "NaN", "0.30000000000000004", "-7.5"]  # fmt: skip
    await conn.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms, score)"
            " SELECT :agent, NULL, :experiment, 1, 1, 1, CAST(s AS float8) FROM unnest(CAST(:scores AS text[])) AS s"
        ),
        {"agent": agent["id"], "experiment": experiment["id"], "scores": values},
    )
    row = (
        await conn.execute(
            text("SELECT scored, score_sum, score_sumsq FROM experiment_arm_totals WHERE experiment_id = :e"),
            {"e": experiment["id"]},
        )
    ).one()
    exact = [Fraction(clamped(float(v))) for v in values]
    assert row.scored == len(values)
    assert Fraction(row.score_sum) == sum(exact)
    assert Fraction(row.score_sumsq) == sum(x * x for x in exact)
    assert await results(client, agent, experiment) == await from_raw_rows(conn, experiment)


# ------------------------------------------------------------------ percentiles


def latencies(rng: random.Random, n: int) -> list[float]:
    """Latencies over many orders of magnitude, with zeros and ties."""
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.05:
            out.append(0.0)
        elif kind < 0.15:
            out.append(rng.choice([250.0, 1000.0, 5e-324]))
        else:
            out.append(10 ** rng.uniform(-3, 9))
    return out


@pytest.mark.parametrize("n", [1, 2, 39, 40, 41, 300, 2500])
async def test_percentiles_are_exact_up_to_the_limit_and_within_1pc_beyond(
    client: httpx.AsyncClient, conn: AsyncConnection, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    """With the limit lowered to 40: up to 40 outcomes an arm's p50 and p95 are
    percentile_cont's own; beyond, they are within 1% of it (the sketch's bins)."""
    monkeypatch.setattr(repository, "EXACT_PERCENTILES_UP_TO", 40)
    agent, ids, experiment = await experiment_with(client, arms=2)
    rng = random.Random(n)
    for variant_id in ids:
        data = latencies(rng, n)
        await send(
            client,
            agent,
            [{"variant_id": variant_id, "experiment_id": experiment["id"], "input_tokens": 1, "output_tokens": 1,
              "latency_ms": latency} for latency in data],
        )  # fmt: skip
    got = await results(client, agent, experiment)
    for arm in got["arms"]:
        exact = await conn.scalar(PERCENTILES, {"experiment": experiment["id"], "variant": arm["variant_id"]})
        figures = [arm["latency_ms_p50"], arm["latency_ms_p95"]]
        if n <= 40:
            assert figures == exact
        else:
            for figure, truth in zip(figures, exact, strict=True):
                assert abs(figure - truth) <= 0.01 * truth * (1 + 1e-9), (figure, truth)


def same(a: float | None, b: float | None) -> bool:
    """Equal as percentile_cont's results: NaN equals NaN, 0.0 and -0.0 are the same latency."""
    return (a is not None and b is not None and math.isnan(a) and math.isnan(b)) or a == b


SPECIAL_ARMS = {
    "one": ["930.5"],
    "two": ["5", "1000"],
    "two equal": ["250", "250"],
    "three": ["0", "5e-324", "1.7e308"],
    "whole ranks": [str(v) for v in range(21)],  # ranks 10 and 19 exactly: no interpolation
    "many equal": ["250"] * 90 + ["1000"] * 5 + ["0"] * 4 + ["3.5"],
    "equal but signed zeros": ["0", "-0"] * 20 + ["7"],
    "ties around p95": ["1"] * 10 + ["2"] * 19 + ["1e12"],
    "infinite at p95": ["1", "2", "3"] * 6 + ["Infinity", "Infinity"],
    "infinite at both": ["Infinity"] * 3,
    "NaN last": ["NaN", "1", "NaN", "2", "Infinity", "0"] * 3,
    "NaN only": ["NaN"] * 2,
    "largest doubles": ["1.7976931348623157e308", "0", "1.7976931348623157e308", "8.9e307"],
}


async def test_exact_percentiles_equal_percentile_cont_whatever_the_latencies(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    """Arms of 1, 2 and a few outcomes, many equal latencies, ranks falling on a row or
    between two, and latencies written straight into the table past the API's bounds
    (infinity, NaN, which percentile_cont and the index both sort last): p50 and p95, as read
    from the rows at their ranks in the index, are percentile_cont's to the bit (NaN where it
    gives NaN), and /results shows the same figures as the raw rows give (null where not finite)."""
    names = list(SPECIAL_ARMS)
    for chunk in (names[:7], names[7:]):  # experiments of at most 10 arms, the first one the base
        agent, ids, experiment = await experiment_with(client, arms=len(chunk))
        for variant_id, name in zip(ids, chunk, strict=True):
            await conn.execute(
                text(
                    "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens,"
                    " latency_ms) SELECT :agent, :variant, :experiment, 1, 1, CAST(l AS float8)"
                    " FROM unnest(CAST(:ls AS text[])) AS l"
                ),
                {"agent": agent["id"], "variant": variant_id, "experiment": experiment["id"], "ls": SPECIAL_ARMS[name]},
            )
        aggregates = await repository.arm_aggregates(conn, experiment["id"])
        for variant_id, name in zip(ids, chunk, strict=True):
            exact = await conn.scalar(PERCENTILES, {"experiment": experiment["id"], "variant": variant_id})
            got = [aggregates[variant_id]["p50"], aggregates[variant_id]["p95"]]
            assert all(same(g, e) for g, e in zip(got, exact, strict=True)), (name, got, exact)
        assert await results(client, agent, experiment) == await from_raw_rows(conn, experiment)


async def test_exact_percentiles_read_the_rows_in_index_order(conn: AsyncConnection) -> None:
    """Both statements (the base arm's `IS NULL`, a variant's equality) read the latencies
    around each rank with an index-only scan, in the index's order: no sort of the arm's rows."""
    for query, params in ((repository.EXACT_BASE, {}), (repository.EXACT_VARIANT, {"variant": "var_x"})):
        params = {"experiment": "exp_x", "skip_0": 0, "take_0": 2, "skip_1": 0, "take_1": 2, **params}
        await conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table: as at scale
        plan = "\n".join((await conn.execute(text(f"EXPLAIN {query.text}"), params)).scalars())
        assert plan.count("Index Only Scan") == 2 and "Sort" not in plan, plan
        assert "Index Only Scan Backward" in plan, plan  # p95: from the top, fewer entries before it


async def test_the_real_limit_is_100000_outcomes_an_arm(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    """At 100,000 outcomes the percentiles are percentile_cont's exactly; one more, and they
    come from the sketch, within 1%."""
    assert repository.EXACT_PERCENTILES_UP_TO == 100_000
    agent, ids, experiment = await experiment_with(client, arms=2)
    insert = text(
        "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms)"
        " SELECT :agent, NULL, :experiment, 1, 1, exp(random() * 12) FROM generate_series(1, :count)"
    )
    params = {"agent": agent["id"], "experiment": experiment["id"]}
    await conn.execute(insert, {**params, "count": 100_000})
    exact = await conn.scalar(PERCENTILES, {"experiment": experiment["id"], "variant": None})
    arm = (await results(client, agent, experiment))["arms"][0]
    assert arm["outcomes"] == 100_000 and [arm["latency_ms_p50"], arm["latency_ms_p95"]] == exact

    await conn.execute(insert, {**params, "count": 1})
    exact = await conn.scalar(PERCENTILES, {"experiment": experiment["id"], "variant": None})
    arm = (await results(client, agent, experiment))["arms"][0]
    assert arm["outcomes"] == 100_001
    sketched = [arm["latency_ms_p50"], arm["latency_ms_p95"]]
    assert sketched != exact  # (bins' values are not the rows' latencies)
    for figure, truth in zip(sketched, exact, strict=True):
        assert abs(figure - truth) <= 0.01 * truth * (1 + 1e-9), (figure, truth)


async def test_the_database_bins_latencies_as_ddsketch_does(conn: AsyncConnection) -> None:
    """`latency_bin()` (the triggers' key) equals ddsketch's LogarithmicMapping(0.01).key,
    including next to the bins' edges; zero and non-finite latencies have bins of their own."""
    rng = random.Random(17)
    values = [10 ** rng.uniform(-320, 308) for _ in range(5000)] + [5e-324, 1.0, 1e12, 1.7976931348623157e308]
    for key in range(-200, 1200, 7):  # around the edges gamma**k
        edge = LATENCY_MAPPING.gamma**key
        values += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    keys = (
        await conn.execute(text("SELECT latency_bin(x) FROM unnest(CAST(:xs AS float8[])) AS x"), {"xs": values})
    ).scalars()
    assert list(keys) == [LATENCY_MAPPING.key(v) for v in values]
    special = await conn.execute(text("SELECT latency_bin(0), latency_bin('Infinity'), latency_bin('NaN')"))
    assert tuple(special.one()) == (-(2**31), 2**31 - 1, 2**31 - 1)
    for value in values[:1000]:
        if value > LATENCY_MAPPING.min_possible:
            assert abs(LATENCY_MAPPING.value(LATENCY_MAPPING.key(value)) - value) <= 0.01 * value * (1 + 1e-9)


# ------------------------------------------------------------------ deletes keep them consistent


async def totals_and_bins(conn: AsyncConnection, experiment_id: str) -> tuple[list, list]:
    totals = await conn.execute(
        text("SELECT * FROM experiment_arm_totals WHERE experiment_id = :e ORDER BY variant_key"), {"e": experiment_id}
    )
    bins = await conn.execute(
        text("SELECT variant_key, bin, count FROM experiment_latency_bins WHERE experiment_id = :e ORDER BY 1, 2"),
        {"e": experiment_id},
    )
    return [tuple(r) for r in totals], [tuple(r) for r in bins]


async def test_deleting_outcomes_or_purging_the_agent_keeps_totals_and_bins_consistent(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    agent, ids, experiment = await experiment_with(client, arms=3)
    rng = random.Random(3)
    await send(
        client,
        agent,
        [{"variant_id": ids[k % 3], "experiment_id": experiment["id"], "input_tokens": k, "output_tokens": 2 * k,
          "latency_ms": latency, "success": k % 4 == 0, "score": rng.uniform(-5, 5)}
         for k, latency in enumerate(latencies(rng, 1500))],
    )  # fmt: skip
    # Some rows deleted by hand: every figure follows, the emptied arm's rows go.
    await conn.execute(
        text("DELETE FROM outcomes WHERE experiment_id = :e AND (variant_id = :v OR id % 5 = 0)"),
        {"e": experiment["id"], "v": ids[2]},
    )
    assert await results(client, agent, experiment) == await from_raw_rows(conn, experiment)
    totals, bins = await totals_and_bins(conn, experiment["id"])
    assert [t[1] for t in totals] == sorted(["", ids[1]])  # no row left for the emptied arm
    assert all(count > 0 for _, _, count in bins)
    assert sum(count for _, _, count in bins) == sum(t[2] for t in totals)

    # An UPDATE moves a row between arms.
    await conn.execute(
        text("UPDATE outcomes SET variant_id = NULL, score = 1e300 WHERE id = (SELECT max(id) FROM outcomes"
             " WHERE experiment_id = :e AND variant_id IS NOT NULL)"),
        {"e": experiment["id"]},
    )  # fmt: skip
    assert await results(client, agent, experiment) == await from_raw_rows(conn, experiment)

    # A purge erases the outcomes (ON DELETE CASCADE) and, with them, every total and bin.
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code in (200, 204)
    purged = await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})
    assert purged.status_code in (200, 204), purged.text
    assert await totals_and_bins(conn, experiment["id"]) == ([], [])


async def test_truncating_outcomes_empties_totals_and_bins(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    agent, ids, experiment = await experiment_with(client, arms=2)
    await send(
        client,
        agent,
        [{"variant_id": None, "experiment_id": experiment["id"], "input_tokens": 1, "output_tokens": 1,
          "latency_ms": 5.0, "score": 1.5}],
    )  # fmt: skip
    await conn.execute(text("TRUNCATE outcomes"))
    assert await conn.scalar(text("SELECT count(*) FROM experiment_arm_totals")) == 0
    assert await conn.scalar(text("SELECT count(*) FROM experiment_latency_bins")) == 0
