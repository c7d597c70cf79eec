"""Agent use cases: create, read, list, patch, archive (a DELETE), unarchive, purge."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import patching, slugs
from services.api.agents import repository
from services.api.agents.schemas import AgentCreate, AgentUpdate, agent_read
from services.api.consistency import TEMPLATE_FIELDS, Checked, check_model_limits, check_params_schema, check_resolved
from services.api.db import Database, constraint_name
from services.api.environments import repository as environments
from services.api.exceptions import (
    AgentNotArchived,
    DomainError,
    ExperimentRunning,
    FieldError,
    NotFound,
    SlugTaken,
    conflicts_reported_as,
)
from services.api.experiments import repository as experiments
from services.api.keyed_fields import merge_keyed
from services.api.schemas import set_fields
from services.api.variants import repository as variant_repository
from services.api.variants.schemas import overrides_of
from services.api.writes import announce, outbox, serving
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.api.writes.locks import LockedAgent, lock_agent
from services.api.writes.revisions import record
from services.shared.agent_config import CONFIG_FIELDS, DEFAULTS, KEYED_FIELDS, RESOLVED_FIELDS
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id
from services.shared.templates import TemplateError, variable_names


async def require(conn: AsyncConnection, ref: str, *, environment_id: str, archived: bool = False) -> RowMapping:
    """The agent object's row (with its derived columns, as seen from `environment_id`) by id
    or slug; `NotFound` otherwise (and for an archived agent, unless `archived`)."""
    row = await repository.get(conn, ref, environment_id=environment_id, archived=archived)
    if row is None:
        raise NotFound("Agent", ref)
    return row


def slug_taken(slug: str) -> SlugTaken:
    return SlugTaken(f"Slug '{slug}' is already taken by another agent", errors=[FieldError("slug", "already taken")])


async def create_agent(
    db: Database, data: AgentCreate, *, environment: str = PRODUCTION_ENVIRONMENT_ID, context: WriteContext = NO_CONTEXT
) -> dict[str, Any]:
    config = base_config(data)
    check_params_schema(data.params_schema)
    check_resolved(config, overrides={}, params_schema=data.params_schema)
    agent_id = new_id("agent")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        at: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
        env = await environments.hold(conn, environment)
        await check_model_limits(conn, [(config, {}, "config")])
        values = {
            "id": agent_id,
            "created_at": at,
            "updated_at": at,
            "name": data.name,
            "description": data.description or "",
            "metadata": data.metadata or {},
            **config,
            "params_schema": data.params_schema,
        }
        if data.slug is not None:
            if not await repository.insert_unless_slug_taken(conn, {**values, "slug": data.slug}):
                raise slug_taken(data.slug)
        else:  # AgentCreate made sure the name gives a slug
            await slugs.insert_with_derived_slug(
                slugs.slugify(data.name),
                taken=lambda candidates: repository.slugs_taken(conn, candidates),
                insert=lambda slug: repository.insert_unless_slug_taken(conn, {**values, "slug": slug}),
            )
        agent = agent_read(await require(conn, agent_id, environment_id=env["id"]))
        await record(
            conn,
            agent_id=agent_id,
            target="agent",
            target_id=agent_id,
            action="create",
            before=None,
            after=agent,
            context=context,
            at=at,
            environment_id=env["id"],
            shared=True,
        )
        await announce.agent_changed(conn, agent_id)
        return agent

    return await db.transaction(unit)


def base_config(data: AgentCreate) -> dict[str, Any]:
    """A new agent's config: what the request gives, defaults for the rest. Without
    `variables`, each placeholder of its templates is declared a required string (never
    on later writes: a declaration is then the author's to make)."""
    given = data.config
    config = {name: value if (value := getattr(given, name)) is not None else DEFAULTS[name] for name in CONFIG_FIELDS}
    config["params"] = getattr(given, "params", None) or {}
    config["tools"] = getattr(given, "tools", None) or {}
    declared = getattr(given, "variables", None)
    if declared is not None:
        config["variables"] = declared
    else:
        names: dict[str, None] = {}
        for field in TEMPLATE_FIELDS:
            with contextlib.suppress(TemplateError):  # check_resolved reports it: invalid_template
                names.update(dict.fromkeys(variable_names(config[field])))
        config["variables"] = {name: {"type": "string"} for name in names}
    return config


async def get_agent(db: Database, ref: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID) -> dict[str, Any]:
    async with db.read() as conn:
        env = await environments.named(conn, environment)
        return agent_read(await require(conn, ref, environment_id=env["id"]))


async def list_agents(
    db: Database, *, after: str | None, limit: int, environment: str = PRODUCTION_ENVIRONMENT_ID, archived: bool = False
) -> list[dict[str, Any]]:
    """Agents newest first; archived ones too when `archived`."""
    async with db.read() as conn:
        env = await environments.named(conn, environment)
        rows = await repository.list_page(conn, after=after, limit=limit, archived=archived, environment_id=env["id"])
        return [agent_read(row) for row in rows]


async def update_agent(
    db: Database,
    ref: str,
    patch: AgentUpdate,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    sent = set_fields(patch)
    # name, slug and config are not nullable in AgentUpdate: an explicit null is a 422.
    config_patch = set_fields(patch.config) if patch.config is not None else {}

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, ref)
        env = await environments.hold(conn, environment)
        context.check_version(agent.version, what="agent")
        row = await require(conn, agent.id, environment_id=env["id"])
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
            if name in CONFIG_FIELDS and value != row[name]:
                changes[name] = value
        current = {name: row[name] for name in KEYED_FIELDS}
        for name, value in merge_keyed(current, config_patch, variant=False).items():
            if value != current[name]:
                changes[name] = value
        if "params_schema" in sent and sent["params_schema"] != row["params_schema"]:
            check_params_schema(sent["params_schema"])
            changes["params_schema"] = sent["params_schema"]
        if not changes:
            return agent_read(row)
        after = await apply_changes(
            conn, agent, row, changes, action="update", context=context, environment_id=env["id"]
        )
        await announce.agent_changed(conn, agent.id)
        return after

    return await db.transaction(unit)


async def apply_changes(
    conn: AsyncConnection,
    agent: LockedAgent,
    row: RowMapping,
    changes: dict[str, Any],
    *,
    action: str,
    context: WriteContext,
    environment_id: str,
    reverts_id: str | None = None,
    on_conflict: type[DomainError] | None = None,
) -> dict[str, Any]:
    """Write `changes` to a locked agent (`row`: its object's row, as seen from
    `environment_id`, the request's) after checking the rule, and record the revision.

    `on_conflict`, when given, replaces the errors a rule or a taken slug would raise (an
    undo reports them all as `undo_conflict`).
    """
    config = {name: changes.get(name, agent.config[name]) for name in RESOLVED_FIELDS}
    params_schema = changes["params_schema"] if "params_schema" in changes else agent.params_schema
    if context.bound_to is not None:
        await _alters_nothing_elsewhere(conn, agent, changes, context.bound_to)
    with conflicts_reported_as(on_conflict):
        check_resolved(config, overrides={}, params_schema=params_schema)
        # The base config is shared: every environment's active variant must still pass.
        checked = set()
        served: list[Checked] = [(config, {}, "config")]
        for active in await variant_repository.active_anywhere(conn, agent.id):
            subject = f"config of the active variant '{active['slug']}'"
            check_resolved(config, overrides=overrides_of(active), subject=subject, params_schema=params_schema)
            served.append((config, overrides_of(active), subject))
            checked.add(active["id"])
        # Contract 1.1: a rule's served config passes every write-time check, now as when written.
        for ruled in await variant_repository.served_by_rules(conn, agent.id):
            if ruled["id"] not in checked:
                subject = f"config of variant '{ruled['slug']}', which a targeting rule serves"
                check_resolved(config, overrides=overrides_of(ruled), subject=subject, params_schema=params_schema)
                served.append((config, overrides_of(ruled), subject))
        await check_model_limits(conn, served)
        try:
            await repository.update_fields(conn, agent.id, changes, at=agent.at)
        except IntegrityError as error:
            # The transaction is aborted now; raising ends it, which is what we want.
            if constraint_name(error) == "uq_agents_slug":
                raise slug_taken(changes["slug"]) from None
            raise
    after = agent_read(await require(conn, agent.id, environment_id=environment_id))
    await record(
        conn,
        agent_id=agent.id,
        target="agent",
        target_id=agent.id,
        action=action,
        before=agent_read(row),
        after=after,
        context=context,
        at=agent.at,
        environment_id=environment_id,
        shared=True,
        reverts_id=reverts_id,
    )
    return after


async def _alters_nothing_elsewhere(
    conn: AsyncConnection, agent: LockedAgent, changes: dict[str, Any], bound_to: str
) -> None:
    """A bound key's change of the agent: 403 `environment_forbidden` when another
    environment serves a config it alters (a base field that what it serves does not
    override) or the agent's slug (every resolution names it)."""
    fields = {name for name in changes if name in CONFIG_FIELDS}
    # A keyed field's entries or the params schema: every environment's served config may use them.
    keyed = any(name in changes for name in (*KEYED_FIELDS, "params_schema"))
    if "slug" not in changes and not fields and not keyed:
        return  # name, description, metadata: nothing any environment serves
    altered = []
    for served in await serving.elsewhere(conn, agent.id, bound_to):
        for variant_id in served.variants:
            variant = (
                await variant_repository.get_by_id(conn, variant_id, environment_id=bound_to) if variant_id else None
            )
            overridden = set(overrides_of(variant)) if variant is not None else set()
            if "slug" in changes or keyed or fields - overridden:
                altered.append(served)
                break
    serving.forbid(altered, "this change of the agent")


async def archive_agent(
    db: Database, ref: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID, context: WriteContext = NO_CONTEXT
) -> None:
    """`DELETE /v1/agents/{agent}`: archive it. Every route then answers 404 for it but its
    history, usage and results and `unarchive`; its slug stays taken; nothing is erased."""

    async def unit(conn: AsyncConnection) -> None:
        agent = await lock_agent(conn, ref)
        env = await environments.hold(conn, environment)
        context.check_version(agent.version, what="agent")
        running = await experiments.running(conn, agent.id, environment_id=None)
        if running is not None:
            raise ExperimentRunning(f"Experiment '{running['slug']}' of agent '{ref}' is running; stop it first")
        row = await require(conn, agent.id, environment_id=env["id"])
        await _set_archived(conn, agent, row, archived_at=agent.at, context=context, environment_id=env["id"])

    await db.transaction(unit)


async def unarchive_agent(
    db: Database, ref: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID, context: WriteContext = NO_CONTEXT
) -> dict[str, Any]:
    """`POST /v1/agents/{agent}/unarchive`: the agent as it was (a no-op for one not archived)."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, ref, archived=True)
        env = await environments.hold(conn, environment)
        context.check_version(agent.version, what="agent")
        row = await require(conn, agent.id, environment_id=env["id"], archived=True)
        if agent.archived_at is None:
            return agent_read(row)
        return await _set_archived(conn, agent, row, archived_at=None, context=context, environment_id=env["id"])

    return await db.transaction(unit)


async def _set_archived(
    conn: AsyncConnection,
    agent: LockedAgent,
    row: RowMapping,
    *,
    archived_at: datetime | None,
    context: WriteContext,
    environment_id: str,
) -> dict[str, Any]:
    """Archive (`archived_at` the locked instant) or unarchive (None) the locked agent whose
    row is `row`: the change, its revision (`archive` or `unarchive`), the announcement."""
    await repository.update_fields(conn, agent.id, {"archived_at": archived_at}, at=agent.at)
    after = agent_read(await require(conn, agent.id, environment_id=environment_id, archived=True))
    await record(
        conn,
        agent_id=agent.id,
        target="agent",
        target_id=agent.id,
        action="archive" if archived_at is not None else "unarchive",
        before=agent_read(row),
        after=after,
        context=context,
        at=agent.at,
        environment_id=environment_id,
        shared=True,
    )
    await announce.agent_changed(conn, agent.id)
    return after


async def purge_agent(db: Database, ref: str, *, context: WriteContext = NO_CONTEXT) -> None:
    """`DELETE /v1/agents/{agent}?purge=true`: erase an archived agent with everything it had
    (409 `agent_not_archived` for one that is not: archive first, so a purge is never the
    first and only step)."""

    async def unit(conn: AsyncConnection) -> None:
        agent = await lock_agent(conn, ref, archived=True)
        context.check_version(agent.version, what="agent")
        if agent.archived_at is None:
            raise AgentNotArchived(f"Agent '{ref}' is not archived; archive it (DELETE without purge) first")
        await repository.purge(conn, agent.id)  # its pending webhook payloads go with it
        await outbox.enqueue_event(conn, "agent.purged", {"agent": {"id": agent.id, "slug": agent.slug}}, agent_id=None)
        await announce.agent_changed(conn, agent.id)

    await db.transaction(unit)
