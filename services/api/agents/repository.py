"""Queries on agents. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Agent, Variant, table_of
from services.shared.identifiers import ref_key

agents = table_of(Agent)
variants = table_of(Variant)
# Stored responses are bytes: those holding the agent's id name it (ids are unique strings).
_FORGET_RESPONSES = text(
    "DELETE FROM idempotency_keys WHERE position(convert_to(:agent_id, 'UTF8') IN response_body) > 0"
    " OR position(:agent_id IN effects::text) > 0"  # a crashed request's saved result
)

# The agent's own columns plus the two derived ones the agent object shows.
_active_variant_id = (
    select(variants.c.id)
    .where(variants.c.agent_id == agents.c.id, variants.c.is_active)
    .scalar_subquery()
    .label("active_variant_id")
)
_variant_count = (
    select(func.count())
    .select_from(variants)
    .where(variants.c.agent_id == agents.c.id)
    .scalar_subquery()
    .label("variant_count")
)
_AGENT_SELECT = select(agents, _active_variant_id, _variant_count)


def ref_condition(ref: str):
    """The WHERE clause for an agent named by id or slug, or None when `ref` is neither."""
    key = ref_key("agent", ref)
    return None if key is None else agents.c[key] == ref


async def get(conn: AsyncConnection, ref: str, *, archived: bool = False) -> RowMapping | None:
    """The agent object's row by id or slug, with its derived columns; an archived agent
    only when `archived`."""
    condition = ref_condition(ref)
    if condition is None:
        return None
    if not archived:
        condition = condition & agents.c.archived_at.is_(None)
    return (await conn.execute(_AGENT_SELECT.where(condition))).mappings().first()


async def list_page(conn: AsyncConnection, *, after: str | None, limit: int, archived: bool) -> list[RowMapping]:
    """Up to `limit` agents newest first, starting below `after`; archived ones too when
    `archived`."""
    query = _AGENT_SELECT.order_by(agents.c.id.desc()).limit(limit)
    if not archived:
        query = query.where(agents.c.archived_at.is_(None))
    if after is not None:
        query = query.where(agents.c.id < after)
    return list((await conn.execute(query)).mappings())


async def search_page(conn: AsyncConnection, *, text: str, after: str | None, limit: int) -> list[RowMapping]:
    """Up to `limit` agents newest first whose name or slug holds `text` (any case)."""
    query = _AGENT_SELECT.where(agents.c.archived_at.is_(None)).order_by(agents.c.id.desc()).limit(limit)
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(agents.c.name.ilike(pattern), agents.c.slug.ilike(pattern)))
    if after is not None:
        query = query.where(agents.c.id < after)
    return list((await conn.execute(query)).mappings())


async def slugs_taken(conn: AsyncConnection, candidates: list[str]) -> set[str]:
    rows = await conn.scalars(select(agents.c.slug).where(agents.c.slug.in_(candidates)))
    return set(rows)


async def insert_unless_slug_taken(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert the agent; False (and nothing written) when its slug is taken.

    ON CONFLICT waits for a concurrent insert of the same slug to commit or roll back,
    so two racing creates never both succeed, and neither aborts the transaction.
    """
    statement = (
        pg_insert(agents).values(**values).on_conflict_do_nothing(index_elements=["slug"]).returning(agents.c.id)
    )
    return (await conn.scalar(statement)) is not None


async def update_fields(conn: AsyncConnection, agent_id: str, values: dict[str, Any], *, at: datetime) -> None:
    """Write changed fields, bumping `version`; `updated_at` is `at`."""
    await conn.execute(
        update(agents).where(agents.c.id == agent_id).values(**values, version=agents.c.version + 1, updated_at=at)
    )


async def purge(conn: AsyncConnection, agent_id: str) -> None:
    """Erase the agent with everything it had: its variants, experiments, outcomes, usage
    and revisions go with it (ON DELETE CASCADE), and so do the stored idempotent
    responses that name it (a replay must not hand back an object that no longer exists)."""
    await conn.execute(_FORGET_RESPONSES, {"agent_id": agent_id})
    await conn.execute(delete(agents).where(agents.c.id == agent_id))
