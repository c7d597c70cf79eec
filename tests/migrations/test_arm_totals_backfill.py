"""The migration that adds experiment arm totals and latency bins adds up the outcomes
already stored (issue 17), exactly, and the triggers it installs count what comes after."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from fractions import Fraction

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.outcomes.figures import LATENCY_MAPPING, NON_FINITE_BIN, ZERO_BIN
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

BEFORE = "f6c8d0e2b4a6"  # the revision before the arm totals


def bin_of(latency: float) -> int:
    if latency == 0:
        return ZERO_BIN
    return LATENCY_MAPPING.key(latency) if math.isfinite(latency) else NON_FINITE_BIN


async def test_existing_outcomes_are_added_up_exactly(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", BEFORE)
    await fresh.execute(
        text(
            "INSERT INTO agents (id, slug, name, model_provider, model_name, system_prompt,"
            " user_prompt_template, prompt_version, temperature, max_tokens, context_window,"
            " input_token_limit, token_budget, timeout_seconds, max_retries)"
            " VALUES ('agt_1', 'a', 'A', 'p', 'm', '', '', '', 1.0, 1, 0, 0, 0, 60, 2)"
        )
    )
    rng = random.Random(17)
    rows = []
    for n in range(600):
        experiment = [None, "exp_1", "exp_2"][n % 3]
        variant = [None, "var_1"][n % 2]
        latency = rng.choice([0.0, math.inf, 10 ** rng.uniform(-3, 7)])
        score = rng.choice([None, rng.uniform(-100, 100), 1e200, math.nan, 0.1])
        success = rng.choice([None, True, False])
        rows.append((variant, experiment, n, 2 * n, latency, success, score))
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms,"
            " success, score)"
            " VALUES ('agt_1', :variant, :experiment, :i, :o, :latency, :success, :score)"
        ),
        [
            {"variant": v, "experiment": e, "i": i, "o": o, "latency": latency, "success": s, "score": score}
            for v, e, i, o, latency, s, score in rows
        ],
    )
    await fresh.commit()
    await step(fresh, "upgrade", "head")

    expected: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, Fraction(0), Fraction(0)])
    bins: Counter[tuple[str, str, int]] = Counter()
    for variant, experiment, i, o, latency, success, score in rows:
        if experiment is None:
            continue
        arm = expected[(experiment, variant or "")]
        arm[0] += 1
        arm[1] += i
        arm[2] += o
        arm[3] += success is not None
        arm[4] += success is True
        if score is not None:
            clamped = Fraction(1e12 if math.isnan(score) else max(-1e12, min(1e12, score)))
            arm[5] += 1
            arm[6] += clamped
            arm[7] += clamped * clamped
        bins[(experiment, variant or "", bin_of(latency))] += 1

    got = (
        await fresh.execute(
            text(
                "SELECT experiment_id, variant_key, outcomes, input_tokens, output_tokens, judged, successes, scored,"
                " score_sum, score_sumsq FROM experiment_arm_totals"
            )
        )
    ).all()
    assert {(r[0], r[1]): [*map(int, r[2:8]), Fraction(r[8]), Fraction(r[9])] for r in got} == dict(expected)
    got_bins = await fresh.execute(text("SELECT experiment_id, variant_key, bin, count FROM experiment_latency_bins"))
    assert {(e, v, b): c for e, v, b, c in got_bins} == dict(bins)

    # From now on the triggers count: one more outcome of exp_1's base arm.
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, experiment_id, input_tokens, output_tokens, latency_ms)"
            " VALUES ('agt_1', 'exp_1', 5, 5, 1)"
        )
    )
    count = await fresh.scalar(
        text("SELECT outcomes FROM experiment_arm_totals WHERE experiment_id = 'exp_1' AND variant_key = ''")
    )
    assert count == expected[("exp_1", "")][0] + 1
    await fresh.rollback()
