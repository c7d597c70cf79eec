"""Queries on agents. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Activation, Agent, Environment, Variant, table_of
from services.shared.identifiers import ref_key

agents = table_of(Agent)
variants = table_of(Variant)
activations = table_of(Activation)
environments = table_of(Environment)
# Stored responses are bytes: those holding the agent's id name it (ids are unique strings).
_FORGET_RESPONSES = text(
    "DELETE FROM idempotency_keys WHERE position(convert_to(:agent_id, 'UTF8') IN response_body) > 0"
    " OR position(:agent_id IN effects::text) > 0"  # a crashed request's saved result
)

_variant_count = (
    select(func.count())
    .select_from(variants)
    .where(variants.c.agent_id == agents.c.id)
    .scalar_subquery()
    .label("variant_count")
)
# {every environment's slug: its active variant id or null}.
_active_variants = (
    select(func.jsonb_object_agg(environments.c.slug, activations.c.variant_id))
    .select_from(
        environments.outerjoin(
            activations,
            and_(activations.c.environment_id == environments.c.id, activations.c.agent_id == agents.c.id),
        )
    )
    .scalar_subquery()
    .label("active_variants")
)


def _select(environment_id: str) -> Any:
    """The agent's own columns plus the derived ones its object shows, from one environment:
    `active_variant_id` there, `active_variants` everywhere, `variant_count`."""
    active_variant_id = (
        select(activations.c.variant_id)
        .where(activations.c.agent_id == agents.c.id, activations.c.environment_id == environment_id)
        .scalar_subquery()
        .label("active_variant_id")
    )
    return select(agents, active_variant_id, _active_variants, _variant_count)


def ref_condition(ref: str):
    """The WHERE clause for an agent named by id or slug, or None when `ref` is neither."""
    key = ref_key("agent", ref)
    return None if key is None else agents.c[key] == ref


async def get(conn: AsyncConnection, ref: str, *, environment_id: str, archived: bool = False) -> RowMapping | None:
    """The agent object's row by id or slug, with its derived columns as seen from
    `environment_id`; an archived agent only when `archived`."""
    condition = ref_condition(ref)
    if condition is None:
        return None
    if not archived:
        condition = condition & agents.c.archived_at.is_(None)
    return (await conn.execute(_select(environment_id).where(condition))).mappings().first()


async def list_page(
    conn: AsyncConnection, *, after: str | None, limit: int, archived: bool, environment_id: str
) -> list[RowMapping]:
    """Up to `limit` agents newest first, starting below `after`, as seen from
    `environment_id`; archived ones too when `archived`."""
    query = _select(environment_id).order_by(agents.c.id.desc()).limit(limit)
    if not archived:
        query = query.where(agents.c.archived_at.is_(None))
    if after is not None:
        query = query.where(agents.c.id < after)
    return list((await conn.execute(query)).mappings())


async def live_slugs(conn: AsyncConnection) -> list[str]:
    """The slug of every agent that is not archived, in slug order: what an OFREP bulk
    evaluation without an `agents` filter evaluates."""
    query = select(agents.c.slug).where(agents.c.archived_at.is_(None)).order_by(agents.c.slug)
    return list(await conn.scalars(query))


async def search_page(
    conn: AsyncConnection, *, text: str, after: str | None, limit: int, environment_id: str
) -> list[RowMapping]:
    """Up to `limit` agents newest first whose name or slug holds `text` (any case)."""
    query = _select(environment_id).where(agents.c.archived_at.is_(None)).order_by(agents.c.id.desc()).limit(limit)
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
