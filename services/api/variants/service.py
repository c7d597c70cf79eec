"""Variant use cases: create (or clone), read, list, patch, delete, activate, deactivate.

Every write locks the agent's row first, so writes to one agent are serialized: the
consistency check always sees the base config it is checked against, and activation
never races another activation of the same agent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import patching, slugs
from services.api.agents import service as agents
from services.api.consistency import check_resolved
from services.api.db import Database, constraint_name
from services.api.exceptions import FieldError, NotFound, SlugTaken, VariantActive
from services.api.schemas import set_fields, timestamp
from services.api.variants import repository
from services.api.variants.schemas import VariantCreate, VariantUpdate
from services.shared.agent_config import BASE, CONFIG_FIELDS
from services.shared.identifiers import new_id


def to_read(row: RowMapping) -> dict[str, Any]:
    """The variant object of the contract."""
    source = row["cloned_from_source"]
    return {
        "object": "variant",
        "id": row["id"],
        "agent_id": row["agent_id"],
        "variant_name": row["variant_name"],
        "slug": row["slug"],
        "description": row["description"],
        "metadata": row["metadata"],
        "overrides": repository.overrides_of(row),
        "is_active": row["is_active"],
        "cloned_from": None if source is None
        else {"source": source, "variant_id": row["cloned_from_variant_id"]},
        "version": row["version"],
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
        "activated_at": timestamp(row["activated_at"]),
    }


def base_config(agent: RowMapping) -> dict[str, Any]:
    return {name: agent[name] for name in CONFIG_FIELDS}


async def require(conn: AsyncConnection, agent_id: str, ref: str) -> RowMapping:
    row = await repository.get(conn, agent_id, ref)
    if row is None:
        raise NotFound("Variant", ref)
    return row


def slug_taken(slug: str) -> SlugTaken:
    return SlugTaken(f"Slug '{slug}' is already taken by another variant of this agent",
                     errors=[FieldError("slug", "already taken")])


def _columns(overrides: dict[str, Any]) -> dict[str, Any]:
    """All twelve columns: the overrides, NULL (inherit) for the rest."""
    return {name: overrides.get(name) for name in CONFIG_FIELDS}


async def create_variant(db: Database, agent_ref: str, data: VariantCreate) -> dict[str, Any]:
    patch = set_fields(data.overrides) if data.overrides is not None else {}
    variant_id = new_id("variant")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await agents.require(conn, agent_ref, lock=True)
        cloned_from: tuple[str | None, str | None] = (None, None)
        start: dict[str, Any] = {}
        if data.clone_from == BASE:
            start, cloned_from = base_config(agent), ("base", None)
        elif data.clone_from is not None:
            source = await repository.get(conn, agent["id"], data.clone_from)
            if source is None:
                raise NotFound("Variant", data.clone_from, param="clone_from")
            start, cloned_from = repository.overrides_of(source), ("variant", source["id"])
        overrides = patching.merge_patch(start, patch)
        check_resolved(base_config(agent), overrides=overrides, subject="config of the variant")
        values = {
            "id": variant_id,
            "agent_id": agent["id"],
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
                slugs._slugify(data.variant_name),
                taken=lambda candidates: repository.slugs_taken(conn, agent["id"], candidates),
                insert=lambda slug: repository.insert_unless_slug_taken(conn, {**values, "slug": slug}),
                reserved=slugs.RESERVED_VARIANT_SLUGS,
            )
        return to_read(await require(conn, agent["id"], variant_id))

    return await db.transaction(unit)


async def get_variant(db: Database, agent_ref: str, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await agents.require(conn, agent_ref)
        return to_read(await require(conn, agent["id"], ref))


async def list_variants(
    db: Database, agent_ref: str, *, after: str | None, limit: int, is_active: bool | None
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        agent = await agents.require(conn, agent_ref)
        rows = await repository.list_page(conn, agent["id"], after=after, limit=limit, is_active=is_active)
        return [to_read(row) for row in rows]


async def update_variant(db: Database, agent_ref: str, ref: str, patch: VariantUpdate) -> dict[str, Any]:
    sent = set_fields(patch)
    overrides_patch = set_fields(patch.overrides) if patch.overrides is not None else {}

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await agents.require(conn, agent_ref, lock=True)
        row = await require(conn, agent["id"], ref)
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
        current = repository.overrides_of(row)
        # `"overrides": null` removes them all, as a merge patch does.
        overrides = patching.merge_patch(current, None if patch.overrides is None and "overrides" in sent
                                         else overrides_patch)
        if overrides != current:
            changes.update(_columns(overrides))
            check_resolved(base_config(agent), overrides=overrides, subject="config of the variant")
        if not changes:
            return to_read(row)
        try:
            await repository.update_fields(conn, row["id"], changes)
        except IntegrityError as error:
            if constraint_name(error) == "uq_variants_agent_id_slug":
                raise slug_taken(changes["slug"]) from None
            raise
        return to_read(await require(conn, agent["id"], row["id"]))

    return await db.transaction(unit)


async def delete_variant(db: Database, agent_ref: str, ref: str) -> None:
    async def unit(conn: AsyncConnection) -> None:
        agent = await agents.require(conn, agent_ref, lock=True)
        row = await require(conn, agent["id"], ref)
        if row["is_active"]:
            raise VariantActive(
                f"Variant '{ref}' is active; activate another variant or deactivate it first"
            )
        await repository.delete_one(conn, row["id"])

    await db.transaction(unit)


async def activate_variant(db: Database, agent_ref: str, ref: str) -> dict[str, Any]:
    """Make this the agent's one active variant, in one transaction.

    The agent's row lock serializes activations; the partial unique index is the
    database's own guarantee that at most one variant is active, should anything else
    write to the table.
    """

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await agents.require(conn, agent_ref, lock=True)
        row = await require(conn, agent["id"], ref)
        if row["is_active"]:
            return to_read(row)
        check_resolved(base_config(agent), overrides=repository.overrides_of(row), subject="config of the variant")
        await repository.deactivate_all(conn, agent["id"])
        await repository.activate(conn, row["id"])
        return to_read(await require(conn, agent["id"], row["id"]))

    return await db.transaction(unit)


async def deactivate_variant(db: Database, agent_ref: str, ref: str) -> dict[str, Any]:
    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await agents.require(conn, agent_ref, lock=True)
        row = await require(conn, agent["id"], ref)
        if not row["is_active"]:
            return to_read(row)
        await repository.deactivate_all(conn, agent["id"])
        return to_read(await require(conn, agent["id"], row["id"]))

    return await db.transaction(unit)

