"""The activations migration (d4e6f8a0b2c3): every v1 active variant becomes its agent's
`production` activation, activated at the same instant; v1 revisions and experiments become
production's as its docstring says. Its downgrade restores `is_active` from production's
activations and drops what v1 cannot hold (other environments' activations, experiments and
revisions); upgrading again works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

BEFORE = "c3d5f7a9b1e2"
REVISION = "d4e6f8a0b2c3"
PRODUCTION = "env_00000000000000000000000000"
STAGING = "env_01STAGING000000000000000000"
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def insert(conn: AsyncConnection, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    params = ", ".join(
        f"CAST(:{name} AS jsonb)" if name in {"arms", "before", "after"} else f":{name}" for name in values
    )
    await conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)


async def agent(conn: AsyncConnection, agent_id: str) -> None:
    await insert(
        conn,
        "agents",
        id=agent_id,
        slug=agent_id.replace("_", "-"),
        name=agent_id,
        model_provider="p",
        model_name="m",
        system_prompt="",
        user_prompt_template="",
        prompt_version="",
        temperature=1.0,
        max_tokens=10,
        context_window=0,
        input_token_limit=0,
        token_budget=0,
        timeout_seconds=60,
        max_retries=2,
    )


async def variant(conn: AsyncConnection, agent_id: str, variant_id: str, *, activated_at: datetime | None) -> None:
    await insert(
        conn,
        "variants",
        id=variant_id,
        agent_id=agent_id,
        slug=variant_id.replace("_", "-"),
        variant_name=variant_id,
        is_active=activated_at is not None,
        activated_at=activated_at,
        updated_at=at(500),  # later than any activation: the migration must keep activated_at
    )


async def revision(
    conn: AsyncConnection,
    revision_id: str,
    agent_id: str,
    target: str,
    target_id: str,
    action: str,
    *,
    active: str | None,
    minute: int,
    reverts: str | None = None,
    **extra: Any,
) -> None:
    await insert(
        conn,
        "revisions",
        id=revision_id,
        agent_id=agent_id,
        target=target,
        target_id=target_id,
        action=action,
        active_variant_id=active,
        reverts_id=reverts,
        created_at=at(minute),
        **extra,
    )


async def experiment(conn: AsyncConnection, experiment_id: str, agent_id: str, status: str, **extra: Any) -> None:
    await insert(
        conn,
        "experiments",
        id=experiment_id,
        agent_id=agent_id,
        slug=experiment_id.replace("_", "-"),
        name=experiment_id,
        status=status,
        salt=experiment_id,
        arms='[{"arm": 0, "variant_id": null, "weight": 1}, {"arm": 1, "variant_id": null, "weight": 1}]',
        **extra,
    )


async def rows(conn: AsyncConnection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.execute(text(sql))]


async def v1_state(conn: AsyncConnection) -> None:
    """Three agents: one with an active variant, one whose variant was activated then
    deactivated, one that never had one; their revisions and experiments."""
    for agent_id in ("agt_1", "agt_2", "agt_3"):
        await agent(conn, agent_id)
    await variant(conn, "agt_1", "var_1a", activated_at=at(3))
    await variant(conn, "agt_1", "var_1b", activated_at=None)
    await variant(conn, "agt_2", "var_2a", activated_at=None)
    await revision(conn, "rev_01", "agt_1", "agent", "agt_1", "create", active=None, minute=0)
    await revision(conn, "rev_02", "agt_1", "variant", "var_1a", "create", active=None, minute=1)
    await revision(conn, "rev_03", "agt_1", "variant", "var_1b", "activate", active="var_1b", minute=2)
    await revision(conn, "rev_04", "agt_1", "variant", "var_1a", "activate", active="var_1a", minute=3)
    await revision(conn, "rev_05", "agt_1", "variant", "var_1b", "update", active="var_1a", minute=4)
    await revision(conn, "rev_06", "agt_2", "variant", "var_2a", "activate", active="var_2a", minute=5)
    await revision(conn, "rev_07", "agt_2", "variant", "var_2a", "deactivate", active=None, minute=6)
    await revision(conn, "rev_08", "agt_2", "experiment", "exp_2", "start", active=None, minute=7)
    await revision(conn, "rev_09", "agt_2", "variant", "var_2a", "activate", active="var_2a", minute=8)
    await revision(conn, "rev_10", "agt_2", "variant", "var_2a", "undo", active=None, minute=9, reverts="rev_09")
    await revision(conn, "rev_11", "agt_2", "variant", "var_2a", "update", active=None, minute=10)
    await revision(conn, "rev_12", "agt_2", "variant", "var_2a", "undo", active=None, minute=11, reverts="rev_11")
    await experiment(conn, "exp_2", "agt_2", "running", started_at=at(7))
    await experiment(conn, "exp_1", "agt_1", "draft")
    await experiment(conn, "exp_3", "agt_1", "stopped", started_at=at(1), stopped_at=at(2))
    await conn.commit()


async def test_v1_activations_revisions_and_experiments_become_productions(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", BEFORE)
    await v1_state(fresh)

    await step(fresh, "upgrade", REVISION)

    # Exactly the v1 active variant, with its own activated_at (not updated_at).
    assert await rows(fresh, "SELECT agent_id, environment_id, variant_id, activated_at FROM activations") == [
        ("agt_1", PRODUCTION, "var_1a", at(3))
    ]
    found = await rows(fresh, "SELECT id, environment_id, active_variants FROM revisions ORDER BY id")
    p, shared = PRODUCTION, None
    assert found == [
        ("rev_01", shared, {}),
        ("rev_02", shared, {}),
        ("rev_03", p, {p: "var_1b"}),
        ("rev_04", p, {p: "var_1a"}),
        ("rev_05", shared, {p: "var_1a"}),
        ("rev_06", p, {p: "var_2a"}),
        ("rev_07", p, {}),
        ("rev_08", p, {}),
        ("rev_09", p, {p: "var_2a"}),
        ("rev_10", p, {}),  # the undo of an activation is production's, as what it reverts
        ("rev_11", shared, {}),
        ("rev_12", shared, {}),  # the undo of a shared change stays shared
    ]
    assert await rows(fresh, "SELECT id, environment_id FROM experiments ORDER BY id") == [
        ("exp_1", p),
        ("exp_2", p),
        ("exp_3", p),
    ]
    # The database keeps one active variant per agent and environment, one running experiment too.
    with pytest.raises(Exception, match="pk_activations"):
        await fresh.execute(
            text(
                "INSERT INTO activations (agent_id, environment_id, variant_id, activated_at)"
                f" VALUES ('agt_1', '{PRODUCTION}', 'var_1b', now())"
            )
        )
    await fresh.rollback()


async def test_downgrade_keeps_productions_activations_and_drops_other_environments(
    fresh: AsyncConnection,
) -> None:
    await step(fresh, "upgrade", BEFORE)
    await v1_state(fresh)
    await step(fresh, "upgrade", REVISION)

    # After the upgrade: a staging environment with its own activations, experiments and
    # revisions; production changes too (agt_1 deactivated there, agt_2 activated).
    await insert(fresh, "environments", id=STAGING, slug="staging", name="Staging")
    await fresh.execute(text("DELETE FROM activations WHERE agent_id = 'agt_1'"))
    activations = [
        ("agt_1", STAGING, "var_1b", at(20)),  # active in staging only: inactive in v1
        ("agt_2", PRODUCTION, "var_2a", at(21)),
        ("agt_2", STAGING, "var_2a", at(22)),
    ]
    for agent_id, environment_id, variant_id, when in activations:
        await insert(
            fresh,
            "activations",
            agent_id=agent_id,
            environment_id=environment_id,
            variant_id=variant_id,
            activated_at=when,
        )
    await experiment(fresh, "exp_s1", "agt_1", "running", environment_id=STAGING, started_at=at(23))
    await experiment(fresh, "exp_s2", "agt_3", "draft", environment_id=STAGING)
    await experiment(fresh, "exp_p4", "agt_3", "draft", environment_id=PRODUCTION)
    both = f'{{"{PRODUCTION}": "var_2a", "{STAGING}": "var_2a"}}'
    staging_only = f'{{"{STAGING}": "var_1b"}}'
    extra = [
        ("rev_20", "agt_1", "variant", "var_1b", "activate", STAGING, staging_only),
        ("rev_21", "agt_1", "variant", "var_1a", "deactivate", PRODUCTION, staging_only),
        ("rev_22", "agt_2", "variant", "var_2a", "activate", PRODUCTION, both),
        ("rev_23", "agt_1", "experiment", "exp_s1", "start", STAGING, staging_only),
        ("rev_24", "agt_1", "rule_set", STAGING, "rules", STAGING, staging_only),
        ("rev_25", "agt_1", "variant", "var_1b", "update", None, staging_only),
    ]
    for minute, (rid, agent_id, target, target_id, action, environment_id, active_variants) in enumerate(extra, 20):
        await fresh.execute(
            text(
                "INSERT INTO revisions (id, agent_id, target, target_id, action, environment_id, active_variants,"
                " created_at) VALUES (:id, :agent, :target, :target_id, :action, :env, CAST(:av AS jsonb), :at)"
            ),
            {
                "id": rid,
                "agent": agent_id,
                "target": target,
                "target_id": target_id,
                "action": action,
                "env": environment_id,
                "av": active_variants,
                "at": at(minute),
            },
        )
    await fresh.commit()

    await step(fresh, "downgrade", BEFORE)

    assert await rows(fresh, "SELECT id, is_active, activated_at FROM variants ORDER BY id") == [
        ("var_1a", False, None),
        ("var_1b", False, None),  # active in staging only
        ("var_2a", True, at(21)),  # production's activation, with its instant
    ]
    assert await rows(fresh, "SELECT id FROM experiments ORDER BY id") == [
        ("exp_1",),
        ("exp_2",),
        ("exp_3",),
        ("exp_p4",),
    ]
    kept = [row[0] for row in await rows(fresh, "SELECT id FROM revisions ORDER BY id")]
    v1 = [f"rev_{n:02d}" for n in range(1, 13)]
    # Staging's activation and experiment revisions go; production's and shared ones stay, and
    # so does staging's rule-set revision (rule sets exist at that revision).
    assert kept == [*v1, "rev_21", "rev_22", "rev_24", "rev_25"]
    # v1's guarantee is back: one active variant per agent.
    with pytest.raises(Exception, match="uq_variants_one_active_per_agent"):
        await fresh.execute(text("UPDATE variants SET is_active = true WHERE agent_id = 'agt_1'"))
    await fresh.rollback()

    await step(fresh, "upgrade", "head")
    assert await migrate.current_revision(fresh) == migrate.head_revision()
    assert await rows(fresh, "SELECT agent_id, environment_id, variant_id, activated_at FROM activations") == [
        ("agt_2", PRODUCTION, "var_2a", at(21))
    ]
    environments = await rows(fresh, "SELECT id, environment_id FROM experiments ORDER BY id")
    assert environments == [("exp_1", PRODUCTION), ("exp_2", PRODUCTION), ("exp_3", PRODUCTION), ("exp_p4", PRODUCTION)]
