"""Usage and experiment results from the database's aggregates: pure functions, shared by
the API's /usage and /results and the console's pages, so both show the same figures.

Counts and exact sums come from PostgreSQL (`outcomes.repository`, which reads the arm
totals that triggers on outcomes keep); here they become means and variances (exact
fractions, rounded once), latency percentiles of large arms come from their sketch's bins,
and the final statistics (intervals, p-values and always-valid intervals) from
`services.shared.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ddsketch.mapping import LogarithmicMapping

from services.api.outcomes.schemas import ExperimentResults, Usage
from services.shared import stats


def usage_of(rows: Sequence[Mapping[Any, Any]], environment: str | None = None) -> dict[str, Any]:
    """The usage object from the agent's usage totals (`outcomes.repository.usage_totals`) in
    the environment of this slug, or (None) summed over every environment."""
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
    totals: dict[str, Any] = {
        name: sum(v[name] for v in by_variant) for name in ("input_tokens", "output_tokens", "total_tokens", "outcomes")
    }
    # Costs are summed exactly (numeric), then shown as JSON numbers.
    for name in ("cost_usd", "estimated_cost_usd"):
        totals[name] = float(sum((Decimal(row[name]) for row in rows), Decimal(0)))
        for v, row in zip(by_variant, rows, strict=True):
            v[name] = float(row[name])
    return Usage(object="usage", environment=environment, **totals, by_variant=by_variant).model_dump(mode="json")


@dataclass(frozen=True)
class ArmFigures:
    """One arm's figures (zeros for an arm with none)."""

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
    cost_usd: Decimal = Decimal(0)  # known costs, summed exactly
    estimated_cost_usd: Decimal = Decimal(0)  # the estimated part of them
    # Count, sum and sum of squares of each metric results' always-valid intervals compare
    # (success rates are judged and successes above).
    score: stats.Moments = stats.Moments()
    latency_ms: stats.Moments = stats.Moments()
    cost: stats.Moments = stats.Moments()  # over the outcomes with a known cost
    output_tokens_moments: stats.Moments = stats.Moments()

    @classmethod
    def of(cls, row: Mapping[Any, Any] | None) -> ArmFigures:
        """From `outcomes.repository.arm_aggregates`: counts, token sums, the exact sums of
        scores, latencies, output tokens and known costs and of their squares, and the latency
        percentiles."""
        if row is None:
            return cls()
        score_mean, score_var = moments(row["scored"], row["score_sum"], row["score_sumsq"])
        return cls(
            outcomes=row["outcomes"],
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            p50=_finite(row["p50"]),
            p95=_finite(row["p95"]),
            judged=row["judged"],
            successes=row["successes"],
            scored=row["scored"],
            score_mean=score_mean,
            score_var=score_var,
            cost_usd=Decimal(row["cost_usd"]),
            estimated_cost_usd=Decimal(row["estimated_cost_usd"]),
            score=stats.Moments(row["scored"], Decimal(row["score_sum"]), Decimal(row["score_sumsq"])),
            latency_ms=stats.Moments(row["outcomes"], Decimal(row["latency_ms_sum"]), Decimal(row["latency_ms_sumsq"])),
            cost=stats.Moments(row["costed"], Decimal(row["cost_usd"]), Decimal(row["cost_usd_sumsq"])),
            output_tokens_moments=stats.Moments(
                row["outcomes"], Decimal(row["output_tokens"]), Decimal(row["output_tokens_sumsq"])
            ),
        )

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.judged if self.judged else None


def moments(n: int, total: Decimal | int, squares: Decimal | int) -> tuple[float | None, float | None]:
    """Mean and sample variance of n numbers from their exact sum and sum of squares, computed
    exactly and rounded once: (sum of squares - sum**2 / n) / (n - 1), which floats would
    cancel into noise. None where undefined (no number; fewer than two)."""
    if n == 0:
        return None, None
    s = Fraction(total)
    mean = float(s / n)
    return mean, float((Fraction(squares) - s * s / n) / (n - 1)) if n >= 2 else None


# Latency percentiles of arms beyond `repository.EXACT_PERCENTILES_UP_TO` outcomes come from a
# DDSketch (Masson, Rim, Lee, VLDB 2019) kept in `experiment_latency_bins`: the count of an arm's
# latencies in each bin of this mapping, whose key the database computes with the same formula
# (`latency_bin()`, migration a7d9f1b3c5e8). Each bin's value is within 1% of every latency in it.
LATENCY_MAPPING = LogarithmicMapping(relative_accuracy=0.01)
ZERO_BIN = -(2**31)  # latencies of 0 (the mapping has no key for them)
NON_FINITE_BIN = 2**31 - 1  # infinity and NaN (rows written past the API's bounds)


