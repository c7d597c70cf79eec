"""Usage and experiment results from the database's aggregates: pure functions, shared by
the API's /usage and /results and the console's pages, so both show the same figures.

Only the final statistics (intervals and p-values, which need distribution functions) are
computed here; sums, means, variances and percentiles come from PostgreSQL
(`outcomes.repository`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.api.outcomes.schemas import ExperimentResults, Usage
from services.shared import stats


def usage_of(rows: Sequence[Mapping[Any, Any]]) -> dict[str, Any]:
    """The usage object from the agent's usage totals (`outcomes.repository.usage_totals`)."""
    by_variant = [
        {
            "variant_id": row["variant_id"],
            "input_tokens": int(row["input_tokens"]),
            "output_tokens": int(row["output_tokens"]),
            "total_tokens": int(row["input_tokens"]) + int(row["output_tokens"]),
            "outcomes": row["outcomes"],
        }
        for row in rows
    ]
    totals = {
        name: sum(v[name] for v in by_variant) for name in ("input_tokens", "output_tokens", "total_tokens", "outcomes")
    }
    return Usage(object="usage", **totals, by_variant=by_variant).model_dump(mode="json")


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
    def of(cls, row: Mapping[Any, Any] | None) -> ArmFigures:
        if row is None:
            return cls()
        return cls(
            outcomes=row["outcomes"],
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            p50=_finite(row["p50"]),
            p95=_finite(row["p95"]),
            judged=row["judged"],
            successes=row["successes"],
            scored=row["scored"],
            score_mean=row["score_mean"],
            score_var=row["score_var"],
        )

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.judged if self.judged else None


def results_of(experiment: Mapping[Any, Any], aggregates: Mapping[str | None, Mapping[Any, Any]]) -> dict[str, Any]:
    """The experiment results object: per arm its figures and, but for the control (the
    first arm), its comparison with the control. `aggregates` by variant id
    (`outcomes.repository.arm_aggregates`)."""
    figures = [ArmFigures.of(aggregates.get(arm["variant_id"])) for arm in experiment["arms"]]
    control = figures[0]
    arms = [
        {**_arm(arm, f), "vs_control": None if index == 0 else _versus(f, control)}
        for index, (arm, f) in enumerate(zip(experiment["arms"], figures, strict=True))
    ]
    return ExperimentResults(
        object="experiment_results", experiment_id=experiment["id"], status=experiment["status"], arms=arms
    ).model_dump(mode="json")


def _arm(arm: Mapping[str, Any], f: ArmFigures) -> dict[str, Any]:
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
    return {
        "success_rate_diff": f.success_rate - control.success_rate
        if f.success_rate is not None and control.success_rate is not None
        else None,
        "success_p_value": stats.two_proportion_z_test(f.successes, f.judged, control.successes, control.judged),
        "score_mean_diff": f.score_mean - control.score_mean
        if f.score_mean is not None and control.score_mean is not None
        else None,
        "score_p_value": stats.welch_from_moments(
            f.scored, f.score_mean, f.score_var, control.scored, control.score_mean, control.score_var
        ),
    }


def _finite(value: float | None) -> float | None:
    """A figure, or None when it is not finite: a percentile over an infinite latency, which the
    API never stores (and JSON cannot carry)."""
    return value if value is not None and math.isfinite(value) else None


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None
