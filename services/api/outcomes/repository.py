"""Queries on outcomes and their usage totals. Functions take a connection; the caller owns
the transaction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.outcomes.figures import interpolate, percentile_rank, sketched_percentiles

COLUMNS = (
    "agent_id",
    "variant_id",
    "experiment_id",
    "environment_id",
    "subject",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "cost_usd",
    "success",
    "score",
    "estimated_cost_usd",
    "step",
)


async def insert_many(conn: AsyncConnection, records: Sequence[tuple[Any, ...]]) -> None:
    """Insert outcome rows (in COLUMNS order) with one binary COPY: one round trip a batch."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table("outcomes", records=records, columns=COLUMNS)


ADD_TO_TOTALS = text(
    "INSERT INTO usage_totals AS t (agent_id, environment_id, variant_key, outcomes, input_tokens, output_tokens,"
    "                               cost_usd, estimated_cost_usd)"
    " SELECT :agent, environment, key, n, i, o, c, e"
    " FROM unnest(CAST(:environments AS text[]), CAST(:keys AS text[]), CAST(:counts AS bigint[]),"
    "      CAST(:inputs AS numeric[]), CAST(:outputs AS numeric[]), CAST(:costs AS numeric[]),"
    "      CAST(:estimated AS numeric[])) AS batch(environment, key, n, i, o, c, e)"
    " ORDER BY environment, key"  # the same order in every transaction: concurrent batches cannot deadlock
    " ON CONFLICT (agent_id, environment_id, variant_key) DO UPDATE SET outcomes = t.outcomes + EXCLUDED.outcomes,"
    "     input_tokens = t.input_tokens + EXCLUDED.input_tokens,"
    "     output_tokens = t.output_tokens + EXCLUDED.output_tokens,"
    "     cost_usd = t.cost_usd + EXCLUDED.cost_usd,"
    "     estimated_cost_usd = t.estimated_cost_usd + EXCLUDED.estimated_cost_usd"
)


@dataclass(frozen=True, slots=True)
class Sum:
    """A batch's outcomes of one environment and config, summed: counts and tokens, the known
    costs (exact: each reported one as its 15-digit decimal, as PostgreSQL's numeric cast
    reads a double, each estimate as it is) and the estimated part of them."""

    outcomes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    estimated_cost_usd: Decimal = Decimal(0)


# (environment id, variant key) -> its sums
Sums = dict[tuple[str, str], Sum]


async def add_to_totals(conn: AsyncConnection, agent_id: str, sums: Sums) -> None:
    """Add a batch's sums to the agent's usage totals, one row per environment and variant
    key ("" for the base config)."""
    keys = sorted(sums)
    await conn.execute(
        ADD_TO_TOTALS,
        {
            "agent": agent_id,
            "environments": [environment for environment, _ in keys],
            "keys": [key for _, key in keys],
            "counts": [sums[k].outcomes for k in keys],
            "inputs": [sums[k].input_tokens for k in keys],
            "outputs": [sums[k].output_tokens for k in keys],
            "costs": [sums[k].cost_usd for k in keys],
            "estimated": [sums[k].estimated_cost_usd for k in keys],
        },
    )


# Summed over environments (none named) or one environment's rows: a few rows either way.
USAGE = text(
    "SELECT nullif(variant_key, '') AS variant_id, sum(outcomes)::bigint AS outcomes,"
    "       sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,"
    "       sum(cost_usd) AS cost_usd, sum(estimated_cost_usd) AS estimated_cost_usd"
    " FROM usage_totals WHERE agent_id = :agent"
    "   AND (CAST(:environment AS text) IS NULL OR environment_id = CAST(:environment AS text))"
    " GROUP BY variant_key ORDER BY variant_key"  # "" (the base) first
)


async def usage_totals(conn: AsyncConnection, agent_id: str, *, environment_id: str | None = None) -> list[RowMapping]:
    """The agent's usage totals, one row per variant (the base config's first), in one
    environment or (None) summed over all: a few rows kept up to date by each batch, not a
    sum over every outcome."""
    params = {"agent": agent_id, "environment": environment_id}
    return list((await conn.execute(USAGE, params)).mappings().all())


# Results read the arm totals and latency bins that triggers on `outcomes` keep (migration
# a7d9f1b3c5e8), in the transaction that stores or deletes the rows: a few rows an arm,
# however many outcomes there are (a pass over every outcome row took seconds at 10 million).
# Counts and token sums are exact; so are the sums of scores and of their squares (numeric,
# each double converted exactly, scores clamped to +-1e12 as the API bounds them: rows stored
# before the bounds may hold any double), from which `figures` computes means and variances;
# so are the sums and sums of squares of latencies, output tokens and known costs (migration
# d9f1b3c5e7a0), from which it computes results' always-valid intervals.
TOTALS = text(
    "SELECT nullif(variant_key, '') AS variant_id, outcomes, input_tokens, output_tokens,"
    "       judged, successes, scored, score_sum, score_sumsq, cost_usd, estimated_cost_usd,"
    "       latency_ms_sum, latency_ms_sumsq, output_tokens_sumsq, costed, cost_usd_sumsq"
    " FROM experiment_arm_totals WHERE experiment_id = :experiment"
)

