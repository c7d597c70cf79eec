"""services.shared.stats' confidence sequences against the contract's formula worked by hand on fixed data."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from services.shared.stats import Moments, guardrail, half_width, sequential_cs, stratified_difference


def test_half_width_of_one_step_success_rates_by_hand() -> None:
    # Arm 0: 90 of 100, arm 1: 80 of 100; one guardrail, min_outcomes 100.
    #   p~0 = 91/102, p~1 = 81/102; V = p~1(1-p~1)/100 + p~0(1-p~0)/100 = 0.0025970780469...
    #   alpha = 0.05, N* = 1000: rho^2 = (5.991464547 + ln 6.991464547) / 1000 = 0.0079361546
    #   N = 200: N rho^2 = 1.5872309; h = sqrt(V * 2(2.5872309)/1.5872309 * ln(sqrt(2.5872309)/0.05))
    #   = sqrt(0.0025970780 * 3.2600572 * 3.4709073) = 0.17142888
    figures = guardrail(
        "success_rate",
        [Moments.of_successes(90, 100)],
        [Moments.of_successes(80, 100)],
        max_degradation=0.02,
        min_outcomes=100,
    )
    assert figures.estimate == pytest.approx(-0.10, abs=1e-15)
    assert figures.cs == pytest.approx((-0.10 - 0.1714288819860493, -0.10 + 0.1714288819860493), abs=1e-12)
    assert figures.n == (100, 100)
    assert not figures.breached  # d + h = 0.071 is not below -0.02
    assert figures.as_dict() == {
        "metric": "success_rate",
        "max_degradation": 0.02,
        "estimate": figures.estimate,
        "cs": list(figures.cs or ()),
        "n": [100, 100],
        "breached": False,
    }


def test_two_steps_of_latency_by_hand_with_two_guardrails() -> None:
    # Lower is better, so d_k = -(mean1 - mean0). alpha = 0.05/2, N* = 10 * 5 = 50.
    #   step 0: arm 0 [100, 110, 120] (mean 110, s^2 100), arm 1 [130, 150] (mean 140, s^2 200): d_0 = -30
    #   step 1: arm 0 [100, 104] (mean 102, s^2 8), arm 1 [90, 95, 100, 105] (mean 97.5, s^2 41.667): d_1 = 4.5
    #   N = 11: d = 5/11 * -30 + 6/11 * 4.5 = -11.181818
    #   V = (5/11)^2 (200/2 + 100/3) + (6/11)^2 (41.667/4 + 8/2) = 27.548209 + 4.289256 = 31.837466
    #   rho^2 = (-2 ln 0.025 + ln(1 - 2 ln 0.025)) / 50 = 0.1900795; N rho^2 = 2.0908745
    #   h = sqrt(31.837466 * 2(3.0908745)/2.0908745 * ln(sqrt(3.0908745)/0.025)) = 20.008642
    figures = guardrail(
        "latency_ms_mean",
        [Moments.of([100, 110, 120]), Moments.of([100, 104])],
        [Moments.of([130, 150]), Moments.of([90, 95, 100, 105])],
        max_degradation=0,
        min_outcomes=5,
        guardrails=2,
    )
    assert figures.estimate == pytest.approx(-11.181818181818183, rel=1e-12)
    assert figures.cs == pytest.approx(
        (-11.181818181818183 - 20.008642141093258, -11.181818181818183 + 20.008642141093258)
    )
    assert figures.n == (5, 6)
    assert not figures.breached


def test_half_width_formula() -> None:
    alpha, n_star, n, v = 0.05, 10_000, 4_000, 0.5
    rho2 = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / n_star
    expected = math.sqrt(v * 2 * (n * rho2 + 1) / (n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    assert half_width(v, n, alpha=alpha, n_star=n_star) == pytest.approx(expected, rel=1e-15)
    # By hand: rho^2 = 7.9361546e-4, N rho^2 = 3.1744618, 2(4.1744618)/3.1744618 = 2.6300281,
    # ln(sqrt(4.1744618)/0.05) = 3.7101831; sqrt(0.5 * 2.6300281 * 3.7101831) = 2.208845
    assert half_width(v, n, alpha=alpha, n_star=n_star) == pytest.approx(2.208845, abs=1e-6)


def test_steps_without_two_outcomes_in_each_arm_are_left_out() -> None:
    assert (
        guardrail("score_mean", [Moments.of([1.0])], [Moments.of([0.0, 1.0])], max_degradation=0, min_outcomes=1).cs
        is None
    )
    lone = guardrail(
        "score_mean",
        [Moments.of([1.0, 0.0]), Moments.of([5.0])],
        [Moments.of([0.0, 1.0]), Moments.of([9.0, 9.0, 9.0])],
        max_degradation=0,
        min_outcomes=1,
    )
    only_first = stratified_difference(
        [Moments.of([0.0, 1.0])], [Moments.of([1.0, 0.0])], binary=False, alpha=0.05, n_star=10
    )
    assert only_first is not None and lone.cs == only_first.cs
    assert lone.n == (3, 5)  # every outcome counts towards min_outcomes


def test_breached_only_with_min_outcomes_in_both_arms() -> None:
    zero, one = [Moments.of_successes(1990, 2000)], [Moments.of_successes(50, 99)]
    assert not guardrail("success_rate", zero, one, max_degradation=0.02, min_outcomes=100).breached
    assert guardrail("success_rate", zero, one, max_degradation=0.02, min_outcomes=99).breached


def test_results_cs_is_not_negated_and_takes_exact_sums() -> None:
    control = Moments(3, Decimal(300), Decimal(30200))  # [90, 100, 110]
    arm = Moments(3, Decimal(330), Decimal(36500))  # [100, 110, 120]
    low, high = sequential_cs(arm, control, binary=False) or (0.0, 0.0)
    assert (low + high) / 2 == pytest.approx(10.0)
    assert (high - low) / 2 == pytest.approx(half_width(200 / 3, 6, alpha=0.05, n_star=10_000))
    assert sequential_cs(Moments.of([1.0]), control, binary=False) is None


def test_moments_merge() -> None:
    assert Moments.of([1.0, 2.0]) + Moments.of([3.0]) == Moments.of([1.0, 2.0, 3.0])
    assert Moments.of_successes(3, 4) == Moments(4, 3, 3)
