"""A rollout's guardrails and progress, from its step totals (contract 1.1, "The rule").

For each guardrail: per step and arm, the count, mean and variance of the outcomes carrying
its metric; the always-valid confidence sequence of their difference, stratified by step
(`services.shared.stats.guardrail`); and whether it is breached. Then the progress the rollout object
shows and the scheduler acts on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.api.schemas import timestamp
from services.shared import stats

# The step totals' columns behind each mean metric (success rate has its own: judged, successes).
_COLUMNS = {
    "score_mean": "score",
    "latency_ms_mean": "latency",
    "cost_usd_mean": "cost",
    "output_tokens_mean": "output",
}


def arm_moments(row: Mapping[Any, Any], metric: str) -> stats.Moments:
    """One arm's outcomes of one step carrying the metric: their count, sum and sum of squares."""
    if metric == "success_rate":
        return stats.Moments.of_successes(int(row["successes"]), int(row["judged"]))
    column = _COLUMNS[metric]
    return stats.Moments(int(row[f"{column}_n"]), float(row[f"{column}_sum"]), float(row[f"{column}_sumsq"]))


def guardrail_figures(
    totals: Sequence[Mapping[Any, Any]], guardrail: Mapping[str, Any], *, min_outcomes: int, guardrails: int
) -> dict[str, Any]:
    """A guardrail's figures (`stats.guardrail`, the contract's rule): `estimate` and `cs`
    (variant - live, oriented so that below 0 is worse), `n` (outcomes per arm), `breached`."""
    metric = guardrail["metric"]
    steps: dict[int, dict[int, stats.Moments]] = {}
    for row in totals:
        steps.setdefault(int(row["step"]), {})[int(row["arm"])] = arm_moments(row, metric)
    order = sorted(steps)
    found = stats.guardrail(
        metric,
        [steps[step].get(0, stats.Moments()) for step in order],
        [steps[step].get(1, stats.Moments()) for step in order],
        max_degradation=float(guardrail["max_degradation"]),
        min_outcomes=min_outcomes,
        guardrails=max(guardrails, 1),
    )
    return {**found.as_dict(), "max_degradation": guardrail["max_degradation"]}


def progress(row: Mapping[Any, Any], totals: Sequence[Mapping[Any, Any]], now: datetime) -> dict[str, Any] | None:
    """A started rollout's `progress`; None for experiments and drafts. `waiting_for` says
    what keeps the step from ending: its `hold`, `outcomes` a guardrail lacks, or nothing
    (null: it ends at the next tick, or it is paused, or over)."""
    if row["kind"] != "rollout" or row["step"] is None:
        return None
    step = row["steps"][row["step"]]
    guardrails = row["guardrails"] or []
    figures = [
        guardrail_figures(totals, guardrail, min_outcomes=row["min_outcomes"], guardrails=len(guardrails))
        for guardrail in guardrails
    ]
    next_step_at = row["step_started_at"] + timedelta(seconds=step["hold_seconds"])
    waiting_for = None
    if row["status"] == "running":
        if now < next_step_at:
            waiting_for = "hold"
        elif any(min(figure["n"]) < row["min_outcomes"] for figure in figures):
            waiting_for = "outcomes"
    return {
        "step": row["step"],
        "percent": step["percent"],
        "next_step_at": timestamp(next_step_at) if row["status"] in ("running", "paused") else None,
        "waiting_for": waiting_for,
        "guardrails": figures,
    }
