"""Environment use cases: create, read, list, rename (patch), delete.

Environments belong to no agent, so their changes write no revision (the contract's
revisions are an agent's history); the router logs each change with the key that made it.
A deletion is announced for every agent: answers cached for the environment must go.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import slugs
from services.api.db import Database
from services.api.environments import repository
from services.api.environments.schemas import EnvironmentCreate, EnvironmentUpdate, environment_read
from services.api.exceptions import (
    EnvironmentInUse,
    EnvironmentLimitReached,
    EnvironmentProtected,
    FieldError,
    NotFound,
    SlugTaken,
)
from services.api.schemas import set_fields
from services.api.writes import announce
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id

# Contract 1.1: at most 100 environments, `production` included.
MAX_ENVIRONMENTS = 100


def _slug_taken(slug: str) -> SlugTaken:
    return SlugTaken(
        f"Slug '{slug}' is already taken by another environment", errors=[FieldError("slug", "already taken")]
    )


async def create_environment(db: Database, data: EnvironmentCreate) -> dict[str, Any]:
    """The new environment; its slug is `data.slug` (409 `slug_taken` when taken) or derived
    from its name (`-2`, `-3`, ... when taken). 409 `environment_limit_reached` at 100."""
    environment_id = new_id("environment")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        count = await repository.count_for_create(conn)
        if count >= MAX_ENVIRONMENTS:
            raise EnvironmentLimitReached(
                f"There are {count} environments already, the most an installation may have; delete one first"
            )
        at: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
        values = {
            "id": environment_id,
            "created_at": at,
            "updated_at": at,
            "name": data.name,
            "description": data.description or "",
        }
        if data.slug is not None:
            if not await repository.insert_unless_slug_taken(conn, {**values, "slug": data.slug}):
                raise _slug_taken(data.slug)
        else:  # EnvironmentCreate made sure the name gives a slug
            await slugs.insert_with_derived_slug(
                slugs.slugify(data.name),
                taken=lambda candidates: repository.slugs_taken(conn, candidates),
                insert=lambda slug: repository.insert_unless_slug_taken(conn, {**values, "slug": slug}),
            )
        return environment_read(await _require(conn, environment_id))

    return await db.transaction(unit)


async def get_environment(db: Database, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        return environment_read(await _require(conn, ref))


async def list_environments(db: Database, *, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Environments newest first (`production` last: its id is the smallest)."""
    async with db.read() as conn:
        return [environment_read(row) for row in await repository.list_page(conn, after=after, limit=limit)]


async def update_environment(
    db: Database, ref: str, patch: EnvironmentUpdate, *, context: WriteContext = NO_CONTEXT
) -> dict[str, Any]:
    """A merge patch of `name` and `description` (the slug never changes: EnvironmentUpdate
    refuses one). A patch that changes nothing bumps nothing."""
    sent = set_fields(patch)

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await _lock(conn, ref)
        context.check_version(row["version"], what="environment")
        changes: dict[str, Any] = {}
        if "name" in sent and sent["name"] != row["name"]:
            changes["name"] = sent["name"]
        if "description" in sent and (sent["description"] or "") != row["description"]:
            changes["description"] = sent["description"] or ""
        if not changes:
            return environment_read(row)
        at: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
        await repository.update_fields(conn, row["id"], changes, at=at)
        return environment_read(await _require(conn, row["id"]))

    return await db.transaction(unit)


async def delete_environment(db: Database, ref: str, *, context: WriteContext = NO_CONTEXT) -> dict[str, Any]:
    """Delete the environment (erased: environments have no archive). `production` is 409
    `environment_protected`; one that something uses (`repository.in_use`) is 409
    `environment_in_use`. Returns the environment as it was."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await _lock(conn, ref)
        context.check_version(row["version"], what="environment")
        if row["id"] == PRODUCTION_ENVIRONMENT_ID:
            raise EnvironmentProtected(
                f"Environment '{row['slug']}' cannot be deleted: every installation has it, and requests "
                "that name no environment are served from it"
            )
        reason = await repository.in_use(conn, row["id"])
        if reason is not None:
            raise EnvironmentInUse(f"Environment '{row['slug']}' is in use: {reason}")
        # Keys bound to it that no longer work would hold it (their foreign key has no cascade).
        await repository.unbind_dead_keys(conn, row["id"])
        await repository.delete_one(conn, row["id"])
        await announce.every_agent_changed(conn)
        return environment_read(row)

    return await db.transaction(unit)


async def _require(conn: AsyncConnection, ref: str) -> RowMapping:
    row = await repository.get(conn, ref)
    if row is None:
        raise NotFound("Environment", ref)
    return row


async def _lock(conn: AsyncConnection, ref: str) -> RowMapping:
    row = await repository.lock(conn, ref)
    if row is None:
        raise NotFound("Environment", ref)
    return row
