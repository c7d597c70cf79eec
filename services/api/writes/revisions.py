"""Recording a change: the revision a write adds to its agent's history, in its transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, insert, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import tracing
from services.api.models import Activation, Revision, table_of
from services.api.writes import outbox
from services.api.writes.context import WriteContext
from services.shared.identifiers import new_id

revisions = table_of(Revision)
activations = table_of(Activation)


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
    environment_id: str,
    shared: bool,
    reverts_id: str | None = None,
) -> RowMapping:
    """Write the revision of a change, in the change's transaction, after the change.

    `environment_id` is the request's environment. A change to a shared definition (the
    agent's base config, a variant) is `shared`: its revision names no environment. Either
    way `active_variant_id` is the active variant in the request's environment and
    `active_variants` those of every environment, read as the change left them.
    `created_at` is `at`: the instant the change stamped on its rows, read after the
    agent's row lock was taken, so an agent's revisions are ordered as they committed and
    `?at=<updated_at of an object>` sees the change. Recording announces nothing: the use
    case does (`announce`).
    """
    active = (
        select(activations.c.variant_id)
        .where(activations.c.agent_id == agent_id, activations.c.environment_id == environment_id)
        .scalar_subquery()
    )
    every = (
        select(
            func.coalesce(
                func.jsonb_object_agg(activations.c.environment_id, activations.c.variant_id),
                literal({}, JSONB),
            )
        )
        .where(activations.c.agent_id == agent_id)
        .scalar_subquery()
    )
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
            environment_id=None if shared else environment_id,
            active_variant_id=active,
            active_variants=every,
            before=before,
            after=after,
            reverts_id=reverts_id,
            created_at=at,
        )
        .returning(revisions)
    )
    row = (await conn.execute(statement)).mappings().one()
    await outbox.enqueue(conn, row)  # its webhook events, in the change's own transaction
    tracing.annotate(
        agent=agent_id,
        revision=row["id"],
        environment=environment_id,
        variant=target_id if target == "variant" else None,
        action=action,
    )
    return row
