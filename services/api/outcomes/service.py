"""Storing outcomes, and what they add up to: usage per variant, results per arm.

Outcomes arrive in batches of up to 1,000 and go in with one COPY (asyncpg's binary
copy), so ingestion costs one round trip per batch, not one per row. Aggregates are
computed in PostgreSQL, where the rows are; only the final statistics (intervals and
p-values, which need distribution functions) are computed here from those aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database
from services.api.exceptions import FieldError, NotFound
from services.api.experiments import repository as experiment_repository
from services.api.outcomes.schemas import OutcomeIn
from services.api.writes.locks import find_agent
from services.shared import stats

COLUMNS = ("agent_id", "variant_id", "experiment_id", "subject", "input_tokens", "output_tokens", "latency_ms",
           "cost_usd", "success", "score")


async def store(db: Database, agent_ref: str, outcomes: list[OutcomeIn], *, batch: bool) -> int:
    """Store every outcome or none. An `experiment_id` must name an experiment of this
    agent (404 naming each item that does not); a `variant_id` is kept as reported, since
    an agent may report runs of a variant deleted meanwhile."""

    async def unit(conn: AsyncConnection) -> int:
        agent = await find_agent(conn, agent_ref)
        named = {o.experiment_id for o in outcomes if o.experiment_id is not None}
        if named:
            unknown = named - await experiment_repository.existing(conn, agent.id, named)
            if unknown:
                errors = [FieldError(f"data[{i}].experiment_id" if batch else "experiment_id",
                                     f"Experiment '{o.experiment_id}' not found")
                          for i, o in enumerate(outcomes) if o.experiment_id in unknown]
                names = ", ".join(f"'{ref}'" for ref in sorted(unknown))
                error = NotFound("Experiment", sorted(unknown)[0], param=errors[0].param,
                                 detail=f"Experiment {names} not found in agent '{agent_ref}'")
                error.errors = errors
                raise error
        records = [
            (agent.id, o.variant_id, o.experiment_id, o.subject, o.input_tokens, o.output_tokens,
             o.latency_ms, o.cost_usd, o.success, o.score)
            for o in outcomes
        ]
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table("outcomes", records=records, columns=COLUMNS)
        await _add_to_totals(conn, agent.id, outcomes)
        return len(records)

    return await db.transaction(unit)


ADD_TO_TOTALS = text(
    "INSERT INTO usage_totals AS t (agent_id, variant_key, outcomes, input_tokens, output_tokens)"
    " SELECT :agent, key, n, i, o FROM unnest(CAST(:keys AS text[]), CAST(:counts AS bigint[]),"
    "      CAST(:inputs AS numeric[]), CAST(:outputs AS numeric[])) AS batch(key, n, i, o)"
    " ORDER BY key"  # the same order in every transaction: concurrent batches cannot deadlock
    " ON CONFLICT (agent_id, variant_key) DO UPDATE SET outcomes = t.outcomes + EXCLUDED.outcomes,"
    "     input_tokens = t.input_tokens + EXCLUDED.input_tokens,"
    "     output_tokens = t.output_tokens + EXCLUDED.output_tokens"
)


async def _add_to_totals(conn: AsyncConnection, agent_id: str, outcomes: list[OutcomeIn]) -> None:
    """Add the batch to the agent's usage totals, one row per variant it names."""
    sums: dict[str, list[int]] = {}
    for o in outcomes:
        row = sums.setdefault(o.variant_id or "", [0, 0, 0])
        row[0] += 1
        row[1] += o.input_tokens
        row[2] += o.output_tokens
    keys = sorted(sums)
    await conn.execute(ADD_TO_TOTALS, {"agent": agent_id, "keys": keys, "counts": [sums[k][0] for k in keys],
                                       "inputs": [sums[k][1] for k in keys], "outputs": [sums[k][2] for k in keys]})


USAGE = text(
    "SELECT nullif(variant_key, '') AS variant_id, outcomes, input_tokens, output_tokens"
    " FROM usage_totals WHERE agent_id = :agent ORDER BY variant_key"  # "" (the base) first
)


