"""The model catalog migration (c8e0a2b4d6f9): costs already reported are added to the usage
and arm totals; outcomes are not rewritten; the arm totals' cost triggers follow inserts and
deletes; the downgrade takes it all away again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.migrations.helpers import step
from tests.migrations.test_outcome_environments_migration import insert_agent, relfilenode

pytestmark = pytest.mark.live

REVISION = "c8e0a2b4d6f9"
BEFORE = "f6a8c0e2b4d7"


async def tables(conn: AsyncConnection) -> set[str]:
    return await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))


async def test_costs_already_reported_are_added_up_and_the_downgrade_removes_the_catalog(
    fresh: AsyncConnection,
) -> None:
    await step(fresh, "upgrade", BEFORE)
    await insert_agent(fresh, "agt_1")
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms,"
            "                      cost_usd)"
            " VALUES ('agt_1', NULL, 'exp_1', 10, 1, 1, 0.1), ('agt_1', NULL, 'exp_1', 10, 1, 1, 1.0 / 3),"
            "        ('agt_1', 'var_1', 'exp_1', 10, 1, 1, NULL), ('agt_1', 'var_1', NULL, 10, 1, 1, 0.25)"
        )
    )
    await fresh.execute(
        text(
            "INSERT INTO usage_totals (agent_id, variant_key, outcomes, input_tokens, output_tokens)"
            " VALUES ('agt_1', '', 2, 20, 2), ('agt_1', 'var_1', 2, 20, 2)"
        )
    )
    await fresh.commit()
    outcomes_file = await relfilenode(fresh, "outcomes")

    await step(fresh, "upgrade", REVISION)
    assert await relfilenode(fresh, "outcomes") == outcomes_file  # nullable column, no default: no rewrite
    third = Decimal("0.333333333333333")  # 1/3 as a double, read as PostgreSQL's numeric cast reads it
    usage = await fresh.execute(text("SELECT variant_key, cost_usd, estimated_cost_usd FROM usage_totals"))
    assert sorted(tuple(row) for row in usage) == [("", Decimal("0.1") + third, 0), ("var_1", Decimal("0.25"), 0)]
    arms = await fresh.execute(text("SELECT variant_key, cost_usd, estimated_cost_usd FROM experiment_arm_totals"))
    assert sorted(tuple(row) for row in arms) == [("", Decimal("0.1") + third, 0), ("var_1", 0, 0)]

    # The triggers add new rows (an estimate counts exactly, and as estimated) and subtract deleted ones.
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms,"
            "                      cost_usd, estimated_cost_usd)"
            " VALUES ('agt_1', 'var_1', 'exp_1', 10, 1, 1, 0.0000123, 0.0000123)"
        )
    )
    await fresh.execute(text("DELETE FROM outcomes WHERE experiment_id = 'exp_1' AND variant_id IS NULL"))
    arms = await fresh.execute(text("SELECT variant_key, cost_usd, estimated_cost_usd FROM experiment_arm_totals"))
    assert sorted(tuple(row) for row in arms) == [("var_1", Decimal("0.0000123"), Decimal("0.0000123"))]
    await fresh.commit()

    await step(fresh, "downgrade", BEFORE)
    assert not {"models", "model_seeds"} & await tables(fresh)
    assert await fresh.scalar(text("SELECT count(*) FROM outcomes")) == 3
    await step(fresh, "upgrade", REVISION)
    assert {"models", "model_seeds"} <= await tables(fresh)
