"""Variant use cases: create (or clone), read, list, patch, delete, activate, deactivate.

Every write locks the agent's row first (`lock_agent`), so writes to one agent are
serialized: the consistency check always sees the base config it is checked against, and
activation never races another activation of the same agent. Each use case shows its
whole story: lock, check, change, record the revision, announce the change. The steps
below them (`apply_changes`, `remove`, `bring_back`, `set_active`) also serve undo.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import patching, slugs
from services.api.consistency import check_model_limits, check_resolved
from services.api.db import Database, constraint_name
from services.api.diffs import config_after, config_changes, resolved_values
from services.api.environments import repository as environments
from services.api.exceptions import (
    DomainError,
    ExperimentRunning,
    FieldError,
    NotFound,
    RevisionNotRestorable,
    SlugTaken,
    ValidationFailed,
    VariantActive,
    VariantInExperiment,
    VariantInRule,
    conflicts_reported_as,
)
from services.api.revisions import repository as revisions
from services.api.schemas import set_fields
from services.api.variants import repository
from services.api.variants.schemas import (
    OVERRIDE_COLUMNS,
    DiffRead,
    VariantCreate,
    VariantUpdate,
    overrides_of,
    variant_read,
)
from services.api.writes import announce, serving
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.api.writes.locks import LockedAgent, find_agent, lock_agent
from services.api.writes.revisions import record
from services.shared.agent_config import BASE, CONFIG_FIELDS, KEYED_FIELDS
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, is_id, new_id


async def require(conn: AsyncConnection, agent_id: str, ref: str, *, environment_id: str) -> RowMapping:
    """The variant as seen from the environment; 404 when the agent has none by that id or slug."""
    row = await repository.get(conn, agent_id, ref, environment_id=environment_id)
    if row is None:
        raise NotFound("Variant", ref)
    return row


def slug_taken(slug: str) -> SlugTaken:
    return SlugTaken(
        f"Slug '{slug}' is already taken by another variant of this agent", errors=[FieldError("slug", "already taken")]
    )


def _columns(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every override column: the twelve fields' (NULL: inherit) and the keyed ones' (empty:
    none), from a variant's overrides as its object shows them."""
    columns = {name: overrides.get(name) for name in CONFIG_FIELDS}
    columns.update({name: overrides.get(name) or {} for name in KEYED_FIELDS})
    columns["params_unset"] = overrides.get("params_unset") or []
    return columns


