"""Agent use cases: create, read, list, patch, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import patching, slugs
from services.api.agents import repository
from services.api.agents.schemas import AgentCreate, AgentUpdate
from services.api.consistency import check_resolved
from services.api.db import Database, changed_agent, constraint_name
from services.api.exceptions import (
    DomainError,
    ExperimentRunning,
    FieldError,
    NotFound,
    SlugTaken,
    conflicts_reported_as,
)
from services.api.experiments import repository as experiments
from services.api.revisions import repository as revisions
from services.api.schemas import set_fields, timestamp
from services.api.variants import repository as variant_repository
from services.api.writes import NO_CONTEXT, WriteContext
from services.shared.agent_config import CONFIG_FIELDS, DEFAULTS
from services.shared.identifiers import new_id


def to_read(row: RowMapping) -> dict[str, Any]:
    """The agent object of the contract."""
    return {
        "object": "agent",
        "id": row["id"],
        "slug": row["slug"],
        "name": row["name"],
        "description": row["description"],
        "metadata": row["metadata"],
        "config": {name: row[name] for name in CONFIG_FIELDS},
        "active_variant_id": row["active_variant_id"],
        "variant_count": row["variant_count"],
        "version": row["version"],
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
    }


async def require(conn: AsyncConnection, ref: str, *, lock: bool = False) -> RowMapping:
    row = await repository.get(conn, ref, lock=lock)
    if row is None:
        raise NotFound("Agent", ref)
    return row


def slug_taken(slug: str) -> SlugTaken:
    return SlugTaken(f"Slug '{slug}' is already taken by another agent", errors=[FieldError("slug", "already taken")])


async def create_agent(db: Database, data: AgentCreate, *, context: WriteContext = NO_CONTEXT) -> dict[str, Any]:
    config = {name: value if value is not None else DEFAULTS[name]
              for name, value in data.config.model_dump().items()}
    check_resolved(config, overrides={})
    agent_id = new_id("agent")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        at = await conn.scalar(select(func.clock_timestamp()))
        values = {
            "id": agent_id,
            "created_at": at,
            "updated_at": at,
            "name": data.name,
            "description": data.description or "",
            "metadata": data.metadata or {},
            **config,
        }
        if data.slug is not None:
            if not await repository.insert_unless_slug_taken(conn, {**values, "slug": data.slug}):
                raise slug_taken(data.slug)
        else:  # AgentCreate made sure the name gives a slug
            await slugs.insert_with_derived_slug(
                slugs._slugify(data.name),
                taken=lambda candidates: repository.slugs_taken(conn, candidates),
                insert=lambda slug: repository.insert_unless_slug_taken(conn, {**values, "slug": slug}),
            )
        agent = to_read(await require(conn, agent_id))
        await revisions.record(conn, agent_id=agent_id, target="agent", target_id=agent_id, action="create",
                               before=None, after=agent, context=context, at=at)
        return agent

    return await db.transaction(unit)


async def get_agent(db: Database, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        return to_read(await require(conn, ref))


async def list_agents(db: Database, *, after: str | None, limit: int) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [to_read(row) for row in await repository.list_page(conn, after=after, limit=limit)]


async def update_agent(
    db: Database, ref: str, patch: AgentUpdate, *, context: WriteContext = NO_CONTEXT
) -> dict[str, Any]:
    sent = set_fields(patch)
    # name, slug and config are not nullable in AgentUpdate: an explicit null is a 422.
    config_patch = set_fields(patch.config) if patch.config is not None else {}

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await require(conn, ref, lock=True)
        context.check_version(row["version"], what="agent")
        changes: dict[str, Any] = {}
        if "name" in sent and sent["name"] != row["name"]:
            changes["name"] = sent["name"]
        if "slug" in sent and sent["slug"] != row["slug"]:
            changes["slug"] = sent["slug"]
        if "description" in sent and (sent["description"] or "") != row["description"]:
            changes["description"] = sent["description"] or ""
        if "metadata" in sent:
            metadata = patching.merge_metadata(row["metadata"], sent["metadata"])
            if metadata != row["metadata"]:
                changes["metadata"] = metadata
        for name, value in config_patch.items():
            if value != row[name]:
                changes[name] = value
        if not changes:
            return to_read(row)
        return await apply_changes(conn, row, changes, action="update", context=context)

    return await db.transaction(unit)


async def apply_changes(
    conn: AsyncConnection,
    row: RowMapping,
    changes: dict[str, Any],
    *,
    action: str,
    context: WriteContext,
    reverts_id: str | None = None,
    on_conflict: type[DomainError] | None = None,
) -> dict[str, Any]:
    """Write `changes` to an agent (`row`, read with its lock) after checking the rule, and
    record the revision.

    `on_conflict`, when given, replaces the errors a rule or a taken slug would raise (an
    undo reports them all as `undo_conflict`).
    """
    config = {name: changes.get(name, row[name]) for name in CONFIG_FIELDS}
    with conflicts_reported_as(on_conflict):
        check_resolved(config, overrides={})
        if row["active_variant_id"] is not None:
            active = await variant_repository.get_by_id(conn, row["active_variant_id"])
            assert active is not None
            check_resolved(config, overrides=variant_repository.overrides_of(active),
                           subject=f"config of the active variant '{active['slug']}'")
        try:
            await repository.update_fields(conn, row["id"], changes, at=row["locked_at"])
        except IntegrityError as error:
            # The transaction is aborted now; raising ends it, which is what we want.
            if constraint_name(error) == "uq_agents_slug":
                raise slug_taken(changes["slug"]) from None
            raise
    after = to_read(await require(conn, row["id"]))
    await revisions.record(conn, agent_id=row["id"], target="agent", target_id=row["id"], action=action,
                           before=to_read(row), after=after, context=context, at=row["locked_at"],
                           reverts_id=reverts_id)
    return after


async def delete_agent(db: Database, ref: str, *, context: WriteContext = NO_CONTEXT) -> None:
    async def unit(conn: AsyncConnection) -> None:
        row = await require(conn, ref, lock=True)
        context.check_version(row["version"], what="agent")
        running = await experiments.running(conn, row["id"])
        if running is not None:
            raise ExperimentRunning(f"Experiment '{running['slug']}' of agent '{ref}' is running; stop it first")
        # Its variants, experiments, outcomes and revisions go with it (ON DELETE CASCADE).
        await repository.delete_one(conn, row["id"])
        await changed_agent(conn, row["id"])

    await db.transaction(unit)
