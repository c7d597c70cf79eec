"""History use cases: list and read revisions, undo, and what resolution was at an instant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.agents import service as agents
from services.api.db import Database
from services.api.exceptions import NotFound, NothingToUndo, UndoConflict
from services.api.revisions import repository
from services.api.schemas import timestamp
from services.api.variants import repository as variant_repository
from services.api.variants import service as variants
from services.api.writes import NO_CONTEXT, WriteContext
from services.shared.agent_config import CONFIG_FIELDS, ResolvedAgentConfig
from services.shared.identifiers import is_id


def to_read(row: RowMapping) -> dict[str, Any]:
    """The revision object of the contract."""
    return {
        "object": "revision",
        "id": row["id"],
        "agent_id": row["agent_id"],
        "target": row["target"],
        "target_id": row["target_id"],
        "action": row["action"],
        "actor": row["actor"],
        "api_key": row["api_key"],
        "active_variant_id": row["active_variant_id"],
        "before": row["before"],
        "after": row["after"],
        "created_at": timestamp(row["created_at"]),
    }


async def list_revisions(
    db: Database, agent_ref: str, *, after: str | None, limit: int, target_id: str | None
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        agent = await agents.require(conn, agent_ref)
        if target_id is not None and not any(is_id(kind, target_id) for kind in ("agent", "variant", "experiment")):
            return []  # not an id of anything with revisions: it matches none
        rows = await repository.list_page(conn, agent["id"], after=after, limit=limit, target_id=target_id)
        return [to_read(row) for row in rows]


async def get_revision(db: Database, agent_ref: str, revision_id: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await agents.require(conn, agent_ref)
        row = await repository.get(conn, agent["id"], revision_id) if is_id("revision", revision_id) else None
        if row is None:
            raise NotFound("Revision", revision_id)
        return to_read(row)


async def undo(
    db: Database, agent_ref: str, *, context: WriteContext = NO_CONTEXT, expected: str | None = None
) -> dict[str, Any]:
    """Revert the agent's newest change not yet undone (never its creation).

    The agent's row lock serializes undos, so two concurrent undos revert two different
    revisions (or the second finds nothing left), never the same one twice. `expected`
    (the console's button names the change it undoes) refuses if that is no longer the one.
    """

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await agents.require(conn, agent_ref, lock=True)
        context.check_version(agent["version"], what="agent")
        target = await repository.newest_undoable(conn, agent["id"])
        if target is None or (target["target"] == "agent" and target["action"] == "create"):
            raise NothingToUndo(f"Nothing to undo on agent '{agent_ref}': every change since its creation is undone")
        if expected is not None and target["id"] != expected:
            raise UndoConflict(f"The latest change is now revision {target['id']}, not {expected}: look again")
        undo_context = WriteContext(actor=context.actor, api_key=context.api_key)
        revision = await _revert(conn, agent, target, undo_context)
        await repository.mark_undone(conn, target["id"], revision["id"])
        return {"object": "undo", "reverted_revision_id": target["id"], "revision": to_read(revision)}

    return await db.transaction(unit)


async def _revert(
    conn: AsyncConnection, agent: RowMapping, target: RowMapping, context: WriteContext
) -> RowMapping:
    """Apply the reversal of `target` and return the `undo` revision it wrote."""
    kind, action, reverts = target["target"], target["action"], target["id"]
    common = {"action": "undo", "context": context, "reverts_id": reverts, "on_conflict": UndoConflict}
    if kind == "agent":  # update, restore: back to the before state
        before = target["before"]
        changes = {
            name: before[name] for name in ("name", "slug", "description", "metadata") if agent[name] != before[name]
        }
        changes |= {name: before["config"][name] for name in CONFIG_FIELDS if agent[name] != before["config"][name]}
        await agents.apply_changes(conn, agent, changes, **common)
        return await _newest(conn, agent["id"])

    row = await variant_repository.get_by_id(conn, target["target_id"])
    if action == "create":
        if row is None:
            raise UndoConflict(f"The variant created by revision {reverts} no longer exists")
        if row["is_active"]:
            raise UndoConflict(f"Variant '{row['slug']}' is active now; deactivate it before undoing its creation")
        await variants.remove(conn, agent, row, **common)
    elif action == "delete":
        await variants.bring_back(conn, agent, target["before"], **common)
    elif action in ("update", "restore"):
        if row is None:
            raise UndoConflict(f"The variant changed by revision {reverts} no longer exists")
        changes = variants.changes_to(row, target["before"], with_slug=True)
        await variants.apply_changes(conn, agent, row, changes, **common)
    elif action == "activate":
        previous = await repository.previous(conn, target)
        previous_id = previous["active_variant_id"] if previous is not None else None
        if previous_id is None:
            if row is None or not row["is_active"]:
                raise UndoConflict(f"The variant activated by revision {reverts} is no longer active")
            await variants.set_active(conn, agent, row, active=False, **common)
        else:
            earlier = await variant_repository.get_by_id(conn, previous_id)
            if earlier is None:
                raise UndoConflict(f"The previously active variant {previous_id} no longer exists")
            await variants.set_active(conn, agent, earlier, active=True, **common)
    elif action == "deactivate":
        if row is None:
            raise UndoConflict(f"The variant deactivated by revision {reverts} no longer exists")
        await variants.set_active(conn, agent, row, active=True, **common)
    else:  # pragma: no cover - every action the service records is handled above
        raise UndoConflict(f"Revision {reverts} ({kind} {action}) cannot be undone")
    return await _newest(conn, agent["id"])


async def _newest(conn: AsyncConnection, agent_id: str) -> RowMapping:
    row = await repository.newest(conn, agent_id)
    assert row is not None
    return row


async def resolve_at(conn: AsyncConnection, agent_ref: str, at: datetime) -> ResolvedAgentConfig:
    """What resolution returned at `at`: the agent, its active variant and that variant's
    overrides and slugs as recorded by the newest revisions at or before `at`."""
    agent = await agents.require(conn, agent_ref)
    state = await repository.state_at(conn, agent["id"], at)
    if state is None:
        raise NotFound("Agent", agent_ref, detail=f"Agent '{agent_ref}' did not exist at {timestamp(at)}")
    base, variant = state["agent"], state["variant"]
    overrides = variant["overrides"] if variant is not None else {}
    return ResolvedAgentConfig(
        agent_id=base["id"],
        variant_id=variant["id"] if variant is not None else None,
        agent_slug=base["slug"],
        variant_slug=variant["slug"] if variant is not None else None,
        source="variant" if variant is not None else "agent",
        overridden=frozenset(overrides),
        **{name: overrides.get(name, base["config"][name]) for name in CONFIG_FIELDS},
    )


async def next_undo(db: Database, agent_id: str) -> dict[str, Any] | None:
    """The revision an undo would revert now, or None when there is nothing to undo."""
    async with db.read() as conn:
        target = await repository.newest_undoable(conn, agent_id)
    if target is None or (target["target"] == "agent" and target["action"] == "create"):
        return None
    return to_read(target)
