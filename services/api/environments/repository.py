"""Queries on environments. Functions take a connection; the caller owns the transaction.

Later slices of issue 18 read environments through this module (an activation, a rule set,
an experiment or a bound key names one), never through the environments service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.exceptions import NotFound
from services.api.models import Activation, ApiKey, Environment, Experiment, RuleSet, table_of
from services.shared.identifiers import ref_key

environments = table_of(Environment)
rule_sets = table_of(RuleSet)
api_keys = table_of(ApiKey)
activations = table_of(Activation)
experiments = table_of(Experiment)


def _by_ref(ref: str) -> Any:
    """The query for an environment named by id or slug, or None when `ref` is neither
    (then nothing can match, and no query is needed)."""
    key = ref_key("environment", ref)
    return None if key is None else select(environments).where(environments.c[key] == ref)


async def get(conn: AsyncConnection, ref: str) -> RowMapping | None:
    """An environment by id or slug."""
    query = _by_ref(ref)
    return None if query is None else (await conn.execute(query)).mappings().first()


async def lock(conn: AsyncConnection, ref: str) -> RowMapping | None:
    """An environment by id or slug, its row locked until the transaction ends: a PATCH or a
    DELETE sees no concurrent change of it, and a DELETE waits for any transaction that
    holds a reference to it being made (a foreign key's KEY SHARE lock)."""
    query = _by_ref(ref)
    return None if query is None else (await conn.execute(query.with_for_update())).mappings().first()


async def hold(conn: AsyncConnection, ref: str) -> RowMapping:
    """The environment a request names (`?environment=`, by id or slug), held until the
    transaction ends with a KEY SHARE lock: a write that comes to refer to it (a rule set)
    cannot race its deletion, whose row lock (`lock`) waits for this one, and whose
    `in_use` then sees the reference. 404 `resource_missing`, `param` `environment`, when
    no environment has this id or slug."""
    query = _by_ref(ref)
    row = None if query is None else (await conn.execute(query.with_for_update(key_share=True))).mappings().first()
    if row is None:
        raise NotFound("Environment", ref, param="environment")
    return row


async def named(conn: AsyncConnection, ref: str) -> RowMapping:
    """The environment a read names (`?environment=`), unlocked; 404 as `hold`."""
    row = await get(conn, ref)
    if row is None:
        raise NotFound("Environment", ref, param="environment")
    return row


async def by_refs(conn: AsyncConnection, refs: set[str]) -> dict[str, RowMapping]:
    """The environments these refs (ids or slugs) name, unlocked, keyed by the ref; a ref
    that names none is left out. One query for a batch of outcomes, each naming its own."""
    keys = {ref: ref_key("environment", ref) for ref in refs}
    ids = [ref for ref, key in keys.items() if key == "id"]
    slugs = [ref for ref, key in keys.items() if key == "slug"]
    if not ids and not slugs:
        return {}
    query = select(environments).where(or_(environments.c.id.in_(ids), environments.c.slug.in_(slugs)))
    found: dict[str, RowMapping] = {}
    for row in (await conn.execute(query)).mappings():
        for ref in (row["id"], row["slug"]):
            if ref in keys:
                found[ref] = row
    return found


async def list_page(conn: AsyncConnection, *, after: str | None, limit: int) -> list[RowMapping]:
    """Up to `limit` environments newest first, starting below `after`."""
    query = select(environments).order_by(environments.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(environments.c.id < after)
    return list((await conn.execute(query)).mappings())


async def count_for_create(conn: AsyncConnection) -> int:
    """How many environments there are, with creates serialized until the transaction ends:
    the table lock conflicts with itself and with every insert, update and delete (not with
    reads or row locks), so two creates at 99 cannot both see room for one more."""
    await conn.execute(text("LOCK TABLE environments IN SHARE ROW EXCLUSIVE MODE"))
    return int(await conn.scalar(select(func.count()).select_from(environments)) or 0)


async def slugs_taken(conn: AsyncConnection, candidates: list[str]) -> set[str]:
    rows = await conn.scalars(select(environments.c.slug).where(environments.c.slug.in_(candidates)))
    return set(rows)


async def insert_unless_slug_taken(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert the environment; False (and nothing written) when its slug is taken."""
    statement = (
        pg_insert(environments)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["slug"])
        .returning(environments.c.id)
    )
    return (await conn.scalar(statement)) is not None


async def update_fields(conn: AsyncConnection, environment_id: str, values: dict[str, Any], *, at: datetime) -> None:
    """Write changed fields (name, description), bumping `version`; `updated_at` is `at`."""
    await conn.execute(
        update(environments)
        .where(environments.c.id == environment_id)
        .values(**values, version=environments.c.version + 1, updated_at=at)
    )


async def in_use(conn: AsyncConnection, environment_id: str) -> str | None:
    """Why the environment cannot be deleted, as a sentence, or None when nothing uses it.

    The contract (1.1, "Environments") refuses the deletion of an environment in which
    anything is active, ruled or running, or to which a live API key is bound. Each slice of
    issue 18 that makes something refer to an environment adds its query here, with a
    foreign key to `environments` (and, for a write that refers to an existing environment,
    `hold`), so that a reference being made concurrently holds a lock the deleting
    transaction's row lock (`lock`) must wait for. So far: rule sets (an empty set does not
    count; its row goes with the environment) and bound API keys that still work (neither
    revoked nor expired; a key made while this runs holds the environment's row, see
    `keys.service`, and the deleting transaction unbinds the others first:
    `unbind_dead_keys`), activations (an agent's active variant there, archived agents'
    too: unarchiving brings them back) and running experiments (contract 1.1: "active, ruled
    or running"). Drafts and stopped experiments go with the environment (the foreign key
    cascades), as the rest of an environment's own data does; their outcomes stay.
    """
    active = await conn.scalar(
        select(func.count()).select_from(activations).where(activations.c.environment_id == environment_id)
    )
    if active:
        return f"{active} agent(s) have an active variant in it; deactivate them first"
    running = await conn.scalar(
        select(func.count())
        .select_from(experiments)
        .where(experiments.c.environment_id == environment_id, experiments.c.status.in_(("running", "paused")))
    )
    if running:
        return f"{running} experiment(s) are running in it; stop them first"
    ruled = await conn.scalar(
        select(func.count())
        .select_from(rule_sets)
        .where(rule_sets.c.environment_id == environment_id, func.jsonb_array_length(rule_sets.c.rules) > 0)
    )
    if ruled:
        return f"{ruled} agent(s) have targeting rules in it; empty their rule sets first"
    active = await conn.scalar(
        select(func.count()).select_from(activations).where(activations.c.environment_id == environment_id)
    )
    if active:
        return f"{active} agent(s) have an active variant in it; deactivate them first"
    bound = await conn.scalar(
        select(func.count())
        .select_from(api_keys)
        .where(
            api_keys.c.environment_id == environment_id,
            api_keys.c.revoked_at.is_(None),
            or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > func.now()),
        )
    )
    if bound:
        return f"{bound} live API key(s) are bound to it; revoke them first"
    return None


async def unbind_dead_keys(conn: AsyncConnection, environment_id: str) -> None:
    """Unbind the API keys bound to this environment that no longer work (revoked or
    expired), so that it can be deleted (their foreign key has no cascade). Call it after
    `in_use` in the same transaction: a key live at `now()` made it in use instead."""
    await conn.execute(
        update(api_keys)
        .where(api_keys.c.environment_id == environment_id)
        .where(or_(api_keys.c.revoked_at.is_not(None), api_keys.c.expires_at <= func.now()))
        .values(environment_id=None)
    )


async def delete_one(conn: AsyncConnection, environment_id: str) -> None:
    await conn.execute(delete(environments).where(environments.c.id == environment_id))
