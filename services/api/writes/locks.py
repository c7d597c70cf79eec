"""Naming an agent in a use case: `lock_agent` for writes, `find_agent` for reads.

Every write to an agent, its variants or its experiments locks the agent's row first, so
writes to one agent are serialized: a check always sees the base config it is checked
against, and activations, undos and experiment starts never race each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.exceptions import NotFound
from services.api.models import Agent, table_of
from services.shared.agent_config import RESOLVED_FIELDS
from services.shared.identifiers import ref_key

agents = table_of(Agent)
_COLUMNS = (
    agents.c.id,
    agents.c.slug,
    agents.c.version,
    agents.c.archived_at,
    agents.c.params_schema,
    *(agents.c[name] for name in RESOLVED_FIELDS),
)


@dataclass(frozen=True, slots=True)
class FoundAgent:
    """An agent as a use case needs it: who it is, its version, its base config (the
    twelve fields and the keyed ones) and the schema its params must satisfy."""

    id: str
    slug: str
    version: int
    config: dict[str, Any]
    archived_at: datetime | None
    params_schema: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class LockedAgent(FoundAgent):
    """An agent whose row lock this transaction holds. `at` is clock_timestamp() read after
    the lock was taken: the one instant the write stamps on its rows and its revision, so
    an agent's revisions are ordered as they committed."""

    at: datetime


def _condition(ref: str, *, archived: bool) -> Any:
    """The agent named by `ref`; an archived one only when `archived` (its history, usage,
    results and unarchive still name it; every other route answers 404 as if it were gone)."""
    key = ref_key("agent", ref)
    if key is None:
        return None
    return agents.c[key] == ref if archived else (agents.c[key] == ref) & agents.c.archived_at.is_(None)


def _found(row: Any) -> FoundAgent:
    config = {name: row[name] for name in RESOLVED_FIELDS}
    return FoundAgent(row["id"], row["slug"], row["version"], config, row["archived_at"], row["params_schema"])


async def find_agent(conn: AsyncConnection, ref: str, *, archived: bool = False) -> FoundAgent:
    """The agent named by id or slug; `NotFound` otherwise (and for an archived agent,
    unless `archived`)."""
    condition = _condition(ref, archived=archived)
    row = None if condition is None else (await conn.execute(select(*_COLUMNS).where(condition))).mappings().first()
    if row is None:
        raise NotFound("Agent", ref)
    return _found(row)


async def lock_agent(conn: AsyncConnection, ref: str, *, archived: bool = False) -> LockedAgent:
    """Take the agent's row lock (until the transaction ends) and read it; `NotFound`
    when no agent has this id or slug (or it is archived, unless `archived`)."""
    condition = _condition(ref, archived=archived)
    # FOR NO KEY UPDATE: writes still queue on it, but a foreign key's check (an outcome's
    # insert takes FOR KEY SHARE on its agent) never waits for it, nor it for them.
    locked = (
        None
        if condition is None
        else await conn.scalar(select(agents.c.id).where(condition).with_for_update(key_share=True))
    )
    if locked is None:
        raise NotFound("Agent", ref)
    # Read after the lock is held, so the values and the instant are those of the locked state.
    query = select(*_COLUMNS, func.clock_timestamp().label("at")).where(agents.c.id == locked)
    row = (await conn.execute(query)).mappings().one()
    config = {name: row[name] for name in RESOLVED_FIELDS}
    return LockedAgent(
        row["id"], row["slug"], row["version"], config, row["archived_at"], row["params_schema"], row["at"]
    )
