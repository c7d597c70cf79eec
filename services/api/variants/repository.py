"""Queries on variants. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Activation, Environment, Experiment, RuleSet, Variant, table_of
from services.shared.identifiers import ref_key

variants = table_of(Variant)
activations = table_of(Activation)
experiments = table_of(Experiment)
rule_sets = table_of(RuleSet)
environments = table_of(Environment)

# Where the variant is active: the slugs of those environments, sorted (`active_in`). A JSON
# array, not a text[]: asyncpg would introspect the array type on every new connection.
_active_in = (
    select(
        func.coalesce(
            func.jsonb_agg(aggregate_order_by(environments.c.slug, environments.c.slug)),
            literal([], JSONB),
        )
    )
    .select_from(activations.join(environments, environments.c.id == activations.c.environment_id))
    .where(activations.c.variant_id == variants.c.id)
    .scalar_subquery()
    .label("active_in")
)


def _select(environment_id: str) -> Any:
    """Variants as the variant object shows them from one environment: their columns,
    `activated_at` there (null when not active there) and `active_in`."""
    activated_at = (
        select(activations.c.activated_at)
        .where(activations.c.variant_id == variants.c.id, activations.c.environment_id == environment_id)
        .scalar_subquery()
        .label("activated_at")
    )
    return select(variants, activated_at, _active_in)


def ref_condition(ref: str):
    """The WHERE clause for a variant named by id or slug, or None when `ref` is neither."""
    key = ref_key("variant", ref)
    return None if key is None else variants.c[key] == ref


async def get(conn: AsyncConnection, agent_id: str, ref: str, *, environment_id: str) -> RowMapping | None:
    """A variant of the agent by id or slug, as seen from `environment_id`."""
    condition = ref_condition(ref)
    if condition is None:
        return None
    query = _select(environment_id).where(variants.c.agent_id == agent_id, condition)
    return (await conn.execute(query)).mappings().first()


async def get_by_id(conn: AsyncConnection, variant_id: str, *, environment_id: str) -> RowMapping | None:
    query = _select(environment_id).where(variants.c.id == variant_id)
    return (await conn.execute(query)).mappings().first()


async def active(conn: AsyncConnection, agent_id: str, *, environment_id: str) -> RowMapping | None:
    """The agent's active variant in the environment, if any."""
    query = _select(environment_id).where(
        variants.c.agent_id == agent_id,
        variants.c.id.in_(
            select(activations.c.variant_id).where(
                activations.c.agent_id == agent_id, activations.c.environment_id == environment_id
            )
        ),
    )
    return (await conn.execute(query)).mappings().first()


async def active_anywhere(conn: AsyncConnection, agent_id: str) -> list[RowMapping]:
    """The agent's variants active in some environment (each once), by slug: a change of the
    base config must leave each of their configs passing the write-time checks."""
    query = (
        select(variants)
        .where(variants.c.id.in_(select(activations.c.variant_id).where(activations.c.agent_id == agent_id)))
        .order_by(variants.c.slug)
    )
    return list((await conn.execute(query)).mappings())


async def active_variants(conn: AsyncConnection, agent_id: str) -> dict[str, str]:
    """{environment id: active variant id} for the environments where the agent has one."""
    query = select(activations.c.environment_id, activations.c.variant_id).where(activations.c.agent_id == agent_id)
    return {row.environment_id: row.variant_id for row in await conn.execute(query)}


async def slugs(conn: AsyncConnection, agent_id: str) -> list[tuple[str, str]]:
    """(id, slug) of every variant of the agent, by slug: one small row each, for pickers."""
    query = select(variants.c.id, variants.c.slug).where(variants.c.agent_id == agent_id).order_by(variants.c.slug)
    return [(row.id, row.slug) for row in await conn.execute(query)]


