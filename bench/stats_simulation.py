"""Simulated rollouts checking the guardrail rule (`services.shared.stats.guardrail`) after every batch.

Used by tests/shared/test_stats_simulation.py (2,000 rollouts a scenario, seeded) and by `make bench`
(`python -m bench.stats_simulation`: 20,000, written to bench/results/stats_simulation.json and a section
of bench/RESULTS.md).

A rollout's outcomes arrive in batches; in a batch at percent p, round(batch * p / 100) go to arm 1 and the
rest to arm 0 (buckets split the traffic almost exactly). Each arm's batch is drawn as sufficient statistics,
not outcome by outcome: successes from the exact binomial (inverse CDF), a normal metric's sum from
N(n mu, n sigma^2) and its squared deviations from sigma^2 chi^2(n - 1), which is how n normal values are
distributed. After each batch the rule is checked and, on the same data, a naive fixed-sample z-test (the
arms pooled over steps, breached when the 95% interval lies wholly below -max_degradation), as if someone
looked at a plain dashboard after every batch. The 100% step is left out: arm 0 gets no outcomes there, so
no figure can change.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.shared.stats import Moments, guardrail

Z_95 = 1.959963984540054
ALPHA = 0.05

# A step: (percent, outcomes while it is in force).
STEPS = ((5, 4000), (25, 2000), (50, 2000))
BATCH = 200


def mc_bound(rollouts: int, rate: float = ALPHA) -> float:
    """The level plus three Monte Carlo standard errors of a rate estimated from `rollouts` runs."""
    return rate + 3.0 * math.sqrt(rate * (1.0 - rate) / rollouts)


class Binomial:
    """Exact binomial draws by inverse CDF, a table per (n, p)."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, float], list[float]] = {}

    def draw(self, rng: random.Random, n: int, p: float) -> int:
        table = self._tables.get((n, p))
        if table is None:
            cdf, acc = [], 0.0
            for k in range(n + 1):
                acc += math.comb(n, k) * p**k * (1.0 - p) ** (n - k)
                cdf.append(acc)
            cdf[-1] = 1.0
            table = self._tables[(n, p)] = cdf
        return min(bisect.bisect_right(table, rng.random()), n)


@dataclass(frozen=True)
class Scenario:
    """Arm a's metric at a batch (its index over the whole rollout): a success rate (`binary`) or the mean of
    a normal metric with standard deviation `sigma`."""

    name: str
    metric: str
    max_degradation: float
    mean0: Callable[[int], float]
    mean1: Callable[[int], float]
    sigma: float = 0.0
    min_outcomes: int = 100
    guardrails: int = 1
    steps: tuple[tuple[int, int], ...] = STEPS
    until_breach: int = 0  # > 0: stay at the last step until a rollback or this many outcomes


@dataclass
class Run:
    """When (total outcomes of both arms) each rule first breached, None: never."""

    rule: int | None = None
    naive: int | None = None
    unstratified: int | None = None  # the rule with the steps pooled into one stratum
    looks: int = 0


def _batch(rng: random.Random, binomial: Binomial, s: Scenario, n: int, mean: float) -> Moments:
    if n == 0:
        return Moments()
    if s.metric == "success_rate":
        return Moments.of_successes(binomial.draw(rng, n, mean), n)
    total = rng.gauss(n * mean, s.sigma * math.sqrt(n))
    deviations = s.sigma * s.sigma * rng.gammavariate((n - 1) / 2, 2.0) if n >= 2 else 0.0
    return Moments(n, total, deviations + total * total / n)


def _naive(s: Scenario, arm0: Moments, arm1: Moments) -> bool:
    if min(arm0.n, arm1.n) < max(2, s.min_outcomes):
        return False
    binary = s.metric == "success_rate"
    sign = -1 if s.metric in ("latency_ms_mean", "cost_usd_mean", "output_tokens_mean") else 1
    if binary:  # the textbook unpooled proportions' variance
        v0 = arm0.mean() * (1 - arm0.mean())
        v1 = arm1.mean() * (1 - arm1.mean())
    else:
        v0, v1 = arm0.variance(binary=False), arm1.variance(binary=False)
    d = sign * (arm1.mean() - arm0.mean())
    return d + Z_95 * math.sqrt(v1 / arm1.n + v0 / arm0.n) < -s.max_degradation


