"""Queries on outcomes and their usage totals. Functions take a connection; the caller owns
the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

COLUMNS = (
    "agent_id",
    "variant_id",
    "experiment_id",
    "subject",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "cost_usd",
    "success",
    "score",
)


async def insert_many(conn: AsyncConnection, records: Sequence[tuple[Any, ...]]) -> None:
    """Insert outcome rows (in COLUMNS order) with one binary COPY: one round trip a batch."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table("outcomes", records=records, columns=COLUMNS)


ADD_TO_TOTALS = text(
    "INSERT INTO usage_totals AS t (agent_id, variant_key, outcomes, input_tokens, output_tokens)"
    " SELECT :agent, key, n, i, o FROM unnest(CAST(:keys AS text[]), CAST(:counts AS bigint[]),"
    "      CAST(:inputs AS numeric[]), CAST(:outputs AS numeric[])) AS batch(key, n, i, o)"
    " ORDER BY key"  # the same order in every transaction: concurrent batches cannot deadlock
    " ON CONFLICT (agent_id, variant_key) DO UPDATE SET outcomes = t.outcomes + EXCLUDED.outcomes,"
    "     input_tokens = t.input_tokens + EXCLUDED.input_tokens,"
    "     output_tokens = t.output_tokens + EXCLUDED.output_tokens"
)


async def add_to_totals(conn: AsyncConnection, agent_id: str, sums: dict[str, tuple[int, int, int]]) -> None:
    """Add (outcomes, input tokens, output tokens) to the agent's usage totals, one row per
    variant key ("" for the base config)."""
    keys = sorted(sums)
    await conn.execute(
        ADD_TO_TOTALS,
        {
            "agent": agent_id,
            "keys": keys,
            "counts": [sums[k][0] for k in keys],
            "inputs": [sums[k][1] for k in keys],
            "outputs": [sums[k][2] for k in keys],
        },
    )


USAGE = text(
    "SELECT nullif(variant_key, '') AS variant_id, outcomes, input_tokens, output_tokens"
    " FROM usage_totals WHERE agent_id = :agent ORDER BY variant_key"  # "" (the base) first
)


async def usage_totals(conn: AsyncConnection, agent_id: str) -> list[RowMapping]:
    """The agent's usage totals, one row per variant (the base config's first): a few rows
    kept up to date by each batch, not a sum over every outcome."""
    return list((await conn.execute(USAGE, {"agent": agent_id})).mappings().all())


# The API bounds scores to +-1e12 (`schemas.BOUND`), but rows stored before the bounds may hold
# any double: two scores of +-1e155 overflowed var_samp ("value out of range", a 500 on every
# read of the results). So the score aggregates read each score clamped to the bounds: the
# identity on in-bound scores (their figures stay exact), and neither the sum behind avg nor the
# sum of squares behind var_samp can overflow a double over clamped values, however many rows.
# (avg and var_samp of one expression share one transition state: it is evaluated once a row.)
# Latencies need no clamp: they are >= 0 (a CHECK), so percentile_cont's interpolation between
# two finite ones stays finite; `figures` drops a non-finite one that only a direct insert of
# infinity could give.
_SCORE = "greatest(least(score, float8 '1e12'), float8 '-1e12')"

# One pass over the experiment's outcomes, grouped by variant. Means and variances come from
# PostgreSQL's own aggregates (numerically stable), percentiles from percentile_cont; token sums
# are numeric (sum of bigint), exact and unbounded.
RESULTS = text(
    "SELECT variant_id, count(*) AS outcomes,"
    "       coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,"
    "       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,"
    "       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,"
    "       count(success) AS judged, count(*) FILTER (WHERE success) AS successes,"
    f"      count(score) AS scored, avg({_SCORE}) AS score_mean, var_samp({_SCORE}) AS score_var"
    " FROM outcomes WHERE experiment_id = :experiment GROUP BY variant_id"
)


async def arm_aggregates(conn: AsyncConnection, experiment_id: str) -> dict[str | None, RowMapping]:
    """The experiment's outcomes aggregated per variant (None: the base config)."""
    rows = (await conn.execute(RESULTS, {"experiment": experiment_id})).mappings()
    return {row["variant_id"]: row for row in rows}
