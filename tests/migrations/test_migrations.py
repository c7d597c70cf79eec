"""Migrations: up, down and up again on a database of their own; models agree with them."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate
from services.api.models import Base
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

TABLES = set(Base.metadata.tables)  # every table the models define


async def tables(conn: AsyncConnection) -> set[str]:
    names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return names - {"alembic_version"}


async def index_names(conn: AsyncConnection, table: str) -> set[str]:
    return await conn.run_sync(lambda sync: {ix["name"] for ix in inspect(sync).get_indexes(table)})


def diff(sync: Connection) -> list[Any]:
    context = MigrationContext.configure(sync, opts={"compare_type": True, "compare_server_default": True})
    return compare_metadata(context, Base.metadata)


async def test_upgrade_downgrade_upgrade(fresh: AsyncConnection) -> None:
    assert await tables(fresh) == set()
    assert await migrate.current_revision(fresh) is None

    await step(fresh, "upgrade", "head")
    assert await tables(fresh) == TABLES
    assert await migrate.current_revision(fresh) == migrate.head_revision()
    assert "ix_activations_variant_id" in await index_names(fresh, "activations")

    await step(fresh, "downgrade", "base")
    assert await tables(fresh) == set()
    # Nothing of the schema is left behind: no index, constraint or sequence.
    leftovers = await fresh.scalar(
        text(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname <> 'alembic_version'"
            " AND c.relname NOT LIKE 'alembic_version%'"
        )
    )
    assert leftovers == 0
    assert await migrate.current_revision(fresh) is None

    await step(fresh, "upgrade", "head")
    assert await tables(fresh) == TABLES
    assert await migrate.current_revision(fresh) == migrate.head_revision()
    # The schema works after the round trip: the single-active index still bites.
    await fresh.execute(
        text(
            "INSERT INTO agents (id, slug, name, model_provider, model_name, system_prompt,"
            " user_prompt_template, prompt_version, temperature, max_tokens, context_window,"
            " input_token_limit, token_budget, timeout_seconds, max_retries)"
            " VALUES ('agt_1', 'a', 'A', 'p', 'm', '', '', '', 1.0, 1, 0, 0, 0, 60, 2)"
        )
    )
    insert_variant = text("INSERT INTO variants (id, agent_id, slug, variant_name) VALUES (:id, 'agt_1', :slug, 'V')")
    await fresh.execute(insert_variant, {"id": "v1", "slug": "one"})
    await fresh.execute(insert_variant, {"id": "v2", "slug": "two"})
    activate = text(
        "INSERT INTO activations (agent_id, environment_id, variant_id, activated_at)"
        " VALUES ('agt_1', 'env_00000000000000000000000000', :id, now())"
    )
    await fresh.execute(activate, {"id": "v1"})
    with pytest.raises(Exception, match="pk_activations"):
        await fresh.execute(activate, {"id": "v2"})
    await fresh.rollback()


async def test_each_revision_downgrades_and_upgrades_again(fresh: AsyncConnection) -> None:
    """Walk the history one step at a time, down and back up: every downgrade() works."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions and revisions[-1] == migrate.head_revision()
    for revision in revisions:
        await step(fresh, "upgrade", revision)
        assert await migrate.current_revision(fresh) == revision
        await step(fresh, "downgrade", "-1")
        await step(fresh, "upgrade", revision)
        assert await migrate.current_revision(fresh) == revision
    assert await tables(fresh) == TABLES


async def test_models_match_migrations(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", "head")
    changes = await fresh.run_sync(diff)
    assert changes == [], "models and migrations disagree:\n" + "\n".join(map(repr, changes))


async def test_the_comparison_would_notice_a_difference(fresh: AsyncConnection) -> None:
    """Control: the same comparison reports a column the migrations lack."""
    await step(fresh, "upgrade", "head")
    await fresh.execute(text("ALTER TABLE activations DROP COLUMN activated_at"))
    await fresh.execute(text("ALTER TABLE agents ALTER COLUMN description SET DEFAULT 'x'"))
    changes = await fresh.run_sync(diff)
    await fresh.rollback()
    flat = repr(changes)
    assert "activated_at" in flat and "add_column" in flat
    assert "modify_default" in flat and "description" in flat


CATALOG = text("""
    SELECT 'constraint' AS kind, t.relname AS table_name, c.conname AS name,
           pg_get_constraintdef(c.oid) AS definition
      FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
     WHERE t.relnamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'index', t.relname, i.relname, pg_get_indexdef(i.oid)
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
     WHERE t.relnamespace = to_regnamespace(:schema)
    UNION ALL
    SELECT 'column', table_name, column_name,
           concat_ws(' ', data_type, character_maximum_length, collation_name, is_nullable, column_default)
      FROM information_schema.columns WHERE table_schema = :schema
""")


async def catalog(conn: AsyncConnection, schema: str) -> set[tuple[str, str, str, str]]:
    rows = (await conn.execute(CATALOG, {"schema": schema})).all()
    return {
        (kind, table, name, definition.replace(f"{schema}.", ""))
        for kind, table, name, definition in rows
        if table != "alembic_version"
    }


async def test_migrated_schema_equals_the_models_own_ddl(fresh: AsyncConnection) -> None:
    """Stricter than autogenerate, which skips CHECK constraints and index predicates:
    the catalog after the migrations equals the catalog `create_all` makes from the models,
    constraint names and definitions included."""
    await step(fresh, "upgrade", "head")
    await fresh.execute(text("CREATE SCHEMA from_models"))
    await fresh.run_sync(
        lambda sync: Base.metadata.create_all(sync.execution_options(schema_translate_map={None: "from_models"}))
    )
    migrated, modelled = await catalog(fresh, "public"), await catalog(fresh, "from_models")
    await fresh.rollback()
    assert {row[0] for row in migrated} == {"constraint", "index", "column"}
    assert any(row[2] == "ck_variants_temperature_range" for row in migrated)
    assert sorted(migrated - modelled) == [] and sorted(modelled - migrated) == []


async def test_usage_totals_are_backfilled_from_the_outcomes_already_stored(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", "c3d1f7a9e2b4")  # the revision before usage_totals
    await fresh.execute(
        text(
            "INSERT INTO agents (id, slug, name, model_provider, model_name, system_prompt,"
            " user_prompt_template, prompt_version, temperature, max_tokens, context_window,"
            " input_token_limit, token_budget, timeout_seconds, max_retries)"
            " VALUES ('agt_1', 'a', 'A', 'p', 'm', '', '', '', 1.0, 1, 0, 0, 0, 60, 2)"
        )
    )
    await fresh.execute(
        text(
            "INSERT INTO outcomes (agent_id, variant_id, input_tokens, output_tokens, latency_ms)"
            " SELECT 'agt_1', CASE WHEN n % 3 = 0 THEN NULL ELSE 'var_' || (n % 3) END, n, 2 * n, 1"
            " FROM generate_series(1, 30) AS n"
        )
    )
    await fresh.commit()
    await step(fresh, "upgrade", "head")
    rows = (
        await fresh.execute(
            text("SELECT variant_key, outcomes, input_tokens, output_tokens FROM usage_totals ORDER BY variant_key")
        )
    ).all()
    expected = {key: [0, 0, 0] for key in ("", "var_1", "var_2")}
    for n in range(1, 31):
        row = expected["" if n % 3 == 0 else f"var_{n % 3}"]
        row[0], row[1], row[2] = row[0] + 1, row[1] + n, row[2] + 2 * n
    assert [(k, o, int(i), int(t)) for k, o, i, t in rows] == [(k, *v) for k, v in sorted(expected.items())]
