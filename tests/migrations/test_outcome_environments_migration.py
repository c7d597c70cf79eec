"""The outcome-environments migration: outcomes and usage totals stored before it are
production's, without a table rewrite; the usage totals' key gains the environment; the
downgrade sums each agent's totals over environments, one row per variant again."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

REVISION = "e5a7c9b1d3f6"
BEFORE = "d4f6a8c0e2b5"
PRODUCTION = "env_00000000000000000000000000"
STAGING = "env_1"


async def columns(conn: AsyncConnection, table: str) -> set[str]:
    return await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns(table)})


async def primary_key(conn: AsyncConnection) -> list[str]:
    return await conn.run_sync(lambda sync: inspect(sync).get_pk_constraint("usage_totals")["constrained_columns"])


async def relfilenode(conn: AsyncConnection, table: str) -> int:
    """The table's file: a rewrite gives it a new one."""
    return int(await conn.scalar(text("SELECT relfilenode FROM pg_class WHERE relname = :t"), {"t": table}))


async def insert_agent(conn: AsyncConnection, agent_id: str) -> None:
    await conn.execute(
        text(
            "INSERT INTO agents (id, slug, name, model_provider, model_name, system_prompt,"
            " user_prompt_template, prompt_version, temperature, max_tokens, context_window,"
            " input_token_limit, token_budget, timeout_seconds, max_retries)"
            " VALUES (:id, :id, 'A', 'p', 'm', '', '', '', 1.0, 1, 0, 0, 0, 60, 2)"
        ),
        {"id": agent_id},
    )


TOTALS = text(
    "SELECT agent_id, variant_key, outcomes, input_tokens, output_tokens FROM usage_totals"
    " ORDER BY agent_id, variant_key"
)


async def merged(conn: AsyncConnection) -> list[tuple[str, str, int, int, int]]:
    return [(a, k, n, int(i), int(o)) for a, k, n, i, o in await conn.execute(TOTALS)]


async def test_upgrade_keeps_old_rows_in_production_and_downgrade_merges_totals(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", BEFORE)
    assert "environment_id" not in await columns(fresh, "outcomes")
    for agent in ("agt_1", "agt_2"):
        await insert_agent(fresh, agent)
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, input_tokens, output_tokens, latency_ms)"
            " VALUES ('agt_1', NULL, 10, 1, 1), ('agt_1', 'var_1', 20, 2, 1)"
        )
    )
    await fresh.execute(
        text(
            "INSERT INTO usage_totals (agent_id, variant_key, outcomes, input_tokens, output_tokens)"
            " VALUES ('agt_1', '', 1, 10, 1), ('agt_1', 'var_1', 1, 20, 2)"
        )
    )
    await fresh.commit()
    files = await relfilenode(fresh, "outcomes"), await relfilenode(fresh, "usage_totals")

    await step(fresh, "upgrade", REVISION)
    # A constant default: the column is in the catalog, the tables were not rewritten.
    assert (await relfilenode(fresh, "outcomes"), await relfilenode(fresh, "usage_totals")) == files
    assert await primary_key(fresh) == ["agent_id", "environment_id", "variant_key"]
    assert set(await fresh.scalars(text("SELECT environment_id FROM outcomes"))) == {PRODUCTION}
    assert set(await fresh.scalars(text("SELECT environment_id FROM usage_totals"))) == {PRODUCTION}
    # An INSERT that names no environment (a process from before the migration) is production's.
    await fresh.execute(
        text("INSERT INTO outcomes (agent_id, input_tokens, output_tokens, latency_ms) VALUES ('agt_2', 1, 1, 1)")
    )
    assert await fresh.scalar(text("SELECT environment_id FROM outcomes WHERE agent_id = 'agt_2'")) == PRODUCTION

    # Totals of the same agent and variant in several environments, and some in one only.
    await fresh.execute(
        text("INSERT INTO environments (id, slug, name) VALUES (:id, 'staging', 'Staging')"), {"id": STAGING}
    )
    await fresh.execute(
        text(
            "INSERT INTO usage_totals (agent_id, environment_id, variant_key, outcomes, input_tokens, output_tokens)"
            " VALUES ('agt_1', :staging, '', 3, 300, 30), ('agt_1', :staging, 'var_2', 4, 400, 40),"
            "        ('agt_1', 'env_gone', 'var_1', 5, 500, 50),"  # an environment deleted since
            "        ('agt_2', :staging, '', 6, 99999999999999999999999, 60)"
        ),
        {"staging": STAGING},
    )
    await fresh.commit()

    await step(fresh, "downgrade", BEFORE)
    assert "environment_id" not in await columns(fresh, "outcomes")
    assert "environment_id" not in await columns(fresh, "usage_totals")
    assert await primary_key(fresh) == ["agent_id", "variant_key"]
    assert await merged(fresh) == [
        ("agt_1", "", 1 + 3, 10 + 300, 1 + 30),
        ("agt_1", "var_1", 1 + 5, 20 + 500, 2 + 50),
        ("agt_1", "var_2", 4, 400, 40),
        ("agt_2", "", 6, 99999999999999999999999, 60),
    ]
    assert await fresh.scalar(text("SELECT count(*) FROM outcomes")) == 3  # outcomes stay

    await step(fresh, "upgrade", "head")
    assert await migrate.current_revision(fresh) == migrate.head_revision()
    assert await primary_key(fresh) == ["agent_id", "environment_id", "variant_key"]
    # Up again: the merged totals are production's, unchanged.
    assert set(await fresh.scalars(text("SELECT environment_id FROM usage_totals"))) == {PRODUCTION}
    assert await merged(fresh) == [
        ("agt_1", "", 4, 310, 31),
        ("agt_1", "var_1", 6, 520, 52),
        ("agt_1", "var_2", 4, 400, 40),
        ("agt_2", "", 6, 99999999999999999999999, 60),
    ]
