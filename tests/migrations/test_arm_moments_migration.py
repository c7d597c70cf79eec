"""The arm moments migration (d9f1b3c5e7a0): latencies, output tokens and known costs already
stored are summed and squared into the arm totals (latencies clamped to the bounds); its triggers
follow inserts and deletes; the downgrade takes the columns away again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.migrations.helpers import step
from tests.migrations.test_outcome_environments_migration import insert_agent, relfilenode

pytestmark = pytest.mark.live

REVISION = "d9f1b3c5e7a0"
BEFORE = "e1a3c5e7b9d2"
MOMENTS = text(
    "SELECT variant_key, outcomes, latency_ms_sum, latency_ms_sumsq, output_tokens_sumsq, costed, cost_usd,"
    "       cost_usd_sumsq FROM experiment_arm_totals ORDER BY variant_key"
)


async def moments(conn: AsyncConnection) -> list[tuple]:
    return [tuple(row) for row in await conn.execute(MOMENTS)]


async def test_moments_already_stored_are_added_up_and_the_triggers_keep_them(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", BEFORE)
    await insert_agent(fresh, "agt_1")
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms,"
            "                      cost_usd, estimated_cost_usd)"
            " VALUES ('agt_1', NULL, 'exp_1', 10, 3, 100.5, 0.5, NULL),"
            "        ('agt_1', NULL, 'exp_1', 10, 4, 'Infinity', NULL, NULL),"
            "        ('agt_1', 'var_1', 'exp_1', 10, 5, 0.1, 0.25, 0.25),"
            "        ('agt_1', 'var_1', NULL, 10, 6, 7, 1, NULL)"  # in no experiment
        )
    )
    await fresh.commit()
    outcomes_file = await relfilenode(fresh, "outcomes")

    await step(fresh, "upgrade", REVISION)
    assert await relfilenode(fresh, "outcomes") == outcomes_file
    big = Decimal("1e12")  # an infinite latency counts as the bound
    assert await moments(fresh) == [
        ("", 2, Decimal("100.5") + big, Decimal("100.5") ** 2 + big**2, 9 + 16, 1, Decimal("0.5"), Decimal("0.25")),
        ("var_1", 1, Decimal("0.1"), Decimal("0.01"), 25, 1, Decimal("0.25"), Decimal("0.0625")),
    ]

    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms)"
            " VALUES ('agt_1', 'var_1', 'exp_1', 10, 2, 3), ('agt_1', 'var_2', 'exp_1', 10, 1, 2)"
        )
    )
    await fresh.execute(text("DELETE FROM outcomes WHERE experiment_id = 'exp_1' AND variant_id IS NULL"))
    assert await moments(fresh) == [
        ("var_1", 2, Decimal("3.1"), Decimal("9.01"), 29, 1, Decimal("0.25"), Decimal("0.0625")),
        ("var_2", 1, 2, 4, 1, 0, 0, 0),
    ]
    await fresh.commit()

    await step(fresh, "downgrade", BEFORE)
    columns = await fresh.scalar(
        text("SELECT count(*) FROM information_schema.columns WHERE table_name = 'experiment_arm_totals'")
    )
    assert columns == 12
    await step(fresh, "upgrade", REVISION)
    assert [row[:2] for row in await moments(fresh)] == [("var_1", 2), ("var_2", 1)]
    assert (await moments(fresh))[0][2] == Decimal("3.1")