# Latency percentiles (p50, p95) are exact for an arm of up to this many outcomes: percentile_cont's
# value, from the two latencies it interpolates between, read at their ranks (the arm's count gives
# them) from ix_outcomes_experiment_id_variant_id_latency_ms. An index-only scan passes the entries
# before them, from the nearer end (about n/2 for p50, n/20 for p95), where percentile_cont read and
# sorted all n rows: about 3.5 ms an arm of 100,000 instead of 7, once vacuum has marked the pages
# all-visible (before that each entry costs a heap visit, and both ways take about 25 ms). Beyond,
# they come from the arm's DDSketch bins (1% relative error; `figures.sketched_percentiles`).
EXACT_PERCENTILES_UP_TO = 100_000
PERCENTILES = (0.5, 0.95)


def _from_top(fraction: float) -> bool:
    """Whether the latencies around this percentile are read in descending order (fewer before them)."""
    return fraction > 0.5


def _around(arm: str, index: int, fraction: float) -> str:
    # `variant_id` leads the order too: `IS NULL` is not an equality, so without it the planner
    # would sort the base arm's rows rather than read them in the index's order.
    order = " DESC" if _from_top(fraction) else ""
    return (
        f"ARRAY(SELECT latency_ms FROM outcomes WHERE experiment_id = :experiment AND variant_id {arm}"
        f" ORDER BY variant_id{order}, latency_ms{order} OFFSET :skip_{index} LIMIT :take_{index})"
    )


def _exact(arm: str) -> TextClause:
    """One statement an arm: per percentile, the latencies at its ranks (`skip_i`, `take_i`)."""
    return text("SELECT " + ", ".join(_around(arm, i, fraction) for i, fraction in enumerate(PERCENTILES)))


EXACT_BASE = _exact("IS NULL")  # two texts: `IS NOT DISTINCT FROM` uses no index
EXACT_VARIANT = _exact("= :variant")
BINS = text(
    "SELECT nullif(variant_key, '') AS variant_id, bin, count FROM experiment_latency_bins"
    " WHERE experiment_id = :experiment AND variant_key = ANY(CAST(:keys AS text[]))"
    " ORDER BY variant_key, bin"
)


async def arm_aggregates(conn: AsyncConnection, experiment_id: str) -> dict[str | None, dict[str, Any]]:
    """The experiment's outcomes aggregated per variant (None: the base config): the arm's
    totals (`TOTALS`) and its latency percentiles `p50`, `p95` (exact up to
    EXACT_PERCENTILES_UP_TO outcomes, sketched beyond). Read in one snapshot (`Database.snapshot`):
    exact percentiles read the rows at ranks that the arm's count gives."""
    arms = {
        row["variant_id"]: dict(row) for row in (await conn.execute(TOTALS, {"experiment": experiment_id})).mappings()
    }
    sketched = []
    for variant_id, arm in arms.items():
        if arm["outcomes"] > EXACT_PERCENTILES_UP_TO:
            sketched.append(variant_id)
            continue
        arm["p50"], arm["p95"] = await _exact_percentiles(conn, experiment_id, variant_id, arm["outcomes"])
    if sketched:
        bins: dict[str | None, list[tuple[int, int]]] = {variant_id: [] for variant_id in sketched}
        keys = [variant_id or "" for variant_id in sketched]
        for variant_id, key, count in await conn.execute(BINS, {"experiment": experiment_id, "keys": keys}):
            bins[variant_id].append((key, count))
        for variant_id in sketched:
            arms[variant_id]["p50"], arms[variant_id]["p95"] = sketched_percentiles(bins[variant_id], PERCENTILES)
    return arms


async def _exact_percentiles(
    conn: AsyncConnection, experiment_id: str, variant_id: str | None, n: int
) -> list[float | None]:
    """percentile_cont(PERCENTILES) over the arm's latencies, from the one or two latencies
    around each percentile's rank among its n (its count in the same snapshot)."""
    if n == 0:
        return [None for _ in PERCENTILES]
    query = EXACT_BASE if variant_id is None else EXACT_VARIANT
    params: dict[str, Any] = {"experiment": experiment_id, "variant": variant_id}
    ranks = [percentile_rank(fraction, n) for fraction in PERCENTILES]
    for index, (fraction, rank) in enumerate(zip(PERCENTILES, ranks, strict=True)):
        first, last = math.floor(rank), math.ceil(rank)
        params[f"skip_{index}"] = n - 1 - last if _from_top(fraction) else first
        params[f"take_{index}"] = last - first + 1
    row = (await conn.execute(query, params)).one()
    percentiles: list[float | None] = []
    for fraction, rank, latencies in zip(PERCENTILES, ranks, row, strict=True):
        low, high = (latencies[-1], latencies[0]) if _from_top(fraction) else (latencies[0], latencies[-1])
        percentiles.append(interpolate(rank, low, high))
    return percentiles
