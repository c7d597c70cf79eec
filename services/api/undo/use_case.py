"""Undo: revert the agent's newest change not yet undone, through the steps of the agent,
variant and rule-set services, and say which change that would be."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.agents import service as agents
from services.api.db import Database
from services.api.environments import repository as environments
from services.api.exceptions import NothingToUndo, UndoConflict
from services.api.revisions import repository as history
from services.api.revisions.schemas import revision_read
from services.api.rules import service as rules
from services.api.undo.schemas import UndoRead
from services.api.variants import repository as variant_repository
from services.api.variants import service as variants
from services.api.writes import announce
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.api.writes.locks import LockedAgent, lock_agent
from services.shared.agent_config import CONFIG_FIELDS, KEYED_FIELDS
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID


async def undo(
    db: Database,
    agent_ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    named: bool = True,
    bound: bool = False,
    context: WriteContext = NO_CONTEXT,
    expected: str | None = None,
) -> dict[str, Any]:
    """Revert the agent's newest change not yet undone (never its creation): made in the
    environment or to shared definitions; made anywhere when the request `named` no
    environment (v1). The objects recorded are as seen from the request's environment.

    The agent's row lock serializes undos, so two concurrent undos revert two different
    revisions (or the second finds nothing left), never the same one twice. `expected`
    (the console's button names the change it undoes) refuses if that is no longer the one.
    """

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        context.check_version(agent.version, what="agent")
        target = await history.newest_undoable(conn, agent.id, environment_id=env["id"] if named else None)
        if target is None:
            raise NothingToUndo(f"Nothing to undo on agent '{agent_ref}': every change since its creation is undone")
        if expected is not None and target["id"] != expected:
            raise UndoConflict(f"The latest change is now revision {target['id']}, not {expected}: look again")
        revision = await _revert(conn, agent, target, context.without_precondition(), env["id"])
        await history.mark_undone(conn, target["id"], revision["id"])
        await announce.agent_changed(conn, agent.id)
        seen = revision_read(revision, seen_from=env["slug"], only=env["slug"] if bound else None)
        return UndoRead(object="undo", reverted_revision_id=target["id"], revision=seen).model_dump(mode="json")

    return await db.transaction(unit)


async def _revert(
    conn: AsyncConnection, agent: LockedAgent, target: RowMapping, context: WriteContext, environment_id: str
) -> RowMapping:
    """Apply the reversal of `target` and return the `undo` revision it wrote. An activation's
    reversal happens in the environment it happened in; the objects recorded are as seen
    from `environment_id`, the request's."""
    kind, action, reverts = target["target"], target["action"], target["id"]
    common: dict[str, Any] = {"action": "undo", "context": context, "reverts_id": reverts, "on_conflict": UndoConflict}
    if kind == "agent":  # update, restore: back to the before state
        row = await agents.require(conn, agent.id, environment_id=environment_id)
        before = target["before"]
        changes = {
            name: before[name] for name in ("name", "slug", "description", "metadata") if row[name] != before[name]
        }
        changes |= {name: before["config"][name] for name in CONFIG_FIELDS if row[name] != before["config"][name]}
        # Recorded before the keyed fields existed: they were empty, and there was no schema.
        was = {name: before["config"].get(name) or {} for name in KEYED_FIELDS}
        was["params_schema"] = before.get("params_schema")
        changes |= {name: value for name, value in was.items() if row[name] != value}
        await agents.apply_changes(conn, agent, row, changes, environment_id=environment_id, **common)
        return await _newest(conn, agent.id)

    if kind == "rule_set":  # the set as it was before, checked again
        await rules.revert(conn, agent, target["target_id"], target["before"]["rules"], **common)
        return await _newest(conn, agent.id)

    # An activation is undone where it happened; every other change is seen from the request's.
    where = target["environment_id"] if action in ("activate", "deactivate") else environment_id
    variant = await variant_repository.get_by_id(conn, target["target_id"], environment_id=where)
    if action == "create":
        if variant is None:
            raise UndoConflict(f"The variant created by revision {reverts} no longer exists")
        if variant["active_in"]:
            raise UndoConflict(
                f"Variant '{variant['slug']}' is active now in {', '.join(variant['active_in'])};"
                " deactivate it before undoing its creation"
            )
        await variants.remove(conn, agent, variant, environment_id=where, **common)
    elif action == "delete":
        await variants.bring_back(conn, agent, target["before"], environment_id=where, **common)
    elif action in ("update", "restore"):
        if variant is None:
            raise UndoConflict(f"The variant changed by revision {reverts} no longer exists")
        changes = variants.changes_to(variant, target["before"], with_slug=True)
        await variants.apply_changes(conn, agent, variant, changes, environment_id=where, **common)
    elif action == "activate":
        if variant is None or variant["activated_at"] is None:
            raise UndoConflict(f"The variant activated by revision {reverts} is no longer active")
        previous = await history.previous(conn, target)
        previous_id = (previous["active_variants"] or {}).get(where) if previous is not None else None
        earlier = None
        if previous_id is not None:
            earlier = await variant_repository.get_by_id(conn, previous_id, environment_id=where)
            if earlier is None:
                raise UndoConflict(f"The previously active variant {previous_id} no longer exists")
        await variants.set_active(conn, agent, where, earlier, target=earlier or variant, **common)
    elif action == "deactivate":
        if variant is None:
            raise UndoConflict(f"The variant deactivated by revision {reverts} no longer exists")
        await variants.set_active(conn, agent, where, variant, target=variant, **common)
    else:  # pragma: no cover - every action the services record is handled above
        raise UndoConflict(f"Revision {reverts} ({kind} {action}) cannot be undone")
    return await _newest(conn, agent.id)


async def _newest(conn: AsyncConnection, agent_id: str) -> RowMapping:
    row = await history.newest(conn, agent_id)
    assert row is not None
    return row


async def next_undo(db: Database, agent_id: str, *, environment_id: str | None = None) -> dict[str, Any] | None:
    """The revision an undo would revert now (in the environment, or anywhere when None),
    or None when there is nothing to undo."""
    async with db.read() as conn:
        target = await history.newest_undoable(conn, agent_id, environment_id=environment_id)
    return revision_read(target) if target is not None else None
