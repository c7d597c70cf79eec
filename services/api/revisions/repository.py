"""Queries on revisions: history pages, the undo candidates, and the state at an instant.
Functions take a connection; the caller owns the transaction. Writing a revision is the
write primitive `services.api.writes.revisions.record`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, String, and_, bindparam, func, or_, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Environment, Revision, table_of
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

revisions = table_of(Revision)
environments = table_of(Environment)

# A revision as its object shows it: its columns, its environment's slug (`environment`,
# null for a change to shared definitions) and {every environment's slug: the variant active
# there right after the change, or null} (`active_variants_by_slug`).
_ROWS = select(
    revisions,
    select(environments.c.slug)
    .where(environments.c.id == revisions.c.environment_id)
    .scalar_subquery()
    .label("environment"),
    select(
        func.jsonb_object_agg(
            environments.c.slug, revisions.c.active_variants.op("->>", return_type=String())(environments.c.id)
        )
    )
    .scalar_subquery()
    .label("active_variants_by_slug"),
)


async def get(conn: AsyncConnection, agent_id: str, revision_id: str) -> RowMapping | None:
    query = _ROWS.where(revisions.c.agent_id == agent_id, revisions.c.id == revision_id)
    return (await conn.execute(query)).mappings().first()


async def list_page(
    conn: AsyncConnection,
    agent_id: str,
    *,
    after: str | None,
    limit: int,
    target_id: str | None,
    environment_id: str | None = None,
) -> list[RowMapping]:
    """A page of the agent's history, newest first; with `environment_id`, only the changes
    made in it and those to shared definitions (what a bound key sees)."""
    query = _ROWS.where(revisions.c.agent_id == agent_id).order_by(revisions.c.id.desc()).limit(limit)
    if environment_id is not None:
        query = query.where(or_(revisions.c.environment_id == environment_id, revisions.c.environment_id.is_(None)))
    if after is not None:
        query = query.where(revisions.c.id < after)
    if target_id is not None:
        query = query.where(revisions.c.target_id == target_id)
    return list((await conn.execute(query)).mappings())


async def newest_undoable(conn: AsyncConnection, agent_id: str, *, environment_id: str | None) -> RowMapping | None:
    """The change an undo would revert now: the newest not yet undone that is not an undo,
    an archive or unarchive (they undo each other) or an experiment's (experiment changes
    are final); made in `environment_id` or to shared definitions, or anywhere when it is
    None. None when nothing is left: the agent's creation ends undo."""
    conditions = [
        revisions.c.agent_id == agent_id,
        revisions.c.undone_by_id.is_(None),
        revisions.c.action.not_in(("undo", "archive", "unarchive")),
        revisions.c.target != "experiment",
    ]
    if environment_id is not None:
        conditions.append(or_(revisions.c.environment_id == environment_id, revisions.c.environment_id.is_(None)))
    query = _ROWS.where(*conditions).order_by(revisions.c.created_at.desc(), revisions.c.id.desc()).limit(1)
    row = (await conn.execute(query)).mappings().first()
    if row is None or (row["target"] == "agent" and row["action"] == "create"):
        return None
    return row


async def previous(conn: AsyncConnection, revision: RowMapping) -> RowMapping | None:
    """The agent's revision just before this one."""
    query = (
        select(revisions)
        .where(
            revisions.c.agent_id == revision["agent_id"],
            tuple_(revisions.c.created_at, revisions.c.id) < tuple_(revision["created_at"], revision["id"]),
        )
        .order_by(revisions.c.created_at.desc(), revisions.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).mappings().first()


async def mark_undone(conn: AsyncConnection, revision_id: str, undo_id: str) -> None:
    await conn.execute(update(revisions).where(revisions.c.id == revision_id).values(undone_by_id=undo_id))


def _latest(*conditions: Any, at: Any):
    """The newest revision matching `conditions` at or before `at` (one index lookup)."""
    return (
        select(revisions)
        .where(and_(*conditions), revisions.c.created_at <= at)
        .order_by(revisions.c.created_at.desc(), revisions.c.id.desc())
        .limit(1)
    )


def _state_at_statement():
    """One statement, four index lookups however long the history: the agent's newest
    own revision (by target_id), the agent's newest revision of any target (it records
    the active variants after it), the newest revision of the variant active then in the
    environment, and the environment's newest rule-set revision, all at or before `:at`.
    Built once, with bound parameters, so SQLAlchemy and asyncpg reuse it."""
    agent_id, at = bindparam("agent_id"), bindparam("at")
    environment_id = bindparam("environment_id", type_=String())
    agent = _latest(revisions.c.target_id == agent_id, revisions.c.target == "agent", at=at).subquery("agent_rev")
    last = _latest(revisions.c.agent_id == agent_id, at=at).subquery("last_rev")
    active = last.c.active_variants.op("->>", return_type=String())(environment_id)
    variant = _latest(revisions.c.target_id == active, at=at).lateral("variant_rev")
    rules = _latest(
        revisions.c.agent_id == agent_id,
        revisions.c.environment_id == environment_id,
        revisions.c.target == "rule_set",
        at=at,
    ).subquery("rules_rev")
    return select(
        agent.c.after.label("agent"), variant.c.after.label("variant"), rules.c.after.label("rule_set")
    ).select_from(agent.join(last, true()).outerjoin(variant, true()).outerjoin(rules, true()))


STATE_AT = _state_at_statement()


async def state_at(conn: AsyncConnection, agent_id: str, at: datetime, *, environment_id: str) -> dict[str, Any] | None:
    """The agent object, the object of its variant active in the environment (or None) and
    the environment's rules ([] when none) as of `at`; None when the agent did not exist yet."""
    params = {"agent_id": agent_id, "at": at, "environment_id": environment_id}
    row = (await conn.execute(STATE_AT, params)).mappings().first()
    if row is None or row["agent"] is None:
        return None
    rules = row["rule_set"]["rules"] if row["rule_set"] is not None else []
    return {"agent": row["agent"], "variant": row["variant"], "rules": rules}


async def object_at(conn: AsyncConnection, target_id: str, at: datetime) -> dict[str, Any] | None:
    """The object (a variant, say) as its newest revision at or before `at` left it; None
    when it did not exist then."""
    row = (await conn.execute(_latest(revisions.c.target_id == target_id, at=at))).mappings().first()
    return row["after"] if row is not None else None


async def archived_as_of(conn: AsyncConnection, agent_id: str, at: datetime) -> datetime | None:
    """When the agent was archived, if it was archived at `at`: its newest archive or
    unarchive revision at or before `at` is an archive (an agent unarchived since was
    archived then all the same)."""
    query = (
        select(revisions.c.action, revisions.c.created_at)
        .where(
            revisions.c.agent_id == agent_id,
            revisions.c.action.in_(("archive", "unarchive")),
            revisions.c.created_at <= at,
        )
        .order_by(revisions.c.created_at.desc(), revisions.c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return row.created_at if row is not None and row.action == "archive" else None


async def state_after(conn: AsyncConnection, revision: RowMapping) -> dict[str, Any] | None:
    """`state_at` the instant of this revision (inclusive), in its environment (production's
    for a change to shared definitions)."""
    environment_id = revision["environment_id"] or PRODUCTION_ENVIRONMENT_ID
    return await state_at(conn, revision["agent_id"], revision["created_at"], environment_id=environment_id)


async def newest(conn: AsyncConnection, agent_id: str) -> RowMapping | None:
    query = (
        _ROWS.where(revisions.c.agent_id == agent_id)
        .order_by(revisions.c.created_at.desc(), revisions.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).mappings().first()