def _bin_value(key: int) -> float:
    if key == ZERO_BIN:
        return 0.0
    if key == NON_FINITE_BIN:
        return math.inf
    return float(LATENCY_MAPPING.value(key))


def sketched_percentiles(bins: Sequence[tuple[int, int]], fractions: Sequence[float]) -> list[float | None]:
    """Percentiles from an arm's (key, count) bins in key order, interpolated as
    percentile_cont does between the two latencies around rank fraction * (n - 1), each
    latency read as its bin's value: within 1% of the exact percentile (a weighted mean of
    two values each within 1% of the true one). None for an arm without latencies."""
    n = sum(count for _, count in bins)
    if n == 0:
        return [None for _ in fractions]

    def nth(rank: int) -> float:  # the value of the latency of this rank (0-based) in order
        seen = 0
        for key, count in bins:
            seen += count
            if rank < seen:
                return _bin_value(key)
        raise AssertionError("rank beyond the bins' count")

    percentiles: list[float | None] = []
    for fraction in fractions:
        rank = percentile_rank(fraction, n)
        first, last = math.floor(rank), math.ceil(rank)
        percentiles.append(interpolate(rank, nth(first), nth(last)))
    return percentiles


def percentile_rank(fraction: float, n: int) -> float:
    """The 0-based rank, in order, of an n-value percentile: the values at floor and ceil of it
    are those percentile_cont interpolates between (computed as PostgreSQL does, in float8)."""
    return fraction * (n - 1)


def interpolate(rank: float, low: float, high: float) -> float:
    """percentile_cont's value at `rank` from the values at floor(rank) (`low`) and ceil(rank)
    (`high`), in PostgreSQL's float8 arithmetic (orderedsetaggs.c): the value itself at a whole
    rank, else `low + (rank - floor(rank)) * (high - low)` (so inf or NaN there gives NaN)."""
    first = math.floor(rank)
    return low if first == rank else low + (rank - first) * (high - low)


def results_of(experiment: Mapping[Any, Any], aggregates: Mapping[str | None, Mapping[Any, Any]]) -> dict[str, Any]:
    """The experiment results object: per arm its figures and, but for the control (the
    first arm), its comparison with the control. `aggregates` by variant id
    (`outcomes.repository.arm_aggregates`)."""
    return results_from(experiment, [ArmFigures.of(aggregates.get(arm["variant_id"])) for arm in experiment["arms"]])


def results_from(experiment: Mapping[Any, Any], figures: Sequence[ArmFigures]) -> dict[str, Any]:
    """The experiment results object from each arm's figures, in arm order."""
    control = figures[0]
    arms = [
        {
            **_arm(arm, f),
            "vs_control": None if index == 0 else _versus(f, control),
            "sequential": None if index == 0 else _sequential(f, control),
        }
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
        "cost_usd": float(f.cost_usd),
        "estimated_cost_usd": float(f.estimated_cost_usd),
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


def _sequential(f: ArmFigures, control: ArmFigures) -> dict[str, Any]:
    """Always-valid 95% intervals of arm - control (`stats.sequential_cs`: Waudby-Smith et al.'s
    asymptotic confidence sequence, N* = 10,000), valid however often results are read."""
    pairs = {
        "success_rate_diff_cs": (
            stats.Moments.of_successes(f.successes, f.judged),
            stats.Moments.of_successes(control.successes, control.judged),
            True,
        ),
        "score_mean_diff_cs": (f.score, control.score, False),
        "latency_ms_mean_diff_cs": (f.latency_ms, control.latency_ms, False),
        "cost_usd_mean_diff_cs": (f.cost, control.cost, False),
        "output_tokens_mean_diff_cs": (f.output_tokens_moments, control.output_tokens_moments, False),
    }
    return {name: _pair(stats.sequential_cs(arm, base, binary=binary)) for name, (arm, base, binary) in pairs.items()}


def _finite(value: float | None) -> float | None:
    """A figure, or None when it is not finite: a percentile over an infinite latency, which the
    API never stores (and JSON cannot carry)."""
    return value if value is not None and math.isfinite(value) else None


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return list(interval) if interval is not None else None
