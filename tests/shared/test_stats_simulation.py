"""The guardrail rule proved by simulation (issue 20): seeded, sufficient statistics drawn a batch at a time.

2,000 simulated rollouts a scenario (steps 5/25/50%, checked after every batch of 200 outcomes): with the
true degradation equal to max_degradation, or A/A with max_degradation 0, the rule's false rollbacks stay at
or under 5% plus three Monte Carlo standard errors while naive z-tests repeated on the same data exceed it;
a metric drifting for everyone while percents rise rolls nothing back, where the same rule with the steps
pooled does. `make bench` runs 20,000 a scenario (`bench/stats_simulation.py`).
"""

from __future__ import annotations

import pytest

from bench.stats_simulation import POWER, SCENARIOS, false_rollbacks, mc_bound, power

ROLLOUTS = 2000


@pytest.mark.parametrize("name", ["success_rate_at_boundary", "latency_at_boundary", "aa_success_rate", "aa_score"])
def test_false_rollbacks_stay_under_the_bound_where_naive_z_tests_exceed_it(name: str) -> None:
    rates = false_rollbacks(SCENARIOS[name], ROLLOUTS, seed=20)
    print(f"{name}: rule {rates.rule:.2%}, naive z {rates.naive:.2%}, bound {rates.bound:.2%}")
    assert rates.bound == pytest.approx(mc_bound(ROLLOUTS)) == pytest.approx(0.0646, abs=1e-4)
    assert rates.rule <= rates.bound
    assert rates.naive > rates.bound


def test_a_drift_shared_by_both_arms_rolls_nothing_back_thanks_to_the_steps() -> None:
    # The success rate falls from 0.95 to 0.75 for everyone while arm 1 goes from 5% to 50%: pooled over
    # the steps, arm 1's outcomes are later and so worse; within a step they are not.
    rates = false_rollbacks(SCENARIOS["drift_success_rate"], ROLLOUTS, seed=21, unstratified=True)
    print(f"drift: rule {rates.rule:.2%}, steps pooled {rates.unstratified:.2%}, naive z {rates.naive:.2%}")
    assert rates.rule <= rates.bound
    assert rates.unstratified is not None and rates.unstratified > 0.9
    assert rates.naive > 0.9


def test_twice_max_degradation_is_rolled_back_within_40000_outcomes() -> None:
    # 0.90 vs 0.86 with max_degradation 0.02 (one guardrail, min_outcomes 100): 4,000 outcomes at 5%,
    # 2,000 at 25%, then 50% until the rollback. Seeded: median 22,400 outcomes (both arms), 95th
    # percentile 37,400; every rollout is rolled back.
    found = power(POWER, 500, seed=22)
    print(f"power: median {found.median:,.0f}, p95 {found.p95:,.0f} outcomes")
    assert found.rolled_back == found.rollouts
    assert found.median <= 30_000
    assert found.p95 <= 40_000
