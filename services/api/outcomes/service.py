"""Storing outcomes, and what they add up to: usage per variant, results per arm.

Outcomes arrive in batches of up to 1,000 and go in with one COPY (asyncpg's binary
copy), so ingestion costs one round trip per batch, not one per row. Aggregates are
computed in PostgreSQL, where the rows are; only the final statistics (intervals and
p-values, which need distribution functions) are computed here from those aggregates.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.agents import service as agents
from services.api.db import Database
from services.api.exceptions import FieldError, NotFound
from services.api.experiments import service as experiments
from services.api.models import Experiment
from services.api.outcomes.schemas import OutcomeIn
from services.shared import stats

COLUMNS = ("agent_id", "variant_id", "experiment_id", "subject", "input_tokens", "output_tokens", "latency_ms",
           "cost_usd", "success", "score")


async def store(db: Database, agent_ref: str, outcomes: list[OutcomeIn], *, batch: bool) -> int:
    """Store every outcome or none. An `experiment_id` must name an experiment of this
    agent (404 naming each item that does not); a `variant_id` is kept as reported, since
    an agent may report runs of a variant deleted meanwhile."""

    async def unit(conn: AsyncConnection) -> int:
        agent = await agents.require(conn, agent_ref)
        named = {o.experiment_id for o in outcomes if o.experiment_id is not None}
        if named:
            table = Experiment.__table__
            rows = await conn.execute(
                table.select().with_only_columns(table.c.id)
                .where(table.c.agent_id == agent["id"], table.c.id.in_(named))
            )
            unknown = named - {row.id for row in rows}
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
            (agent["id"], o.variant_id, o.experiment_id, o.subject, o.input_tokens, o.output_tokens,
             float(o.latency_ms), None if o.cost_usd is None else float(o.cost_usd), o.success,
             None if o.score is None else float(o.score))
            for o in outcomes
        ]
        raw = await conn.get_raw_connection()
        await raw.driver_connection.copy_records_to_table("outcomes", records=records, columns=COLUMNS)
        return len(records)

    return await db.transaction(unit)


USAGE = text(
    "SELECT variant_id, count(*) AS outcomes, coalesce(sum(input_tokens), 0) AS input_tokens,"
    "       coalesce(sum(output_tokens), 0) AS output_tokens"
    " FROM outcomes WHERE agent_id = :agent GROUP BY variant_id ORDER BY variant_id NULLS FIRST"
)


async def usage(db: Database, agent_ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await agents.require(conn, agent_ref)
        rows = (await conn.execute(USAGE, {"agent": agent["id"]})).mappings().all()
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


async def results(db: Database, agent_ref: str, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await agents.require(conn, agent_ref)
        experiment = await experiments.require(conn, agent["id"], ref)
        rows = {row["variant_id"]: row
                for row in (await conn.execute(RESULTS, {"experiment": experiment["id"]})).mappings()}
    arms = [_arm(arm, rows.get(arm["variant_id"])) for arm in experiment["arms"]]
    control = arms[0]
    for arm in arms:
        arm["vs_control"] = None if arm is control else _versus(arm, control)
    for arm in arms:  # the working figures behind the comparisons are not part of the object
        for name in ("_successes", "_judged", "_scored", "_score_var"):
            arm.pop(name)
    return {"object": "experiment_results", "experiment_id": experiment["id"], "status": experiment["status"],
            "arms": arms}


def _arm(arm: dict[str, Any], row: Any) -> dict[str, Any]:
    n = row["outcomes"] if row is not None else 0
    judged = row["judged"] if row is not None else 0
    successes = row["successes"] if row is not None else 0
    scored = row["scored"] if row is not None else 0
    score_mean = float(row["score_mean"]) if scored else None
    score_var = float(row["score_var"]) if scored >= 2 else None
    input_tokens = int(row["input_tokens"]) if row is not None else 0
    output_tokens = int(row["output_tokens"]) if row is not None else 0
    return {
        "arm": arm["arm"],
        "variant_id": arm["variant_id"],
        "weight": arm["weight"],
        "outcomes": n,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "mean_input_tokens": input_tokens / n if n else None,
        "mean_output_tokens": output_tokens / n if n else None,
        "latency_ms_p50": float(row["p50"]) if n else None,
        "latency_ms_p95": float(row["p95"]) if n else None,
        "success_rate": successes / judged if judged else None,
        "success_rate_ci": _pair(stats.wilson_interval(successes, judged)),
        "score_mean": score_mean,
        "score_mean_ci": _pair(stats.mean_interval(scored, score_mean, score_var)),
        "_successes": successes, "_judged": judged, "_scored": scored, "_score_var": score_var,
    }


def _versus(arm: dict[str, Any], control: dict[str, Any]) -> dict[str, Any]:
    both_rates = arm["success_rate"] is not None and control["success_rate"] is not None
    both_scores = arm["score_mean"] is not None and control["score_mean"] is not None
    return {
        "success_rate_diff": arm["success_rate"] - control["success_rate"] if both_rates else None,
        "success_p_value": stats.two_proportion_z_test(arm["_successes"], arm["_judged"],
                                                       control["_successes"], control["_judged"]),
        "score_mean_diff": arm["score_mean"] - control["score_mean"] if both_scores else None,
        "score_p_value": stats.welch_from_moments(arm["_scored"], arm["score_mean"], arm["_score_var"],
                                                  control["_scored"], control["score_mean"], control["_score_var"]),
    }


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None
