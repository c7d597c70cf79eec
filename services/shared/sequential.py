"""Always-valid statistics for rollout guardrails (provisional: to merge into `stats`).

Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and
asymptotic confidence sequences", Ann. Statist. 2024, Thm 2.2: an asymptotic confidence
sequence for a difference of means, stratified here by the rollout's step, may be looked at
after every outcome without inflating its error rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HIGHER_IS_BETTER = frozenset({"success_rate", "score_mean"})


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One arm's outcomes in one stratum: count, mean, variance."""

    n: int
    mean: float
    variance: float


def proportion(n: int, successes: int) -> ArmStats:
    """A success rate: its mean, and the variance p~(1 - p~) with p~ = (s + 1)/(n + 2)."""
    if n <= 0:
        return ArmStats(0, 0.0, 0.0)
    shrunk = (successes + 1) / (n + 2)
    return ArmStats(n, successes / n, shrunk * (1 - shrunk))


def from_sums(n: int, total: float, squares: float) -> ArmStats:
    """A mean metric from its count, sum and sum of squares (sample variance, n - 1)."""
    if n <= 0:
        return ArmStats(0, 0.0, 0.0)
    mean = total / n
    variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return ArmStats(n, mean, variance)


@dataclass(frozen=True, slots=True)
class Guardrail:
    estimate: float | None
    cs: tuple[float, float] | None
    n: tuple[int, int]
    breached: bool


def half_width(variance: float, total: int, alpha: float, n_star: float) -> float:
    """The contract's h for the weighted variance V over N outcomes."""
    rho2 = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / n_star
    scaled = total * rho2
    return math.sqrt(variance * 2 * (scaled + 1) / scaled * math.log(math.sqrt(scaled + 1) / alpha))


def difference_cs(
    strata: Sequence[tuple[ArmStats, ArmStats]], *, alpha: float, n_star: float, negate: bool = False
) -> tuple[float, tuple[float, float]] | None:
    """(d, (d - h, d + h)) over the strata where each arm has at least 2 outcomes, weighted
    by N_k/N; None when there is none."""
    usable = [(control, treated) for control, treated in strata if control.n >= 2 and treated.n >= 2]
    if not usable:
        return None
    total = sum(control.n + treated.n for control, treated in usable)
    d = variance = 0.0
    for control, treated in usable:
        weight = (control.n + treated.n) / total
        diff = treated.mean - control.mean
        d += weight * (-diff if negate else diff)
        variance += weight * weight * (treated.variance / treated.n + control.variance / control.n)
    h = half_width(variance, total, alpha, n_star)
    return d, (d - h, d + h)


def guardrail(
    strata: Sequence[tuple[ArmStats, ArmStats]],
    *,
    higher_is_better: bool,
    max_degradation: float,
    min_outcomes: int,
    guardrails: int,
    n: tuple[int, int],
) -> Guardrail:
    """A guardrail's estimate, confidence sequence (better is positive), and whether it is
    breached: both arms have `min_outcomes` outcomes and d + h < -max_degradation."""
    found = difference_cs(
        strata, alpha=0.05 / max(guardrails, 1), n_star=10 * min_outcomes, negate=not higher_is_better
    )
    if found is None:
        return Guardrail(None, None, n, False)
    d, (low, high) = found
    breached = min(n) >= min_outcomes and high < -max_degradation
    return Guardrail(d, (low, high), n, breached)