async def list_page(
    conn: AsyncConnection,
    agent_id: str,
    *,
    after: str | None,
    limit: int,
    is_active: bool | None,
    environment_id: str,
) -> list[RowMapping]:
    """A page of the agent's variants as seen from `environment_id`; `is_active` filters on
    being active there."""
    query = _select(environment_id).where(variants.c.agent_id == agent_id).order_by(variants.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(variants.c.id < after)
    if is_active is not None:
        here = select(activations.c.variant_id).where(
            activations.c.agent_id == agent_id, activations.c.environment_id == environment_id
        )
        query = query.where(variants.c.id.in_(here) if is_active else variants.c.id.not_in(here))
    return list((await conn.execute(query)).mappings())


async def slugs_taken(conn: AsyncConnection, agent_id: str, candidates: list[str]) -> set[str]:
    rows = await conn.scalars(
        select(variants.c.slug).where(variants.c.agent_id == agent_id, variants.c.slug.in_(candidates))
    )
    return set(rows)


async def insert_unless_slug_taken(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert the variant; False (nothing written) when its slug is taken in the agent."""
    statement = (
        pg_insert(variants)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["agent_id", "slug"])
        .returning(variants.c.id)
    )
    return (await conn.scalar(statement)) is not None


async def update_fields(conn: AsyncConnection, variant_id: str, values: dict[str, Any], *, at: datetime) -> None:
    """Write changed fields, bumping `version`; `updated_at` is `at`."""
    await conn.execute(
        update(variants)
        .where(variants.c.id == variant_id)
        .values(**values, version=variants.c.version + 1, updated_at=at)
    )


async def set_active(
    conn: AsyncConnection, agent_id: str, environment_id: str, variant_id: str | None, *, at: datetime
) -> None:
    """Make `variant_id` the agent's active variant in the environment (None: none).

    The activation's primary key (agent, environment) holds at most one row, so at most one
    active variant, whatever the concurrency. Both the variant that leaves and the one that
    arrives change (`is_active` and `activated_at` are part of them): their versions move.
    """
    delete_old = (
        delete(activations)
        .where(activations.c.agent_id == agent_id, activations.c.environment_id == environment_id)
        .returning(activations.c.variant_id)
    )
    changed = set((await conn.scalars(delete_old)).all())
    if variant_id is not None:
        values = {"agent_id": agent_id, "environment_id": environment_id, "variant_id": variant_id}
        await conn.execute(pg_insert(activations).values(**values, activated_at=at))
        changed.add(variant_id)
    if changed:
        await conn.execute(
            update(variants).where(variants.c.id.in_(changed)).values(version=variants.c.version + 1, updated_at=at)
        )


async def delete_one(conn: AsyncConnection, variant_id: str) -> None:
    await conn.execute(delete(variants).where(variants.c.id == variant_id))


async def experiment_naming(conn: AsyncConnection, agent_id: str, variant_id: str) -> RowMapping | None:
    """A draft, running or paused split of the agent with an arm on this variant, if any
    (such a variant may not be deleted). Asked here, not of the experiments package, since
    experiments are built on variants and not the other way round."""
    query = (
        select(experiments)
        .where(
            experiments.c.agent_id == agent_id,
            experiments.c.status.in_(("draft", "running", "paused")),
            experiments.c.arms.contains([{"variant_id": variant_id}]),
        )
        .limit(1)
    )
    return (await conn.execute(query)).mappings().first()


async def live_rollout(
    conn: AsyncConnection, agent_id: str, *, variant_id: str | None = None, environment_id: str | None = None
) -> RowMapping | None:
    """The agent's running or paused rollout of this variant, or in this environment, if any:
    while one is live its variant's config may not change (it is what completion activates)
    and nothing else may be activated in its environment."""
    query = select(experiments).where(
        experiments.c.agent_id == agent_id,
        experiments.c.kind == "rollout",
        experiments.c.status.in_(("running", "paused")),
    )
    if variant_id is not None:
        query = query.where(experiments.c.arms.contains([{"arm": 1, "variant_id": variant_id}]))
    if environment_id is not None:
        query = query.where(experiments.c.environment_id == environment_id)
    return (await conn.execute(query.limit(1))).mappings().first()


async def rule_naming(conn: AsyncConnection, agent_id: str, variant_id: str) -> str | None:
    """The slug of an environment in which a rule of the agent serves this variant, if any
    (such a variant may not be deleted). Asked here, not of the rules package, which is
    built on variants; a caller holds the agent's lock, as every rule-set write does."""
    query = (
        select(environments.c.slug)
        .select_from(rule_sets.join(environments, environments.c.id == rule_sets.c.environment_id))
        .where(rule_sets.c.agent_id == agent_id, rule_sets.c.rules.contains([{"serve": {"variant": variant_id}}]))
        .order_by(environments.c.slug)
        .limit(1)
    )
    return await conn.scalar(query)


async def served_by_rules(conn: AsyncConnection, agent_id: str) -> list[RowMapping]:
    """The agent's variants a targeting rule serves, in any environment: a change of the base
    config must leave each of their configs passing the write-time checks."""
    served = rule_sets.c.rules.contains(
        func.jsonb_build_array(func.jsonb_build_object("serve", func.jsonb_build_object("variant", variants.c.id)))
    )
    ruled = select(rule_sets.c.agent_id).where(rule_sets.c.agent_id == agent_id, served).exists()
    query = select(variants).where(variants.c.agent_id == agent_id, ruled).order_by(variants.c.slug)
    return list((await conn.execute(query)).mappings())