async def create_variant(
    db: Database,
    agent_ref: str,
    data: VariantCreate,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    patch = set_fields(data.overrides) if data.overrides is not None else {}
    variant_id = new_id("variant")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        cloned_from: tuple[str | None, str | None] = (None, None)
        start: dict[str, Any] = {}
        if data.clone_from == BASE:
            start, cloned_from = agent.config, ("base", None)
        elif data.clone_from is not None:
            source = await repository.get(conn, agent.id, data.clone_from, environment_id=env["id"])
            if source is None:
                raise NotFound("Variant", data.clone_from, param="clone_from")
            start, cloned_from = overrides_of(source), ("variant", source["id"])
        overrides = patching.merge_overrides(start, patch)
        check_resolved(
            agent.config, overrides=overrides, subject="config of the variant", params_schema=agent.params_schema
        )
        await check_model_limits(conn, [(agent.config, overrides, "config of the variant")])
        at = agent.at
        values = {
            "id": variant_id,
            "created_at": at,
            "updated_at": at,
            "agent_id": agent.id,
            "variant_name": data.variant_name,
            "description": data.description or "",
            "metadata": data.metadata or {},
            "cloned_from_source": cloned_from[0],
            "cloned_from_variant_id": cloned_from[1],
            **_columns(overrides),
        }
        if data.slug is not None:
            if not await repository.insert_unless_slug_taken(conn, {**values, "slug": data.slug}):
                raise slug_taken(data.slug)
        else:  # VariantCreate made sure the name gives a slug
            await slugs.insert_with_derived_slug(
                slugs.slugify(data.variant_name),
                taken=lambda candidates: repository.slugs_taken(conn, agent.id, candidates),
                insert=lambda slug: repository.insert_unless_slug_taken(conn, {**values, "slug": slug}),
                reserved=slugs.RESERVED_VARIANT_SLUGS,
            )
        variant = variant_read(await require(conn, agent.id, variant_id, environment_id=env["id"]))
        await record(
            conn,
            agent_id=agent.id,
            target="variant",
            target_id=variant_id,
            action="create",
            before=None,
            after=variant,
            context=context,
            at=at,
            environment_id=env["id"],
            shared=True,
        )
        await announce.agent_changed(conn, agent.id)
        return variant

    return await db.transaction(unit)


async def get_variant(
    db: Database, agent_ref: str, ref: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID
) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        env = await environments.named(conn, environment)
        return variant_read(await require(conn, agent.id, ref, environment_id=env["id"]))


async def list_variants(
    db: Database, agent_ref: str, *, after: str | None, limit: int, is_active: bool | None, environment: str
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        env = await environments.named(conn, environment)
        rows = await repository.list_page(
            conn, agent.id, after=after, limit=limit, is_active=is_active, environment_id=env["id"]
        )
        return [variant_read(row) for row in rows]


async def update_variant(
    db: Database,
    agent_ref: str,
    ref: str,
    patch: VariantUpdate,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    sent = set_fields(patch)
    overrides_patch = set_fields(patch.overrides) if patch.overrides is not None else {}

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="variant")
        changes: dict[str, Any] = {}
        for name in ("variant_name", "slug"):
            if name in sent and sent[name] != row[name]:
                changes[name] = sent[name]
        if "description" in sent and (sent["description"] or "") != row["description"]:
            changes["description"] = sent["description"] or ""
        if "metadata" in sent:
            metadata = patching.merge_metadata(row["metadata"], sent["metadata"])
            if metadata != row["metadata"]:
                changes["metadata"] = metadata
        current = overrides_of(row)
        # `"overrides": null` removes them all, as a merge patch does.
        overrides = patching.merge_overrides(
            current, None if patch.overrides is None and "overrides" in sent else overrides_patch
        )
        if overrides != current:
            changes.update(_columns(overrides))
        if not changes:
            return variant_read(row)
        after = await apply_changes(
            conn, agent, row, changes, action="update", context=context, environment_id=env["id"]
        )
        await announce.agent_changed(conn, agent.id)
        return after

    return await db.transaction(unit)


def changes_to(row: RowMapping, state: dict[str, Any], *, with_slug: bool) -> dict[str, Any]:
    """The column changes that bring a variant back to `state` (a variant object): its
    name, description, metadata and overrides, and its slug when `with_slug`."""
    wanted = {
        "variant_name": state["variant_name"],
        "description": state["description"],
        "metadata": state["metadata"],
        **_columns(state["overrides"]),
    }
    if with_slug:
        wanted["slug"] = state["slug"]
    return {name: value for name, value in wanted.items() if row[name] != value}


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
    """Write `changes` to a variant of a locked agent after checking the rule, and record
    the revision; `row` and the objects recorded are as seen from `environment_id`, the
    request's. `on_conflict` replaces the rule's and the slug's errors (for undo)."""
    serves = any(name in changes for name in OVERRIDE_COLUMNS)
    if serves:
        rollout = await repository.live_rollout(conn, agent.id, variant_id=row["id"])
        if rollout is not None:
            with conflicts_reported_as(on_conflict):
                raise VariantInExperiment(
                    f"Variant '{row['slug']}' is being rolled out ('{rollout['slug']}', {rollout['status']}); its "
                    "config cannot change until the rollout ends (stop it to change it)"
                )
    if context.bound_to is not None and ("slug" in changes or serves):
        # A bound key's change of what a variant serves (its overrides, or its slug, which
        # resolutions name): 403 when another environment serves the variant now.
        elsewhere = await serving.elsewhere(conn, agent.id, context.bound_to)
        serving.forbid(
            [one for one in elsewhere if row["id"] in one.variants], f"this change of variant '{row['slug']}'"
        )
    with conflicts_reported_as(on_conflict):
        if serves:
            overrides = overrides_of({**row, **changes})
            check_resolved(
                agent.config, overrides=overrides, subject="config of the variant", params_schema=agent.params_schema
            )
            await check_model_limits(conn, [(agent.config, overrides, "config of the variant")])
        try:
            await repository.update_fields(conn, row["id"], changes, at=agent.at)
        except IntegrityError as error:
            if constraint_name(error) == "uq_variants_agent_id_slug":
                raise slug_taken(changes["slug"]) from None
            raise
    after = variant_read(await require(conn, agent.id, row["id"], environment_id=environment_id))
    await record(
        conn,
        agent_id=agent.id,
        target="variant",
        target_id=row["id"],
        action=action,
        before=variant_read(row),
        after=after,
        context=context,
        at=agent.at,
        environment_id=environment_id,
        shared=True,
        reverts_id=reverts_id,
    )
    return after


def _active_error(row: RowMapping, ref: str) -> VariantActive:
    where = ", ".join(row["active_in"])
    return VariantActive(f"Variant '{ref}' is active in {where}; activate another variant or deactivate it there first")


async def delete_variant(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> None:
    async def unit(conn: AsyncConnection) -> None:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="variant")
        if row["active_in"]:
            raise _active_error(row, ref)
        await remove(conn, agent, row, action="delete", context=context, environment_id=env["id"])
        await announce.agent_changed(conn, agent.id)

    await db.transaction(unit)


async def remove(
    conn: AsyncConnection,
    agent: LockedAgent,
    row: RowMapping,
    *,
    action: str,
    context: WriteContext,
    environment_id: str,
    reverts_id: str | None = None,
    on_conflict: type[DomainError] | None = None,
) -> None:
    """Delete a variant of a locked agent, active in no environment, and record the revision."""
    with conflicts_reported_as(on_conflict):
        experiment = await repository.experiment_naming(conn, agent.id, row["id"])
        if experiment is not None:
            raise VariantInExperiment(
                f"Variant '{row['slug']}' is an arm of experiment '{experiment['slug']}' ({experiment['status']});"
                " delete the draft or wait until it is stopped"
            )
        ruled_in = await repository.rule_naming(conn, agent.id, row["id"])
        if ruled_in is not None:
            raise VariantInRule(
                f"Variant '{row['slug']}' is served by a targeting rule in environment '{ruled_in}';"
                " change that rule set first"
            )
    await repository.delete_one(conn, row["id"])
    await record(
        conn,
        agent_id=agent.id,
        target="variant",
        target_id=row["id"],
        action=action,
        before=variant_read(row),
        after=None,
        context=context,
        at=agent.at,
        environment_id=environment_id,
        shared=True,
        reverts_id=reverts_id,
    )


async def bring_back(
    conn: AsyncConnection,
    agent: LockedAgent,
    state: dict[str, Any],
    *,
    action: str,
    context: WriteContext,
    environment_id: str,
    reverts_id: str | None = None,
    on_conflict: type[DomainError] = SlugTaken,
) -> dict[str, Any]:
    """Re-create a deleted variant from its last object, with the same id and slug,
    active nowhere, and record the revision."""
    overrides = state["overrides"]
    with conflicts_reported_as(on_conflict):
        check_resolved(
            agent.config, overrides=overrides, subject="config of the variant", params_schema=agent.params_schema
        )
        await check_model_limits(conn, [(agent.config, overrides, "config of the variant")])
    cloned = state["cloned_from"] or {}
    values = {
        "id": state["id"],
        "agent_id": agent.id,
        "slug": state["slug"],
        "variant_name": state["variant_name"],
        "description": state["description"],
        "metadata": state["metadata"],
        "cloned_from_source": cloned.get("source"),
        "cloned_from_variant_id": cloned.get("variant_id"),
        "version": state["version"] + 1,
        "created_at": datetime.fromisoformat(state["created_at"]),
        "updated_at": agent.at,
        **_columns(overrides),
    }
    if not await repository.insert_unless_slug_taken(conn, values):
        raise on_conflict(
            f"Slug '{state['slug']}' has been taken by another variant since",
            errors=[FieldError("slug", "already taken")],
        )
    after = variant_read(await require(conn, agent.id, state["id"], environment_id=environment_id))
    await record(
        conn,
        agent_id=agent.id,
        target="variant",
        target_id=state["id"],
        action=action,
        before=None,
        after=after,
        context=context,
        at=agent.at,
        environment_id=environment_id,
        shared=True,
        reverts_id=reverts_id,
    )
    return after


async def set_active(
    conn: AsyncConnection,
    agent: LockedAgent,
    environment_id: str,
    row: RowMapping | None,
    *,
    action: str,
    context: WriteContext,
    target: RowMapping,
    reverts_id: str | None = None,
    on_conflict: type[DomainError] | None = None,
    by_rollout: bool = False,
) -> dict[str, Any]:
    """Make `row` the locked agent's active variant in the environment (None: no variant
    active there), and record the revision, whose target is the variant `target` (the one
    activated, or the one deactivated). While a rollout is live in the environment, only
    its completion (`by_rollout`) may change what is active there (409 `experiment_running`)."""
    if not by_rollout:
        rollout = await repository.live_rollout(conn, agent.id, environment_id=environment_id)
        if rollout is not None:
            with conflicts_reported_as(on_conflict):
                raise ExperimentRunning(
                    f"Rollout '{rollout['slug']}' is {rollout['status']} in this environment; it decides what is "
                    "active here until it ends (stop it first)"
                )
    if row is not None:
        with conflicts_reported_as(on_conflict):
            check_resolved(
                agent.config,
                overrides=overrides_of(row),
                subject="config of the variant",
                params_schema=agent.params_schema,
            )
            await check_model_limits(conn, [(agent.config, overrides_of(row), "config of the variant")])
    await repository.set_active(conn, agent.id, environment_id, row["id"] if row is not None else None, at=agent.at)
    after = variant_read(await require(conn, agent.id, target["id"], environment_id=environment_id))
    await record(
        conn,
        agent_id=agent.id,
        target="variant",
        target_id=target["id"],
        action=action,
        before=variant_read(target),
        after=after,
        context=context,
        at=agent.at,
        environment_id=environment_id,
        shared=False,
        reverts_id=reverts_id,
    )
    return after


async def activate_variant(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    """Make this the agent's one active variant in the environment, in one transaction.

    The agent's row lock serializes activations; the activations table's primary key
    (agent, environment) is the database's own guarantee that at most one variant is
    active per environment, should anything else write to it.
    """

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="variant")
        if row["activated_at"] is not None:
            return variant_read(row)
        after = await set_active(conn, agent, env["id"], row, action="activate", context=context, target=row)
        await announce.agent_changed(conn, agent.id, env)
        return after

    return await db.transaction(unit)


async def deactivate_variant(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="variant")
        if row["activated_at"] is None:
            return variant_read(row)
        after = await set_active(conn, agent, env["id"], None, action="deactivate", context=context, target=row)
        await announce.agent_changed(conn, agent.id, env)
        return after

    return await db.transaction(unit)


async def restore_variant(
    db: Database,
    agent_ref: str,
    ref: str,
    revision_id: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    """Set the variant's name, description, metadata and overrides as they were right
    after `revision_id` (a revision of this variant)."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="variant")
        revision = await revisions.get(conn, agent.id, revision_id) if is_id("revision", revision_id) else None
        if revision is None:
            raise NotFound("Revision", revision_id, param="revision_id")
        if revision["target_id"] != row["id"]:
            message = f"revision {revision_id} is of {revision['target']} {revision['target_id']}, not of this variant"
            raise ValidationFailed(
                f"Invalid field: revision_id ({message})", errors=[FieldError("revision_id", message)]
            )
        if revision["after"] is None:
            raise RevisionNotRestorable(
                f"The variant did not exist right after revision {revision_id} (it deleted the variant)"
            )
        changes = changes_to(row, revision["after"], with_slug=False)
        if not changes:
            return variant_read(row)
        after = await apply_changes(
            conn, agent, row, changes, action="restore", context=context, environment_id=env["id"]
        )
        await announce.agent_changed(conn, agent.id)
        return after

    return await db.transaction(unit)


async def diff_variant(
    db: Database, agent_ref: str, ref: str, *, against: str, environment: str = PRODUCTION_ENVIRONMENT_ID
) -> dict[str, Any]:
    """The resolved values of this variant (`to`) against `base`, another variant or the
    state right after a revision (`from`), field by field, only where they differ."""
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        env = await environments.named(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        to = resolved_values(overrides_of(row), agent.config)
        if against == BASE:
            origin = resolved_values({}, agent.config)
        elif is_id("revision", against):
            revision = await revisions.get(conn, agent.id, against)
            if revision is None:
                raise NotFound("Revision", against, param="against")
            origin = config_after(revision, await revisions.state_after(conn, revision))
        else:
            other = await repository.get(conn, agent.id, against, environment_id=env["id"])
            if other is None:
                raise NotFound("Variant", against, param="against")
            origin = resolved_values(overrides_of(other), agent.config)
    return DiffRead(object="diff", changes=config_changes(origin, to)).model_dump(mode="json", by_alias=True)
