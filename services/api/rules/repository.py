"""Queries on rule sets. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import RuleSet, table_of

rule_sets = table_of(RuleSet)


async def get(conn: AsyncConnection, agent_id: str, environment_id: str) -> RowMapping | None:
    """The agent's set in the environment; None for a set never written (version 0)."""
    query = select(rule_sets).where(rule_sets.c.agent_id == agent_id, rule_sets.c.environment_id == environment_id)
    return (await conn.execute(query)).mappings().first()


async def put(
    conn: AsyncConnection,
    agent_id: str,
    environment_id: str,
    rules: list[dict[str, Any]],
    *,
    version: int,
    at: datetime,
) -> None:
    """Write the whole set at `version`: the row is made by the first write, replaced after
    (the caller holds the agent's lock, so versions cannot race)."""
    values = {"rules": rules, "version": version, "updated_at": at}
    statement = pg_insert(rule_sets).values(agent_id=agent_id, environment_id=environment_id, **values)
    await conn.execute(statement.on_conflict_do_update(index_elements=["agent_id", "environment_id"], set_=values))
