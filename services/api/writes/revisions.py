"""Recording a change: the revision a write adds to its agent's history, in its transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Revision, Variant, table_of
from services.api.writes.context import WriteContext
from services.shared.identifiers import new_id

revisions = table_of(Revision)
variants = table_of(Variant)


async def record(
    conn: AsyncConnection,
    *,
    agent_id: str,
    target: str,
    target_id: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    context: WriteContext,
    at: datetime,
    reverts_id: str | None = None,
) -> RowMapping:
    """Write the revision of a change, in the change's transaction, after the change.

    `active_variant_id` is read from the variants table as the change left it.
    `created_at` is `at`: the instant the change stamped on its rows, read after the
    agent's row lock was taken, so an agent's revisions are ordered as they committed and
    `?at=<updated_at of an object>` sees the change. Recording announces nothing: the use
    case does (`announce`).
    """
    active = select(variants.c.id).where(variants.c.agent_id == agent_id, variants.c.is_active).scalar_subquery()
    statement = (
        insert(revisions)
        .values(
            id=new_id("revision"),
            agent_id=agent_id,
            target=target,
            target_id=target_id,
            action=action,
            actor=context.actor,
            api_key=context.api_key,
            active_variant_id=active,
            before=before,
            after=after,
            reverts_id=reverts_id,
            created_at=at,
        )
        .returning(revisions)
    )
    return (await conn.execute(statement)).mappings().one()
