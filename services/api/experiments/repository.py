"""Queries on experiments. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Agent, Environment, Experiment, table_of
from services.shared.identifiers import ref_key

experiments = table_of(Experiment)
agents = table_of(Agent)
environments = table_of(Environment)
# Experiments with the slug of their environment (`environment`), as the object shows it.
_EXPERIMENTS = select(experiments, environments.c.slug.label("environment")).join(
    environments, environments.c.id == experiments.c.environment_id
)


async def get(conn: AsyncConnection, agent_id: str, ref: str, *, environment_id: str) -> RowMapping | None:
    """The agent's experiment in the environment, by id or slug."""
    key = ref_key("experiment", ref)
    if key is None:
        return None  # neither an id nor a slug (a NUL, say): nothing can match, ask nothing
    query = _EXPERIMENTS.where(
        experiments.c.agent_id == agent_id,
        experiments.c[key] == ref,
        experiments.c.environment_id == environment_id,
    )
    return (await conn.execute(query)).mappings().first()


async def by_id(conn: AsyncConnection, experiment_id: str) -> RowMapping | None:
    """An experiment by id, with its environment's slug."""
    return (await conn.execute(_EXPERIMENTS.where(experiments.c.id == experiment_id))).mappings().first()


async def running(conn: AsyncConnection, agent_id: str, *, environment_id: str | None) -> RowMapping | None:
    """The agent's running (or paused) split in the environment (in any, when None)."""
    query = _EXPERIMENTS.where(experiments.c.agent_id == agent_id, experiments.c.status.in_(("running", "paused")))
    if environment_id is not None:
        query = query.where(experiments.c.environment_id == environment_id)
    return (await conn.execute(query.limit(1))).mappings().first()


async def running_for_ref(
    conn: AsyncConnection, agent_key: str, agent_ref: str, *, environment_id: str
) -> RowMapping | None:
    """The running experiment in the environment of the agent with this id or slug
    (`agent_key` says which), with the agent's slug (`agent_slug`)."""
    query = _EXPERIMENTS.add_columns(agents.c.slug.label("agent_slug")).join(
        agents, agents.c.id == experiments.c.agent_id
    )
    query = query.where(
        agents.c[agent_key] == agent_ref,
        agents.c.archived_at.is_(None),
        experiments.c.status.in_(("running", "paused")),
        experiments.c.environment_id == environment_id,
    )
    return (await conn.execute(query)).mappings().first()


async def list_page(
    conn: AsyncConnection, agent_id: str, *, after: str | None, limit: int, status: str | None, environment_id: str
) -> list[RowMapping]:
    """A page of the agent's experiments in the environment, newest first."""
    query = (
        _EXPERIMENTS.where(experiments.c.agent_id == agent_id, experiments.c.environment_id == environment_id)
        .order_by(experiments.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(experiments.c.id < after)
    if status is not None:
        query = query.where(experiments.c.status == status)
    return list((await conn.execute(query)).mappings())


async def environments_of(conn: AsyncConnection, agent_id: str, ids: set[str]) -> dict[str, str]:
    """The environment id of each of these ids that is an experiment of the agent (outcomes
    that name one are its environment's unless they say otherwise)."""
    query = select(experiments.c.id, experiments.c.environment_id).where(
        experiments.c.agent_id == agent_id, experiments.c.id.in_(ids)
    )
    return {experiment_id: environment_id for experiment_id, environment_id in await conn.execute(query)}


async def arms_of(conn: AsyncConnection, agent_id: str, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The arms (as stored: started ones with the variant they serve) of each of these ids
    that is an experiment of the agent."""
    query = select(experiments.c.id, experiments.c.arms).where(
        experiments.c.agent_id == agent_id, experiments.c.id.in_(ids)
    )
    return {experiment_id: arms for experiment_id, arms in await conn.execute(query)}


async def slugs_taken(conn: AsyncConnection, agent_id: str, candidates: list[str]) -> set[str]:
    query = select(experiments.c.slug).where(experiments.c.agent_id == agent_id, experiments.c.slug.in_(candidates))
    return set((await conn.scalars(query)).all())


async def insert_one(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(experiments).values(**values))


async def update_fields(conn: AsyncConnection, experiment_id: str, values: dict[str, Any], *, at: datetime) -> None:
    await conn.execute(
        update(experiments)
        .where(experiments.c.id == experiment_id)
        .values(**values, version=experiments.c.version + 1, updated_at=at)
    )


async def delete_one(conn: AsyncConnection, experiment_id: str) -> None:
    await conn.execute(delete(experiments).where(experiments.c.id == experiment_id))