def simulate(rng: random.Random, s: Scenario, *, naive: bool = True, unstratified: bool = False) -> Run:
    """One rollout, checked after every batch until each rule has breached or the steps end."""
    binomial = _BINOMIAL
    arm0: list[Moments] = []
    arm1: list[Moments] = []
    run = Run()
    seen = batch_index = 0
    steps = list(s.steps)
    if s.until_breach:
        percent, _ = steps[-1]
        steps[-1] = (percent, s.until_breach - sum(n for _, n in steps[:-1]))
    for percent, outcomes in steps:
        arm0.append(Moments())
        arm1.append(Moments())
        for _ in range(outcomes // BATCH):
            n1 = round(BATCH * percent / 100)
            arm1[-1] += _batch(rng, binomial, s, n1, s.mean1(batch_index))
            arm0[-1] += _batch(rng, binomial, s, BATCH - n1, s.mean0(batch_index))
            batch_index += 1
            seen += BATCH
            run.looks += 1
            if (
                run.rule is None
                and guardrail(
                    s.metric,
                    arm0,
                    arm1,
                    max_degradation=s.max_degradation,
                    min_outcomes=s.min_outcomes,
                    guardrails=s.guardrails,
                ).breached
            ):
                run.rule = seen
                if s.until_breach:
                    return run
            pooled0, pooled1 = sum(arm0, Moments()), sum(arm1, Moments())
            if naive and run.naive is None and _naive(s, pooled0, pooled1):
                run.naive = seen
            if unstratified and run.unstratified is None:
                figures = guardrail(
                    s.metric,
                    [pooled0],
                    [pooled1],
                    max_degradation=s.max_degradation,
                    min_outcomes=s.min_outcomes,
                    guardrails=s.guardrails,
                )
                if figures.breached:
                    run.unstratified = seen
    return run


_BINOMIAL = Binomial()


@dataclass
class Rates:
    name: str
    rollouts: int
    rule: float
    naive: float
    unstratified: float | None
    bound: float
    outcomes: list[int] = field(default_factory=list)  # at rollback, for power runs

    def as_dict(self) -> dict[str, object]:
        figures: dict[str, object] = {
            "scenario": self.name,
            "rollouts": self.rollouts,
            "false_rollback_rate": self.rule,
            "naive_z_rate": self.naive,
            "bound": self.bound,
        }
        if self.unstratified is not None:
            figures["unstratified_rate"] = self.unstratified
        return figures


def false_rollbacks(s: Scenario, rollouts: int, *, seed: int, unstratified: bool = False) -> Rates:
    """The share of rollouts the rule (and the naive test, and optionally the unstratified rule) rolled back."""
    rng = random.Random(seed)
    runs = [simulate(rng, s, unstratified=unstratified) for _ in range(rollouts)]
    return Rates(
        s.name,
        rollouts,
        rule=sum(r.rule is not None for r in runs) / rollouts,
        naive=sum(r.naive is not None for r in runs) / rollouts,
        unstratified=sum(r.unstratified is not None for r in runs) / rollouts if unstratified else None,
        bound=mc_bound(rollouts),
    )


@dataclass
class Power:
    name: str
    rollouts: int
    rolled_back: int
    median: float
    p95: float
    cap: int

    def as_dict(self) -> dict[str, object]:
        return {
            "scenario": self.name,
            "rollouts": self.rollouts,
            "rolled_back": self.rolled_back,
            "outcomes_to_rollback_median": self.median,
            "outcomes_to_rollback_p95": self.p95,
            "cap": self.cap,
        }


def power(s: Scenario, rollouts: int, *, seed: int) -> Power:
    """Outcomes (both arms) until the rule rolls back a rollout that really degrades."""
    rng = random.Random(seed)
    at = [simulate(rng, s, naive=False).rule for _ in range(rollouts)]
    reached = sorted(n if n is not None else s.until_breach + 1 for n in at)
    return Power(
        s.name,
        rollouts,
        sum(n is not None for n in at),
        statistics.median(reached),
        reached[min(len(reached) - 1, math.ceil(0.95 * len(reached)) - 1)],
        s.until_breach,
    )


def _constant(value: float) -> Callable[[int], float]:
    return lambda _batch: value


def _drifting(start: float, per_batch: float) -> Callable[[int], float]:
    # 40 batches (STEPS): the success rate falls from `start` by 40 * per_batch for everyone.
    return lambda batch: start - per_batch * batch


SCENARIOS = {
    # True degradation exactly max_degradation: two points of success rate.
    "success_rate_at_boundary": Scenario(
        "success_rate_at_boundary", "success_rate", 0.02, _constant(0.90), _constant(0.88)
    ),
    # 250 ms slower with max_degradation 250 (sd 400 ms).
    "latency_at_boundary": Scenario(
        "latency_at_boundary", "latency_ms_mean", 250.0, _constant(1000.0), _constant(1250.0), sigma=400.0
    ),
    # A/A with max_degradation 0.
    "aa_success_rate": Scenario("aa_success_rate", "success_rate", 0.0, _constant(0.90), _constant(0.90)),
    "aa_score": Scenario("aa_score", "score_mean", 0.0, _constant(0.7), _constant(0.7), sigma=0.2),
    # The same drift in both arms while percents rise: 0.95 falling to 0.75 over the rollout.
    "drift_success_rate": Scenario(
        "drift_success_rate", "success_rate", 0.0, _drifting(0.95, 0.005), _drifting(0.95, 0.005)
    ),
}

# Twice max_degradation: 0.90 vs 0.86 with max_degradation 0.02; 5% and 25% as usual, then 50% until
# a rollback (or 100,000 outcomes).
POWER = Scenario(
    "success_rate_twice_max_degradation",
    "success_rate",
    0.02,
    _constant(0.90),
    _constant(0.86),
    until_breach=100_000,
)


def _section(rates: list[Rates], found: Power, seconds: float, rollouts: int) -> str:
    lines = [
        "## Guardrail statistics by simulation (`bench/stats_simulation.py`)",
        "",
        f"{rollouts:,} simulated rollouts a scenario (steps 5/25/50%, 4,000/2,000/2,000 outcomes, checked every"
        f" {BATCH} outcomes, min_outcomes 100, one guardrail), {datetime.now(UTC):%Y-%m-%d}, {seconds:.0f} s."
        f" Bound: 5% plus three Monte Carlo standard errors ({rates[0].bound:.2%}).",
        "",
        "| scenario | rule (false rollbacks) | naive z each look | rule, steps pooled |",
        "|---|---|---|---|",
    ]
    for r in rates:
        pooled = f"{r.unstratified:.2%}" if r.unstratified is not None else "-"
        lines.append(f"| {r.name} | {r.rule:.2%} | {r.naive:.2%} | {pooled} |")
    lines += [
        "",
        f"Power ({found.name}, 0.90 vs 0.86, max_degradation 0.02, {found.rollouts:,} rollouts): rolled back"
        f" {found.rolled_back:,}, median {found.median:,.0f} outcomes, 95th percentile {found.p95:,.0f}.",
        "",
    ]
    return "\n".join(lines)


def main(rollouts: int = 20_000) -> None:
    started = time.monotonic()
    rates = [
        false_rollbacks(s, rollouts, seed=index, unstratified=s.name.startswith("drift"))
        for index, s in enumerate(SCENARIOS.values())
    ]
    found = power(POWER, rollouts // 4, seed=99)
    seconds = time.monotonic() - started
    report = {
        "rollouts": rollouts,
        "seconds": round(seconds, 1),
        "false_rollbacks": [r.as_dict() for r in rates],
        "power": found.as_dict(),
    }
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "stats_simulation.json").write_text(json.dumps(report, indent=2) + "\n")
    section = _section(rates, found, seconds, rollouts)
    path = Path(__file__).parent / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    heading = "## Guardrail statistics by simulation"
    if heading in text:
        before, _, after = text.partition(heading)
        rest = after.split("\n## ", 1)
        text = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(section)
    failed = [r.name for r in rates if r.rule > r.bound] + (["power"] if found.rolled_back < found.rollouts else [])
    if failed:
        sys.exit(f"over the bound: {', '.join(failed)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
