"""Queries on variants. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Environment, Experiment, RuleSet, Variant, table_of
from services.shared.identifiers import ref_key

variants = table_of(Variant)
experiments = table_of(Experiment)
rule_sets = table_of(RuleSet)
environments = table_of(Environment)


def ref_condition(ref: str):
    """The WHERE clause for a variant named by id or slug, or None when `ref` is neither."""
    key = ref_key("variant", ref)
    return None if key is None else variants.c[key] == ref


async def get(conn: AsyncConnection, agent_id: str, ref: str) -> RowMapping | None:
    condition = ref_condition(ref)
    if condition is None:
        return None
    query = select(variants).where(variants.c.agent_id == agent_id, condition)
    return (await conn.execute(query)).mappings().first()


async def get_by_id(conn: AsyncConnection, variant_id: str) -> RowMapping | None:
    return (await conn.execute(select(variants).where(variants.c.id == variant_id))).mappings().first()


async def active(conn: AsyncConnection, agent_id: str) -> RowMapping | None:
    """The agent's active variant, if any."""
    query = select(variants).where(variants.c.agent_id == agent_id, variants.c.is_active)
    return (await conn.execute(query)).mappings().first()


async def slugs(conn: AsyncConnection, agent_id: str) -> list[tuple[str, str]]:
    """(id, slug) of every variant of the agent, by slug: one small row each, for pickers."""
    query = select(variants.c.id, variants.c.slug).where(variants.c.agent_id == agent_id).order_by(variants.c.slug)
    return [(row.id, row.slug) for row in await conn.execute(query)]


async def list_page(
    conn: AsyncConnection, agent_id: str, *, after: str | None, limit: int, is_active: bool | None
) -> list[RowMapping]:
    query = select(variants).where(variants.c.agent_id == agent_id).order_by(variants.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(variants.c.id < after)
    if is_active is not None:
        query = query.where(variants.c.is_active == is_active)
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


async def deactivate_all(conn: AsyncConnection, agent_id: str, *, at: datetime) -> None:
    """Deactivate the agent's active variant, if any (the partial index allows one)."""
    await conn.execute(
        update(variants)
        .where(variants.c.agent_id == agent_id, variants.c.is_active == true())
        .values(is_active=False, activated_at=None, version=variants.c.version + 1, updated_at=at)
    )


async def activate(conn: AsyncConnection, variant_id: str, *, at: datetime) -> None:
    await conn.execute(
        update(variants)
        .where(variants.c.id == variant_id)
        .values(is_active=True, activated_at=at, version=variants.c.version + 1, updated_at=at)
    )


async def delete_one(conn: AsyncConnection, variant_id: str) -> None:
    await conn.execute(delete(variants).where(variants.c.id == variant_id))


async def experiment_naming(conn: AsyncConnection, agent_id: str, variant_id: str) -> RowMapping | None:
    """A draft or running experiment of the agent with an arm on this variant, if any
    (such a variant may not be deleted). Asked here, not of the experiments package, since
    experiments are built on variants and not the other way round."""
    query = (
        select(experiments)
        .where(
            experiments.c.agent_id == agent_id,
            or_(experiments.c.status == "draft", experiments.c.status == "running"),
            experiments.c.arms.contains([{"variant_id": variant_id}]),
        )
        .limit(1)
    )
    return (await conn.execute(query)).mappings().first()


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