async def usage(db: Database, agent_ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        rows = (await conn.execute(USAGE, {"agent": agent.id})).mappings().all()
    by_variant = [
        {"variant_id": row["variant_id"], "input_tokens": int(row["input_tokens"]),
         "output_tokens": int(row["output_tokens"]),
         "total_tokens": int(row["input_tokens"]) + int(row["output_tokens"]), "outcomes": row["outcomes"]}
        for row in rows
    ]
    totals = {name: sum(v[name] for v in by_variant)
              for name in ("input_tokens", "output_tokens", "total_tokens", "outcomes")}
    return {"object": "usage", **totals, "by_variant": by_variant}


# One pass over the experiment's outcomes, grouped by variant. Means and variances come from
# PostgreSQL's own aggregates (numerically stable), percentiles from percentile_cont.
RESULTS = text(
    "SELECT variant_id, count(*) AS outcomes,"
    "       coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,"
    "       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,"
    "       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,"
    "       count(success) AS judged, count(*) FILTER (WHERE success) AS successes,"
    "       count(score) AS scored, avg(score) AS score_mean, var_samp(score) AS score_var"
    " FROM outcomes WHERE experiment_id = :experiment GROUP BY variant_id"
)


@dataclass(frozen=True)
class ArmFigures:
    """One arm's aggregates, as the RESULTS query gives them (zeros for an arm with none)."""

    outcomes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    p50: float | None = None
    p95: float | None = None
    judged: int = 0  # outcomes that report `success`
    successes: int = 0
    scored: int = 0  # outcomes that report `score`
    score_mean: float | None = None
    score_var: float | None = None  # sample variance; None below 2 scores

    @classmethod
    def of(cls, row: Any) -> ArmFigures:
        if row is None:
            return cls()
        return cls(
            outcomes=row["outcomes"], input_tokens=int(row["input_tokens"]), output_tokens=int(row["output_tokens"]),
            p50=row["p50"], p95=row["p95"], judged=row["judged"], successes=row["successes"], scored=row["scored"],
            score_mean=row["score_mean"], score_var=row["score_var"],
        )

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.judged if self.judged else None


async def results(db: Database, agent_ref: str, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        experiment = await experiment_repository.get(conn, agent.id, ref)
        if experiment is None:
            raise NotFound("Experiment", ref)
        rows = {row["variant_id"]: row
                for row in (await conn.execute(RESULTS, {"experiment": experiment["id"]})).mappings()}
    figures = [ArmFigures.of(rows.get(arm["variant_id"])) for arm in experiment["arms"]]
    control = figures[0]
    arms = [
        {**_arm(arm, f), "vs_control": None if index == 0 else _versus(f, control)}
        for index, (arm, f) in enumerate(zip(experiment["arms"], figures, strict=True))
    ]
    return {"object": "experiment_results", "experiment_id": experiment["id"], "status": experiment["status"],
            "arms": arms}


def _arm(arm: dict[str, Any], f: ArmFigures) -> dict[str, Any]:
    n = f.outcomes
    return {
        "arm": arm["arm"],
        "variant_id": arm["variant_id"],
        "weight": arm["weight"],
        "outcomes": n,
        "input_tokens": f.input_tokens,
        "output_tokens": f.output_tokens,
        "mean_input_tokens": f.input_tokens / n if n else None,
        "mean_output_tokens": f.output_tokens / n if n else None,
        "latency_ms_p50": f.p50,
        "latency_ms_p95": f.p95,
        "success_rate": f.success_rate,
        "success_rate_ci": _pair(stats.wilson_interval(f.successes, f.judged)),
        "score_mean": f.score_mean,
        "score_mean_ci": _pair(stats.mean_interval(f.scored, f.score_mean, f.score_var)),
    }


def _versus(f: ArmFigures, control: ArmFigures) -> dict[str, Any]:
    rates = (f.success_rate, control.success_rate)
    means = (f.score_mean, control.score_mean)
    return {
        "success_rate_diff": rates[0] - rates[1] if None not in rates else None,
        "success_p_value": stats.two_proportion_z_test(f.successes, f.judged, control.successes, control.judged),
        "score_mean_diff": means[0] - means[1] if None not in means else None,
        "score_p_value": stats.welch_from_moments(f.scored, f.score_mean, f.score_var,
                                                  control.scored, control.score_mean, control.score_var),
    }


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None
