"""Queries on API keys. Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, RowMapping, Select, Text, bindparam, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import ApiKey, Environment, table_of
from services.shared.identifiers import is_id

keys = table_of(ApiKey)
environments = table_of(Environment)


def _with_environment() -> Select[Any]:
    """Keys with the slug of the environment each is bound to (`environment_slug`, null for
    an unbound key): what the key object and the key ring show."""
    return select(keys, environments.c.slug.label("environment_slug")).select_from(
        keys.outerjoin(environments, keys.c.environment_id == environments.c.id)
    )


async def insert_one(
    conn: AsyncConnection,
    *,
    id: str,
    name: str,
    scope: str,
    secret_hash: bytes,
    expires_at: datetime | None,
    environment_id: str | None = None,
) -> RowMapping | None:
    """The new key (without `environment_slug`), or None when the name is taken (by a live
    or a revoked key)."""
    statement = (
        pg_insert(keys)
        .values(
            id=id,
            name=name,
            scope=scope,
            secret_hash=secret_hash,
            expires_at=expires_at,
            environment_id=environment_id,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(keys)
    )
    return (await conn.execute(statement)).mappings().first()


async def get(conn: AsyncConnection, ref: str) -> RowMapping | None:
    """A key by id or name, with its `environment_slug`."""
    column = keys.c.id if is_id("api_key", ref) else keys.c.name
    return (await conn.execute(_with_environment().where(column == ref))).mappings().first()


async def by_digest(conn: AsyncConnection, digest: bytes) -> RowMapping | None:
    """The key with this secret digest, with its `environment_slug` (the key ring's read)."""
    return (await conn.execute(_with_environment().where(keys.c.secret_hash == digest))).mappings().first()


async def every(conn: AsyncConnection) -> list[RowMapping]:
    """All keys with their `environment_slug`, revoked ones too (so a revoked key is refused
    as revoked, not unknown)."""
    return list((await conn.execute(_with_environment())).mappings())


async def list_page(
    conn: AsyncConnection, *, after: str | None, limit: int, environment_id: str | None = None
) -> list[RowMapping]:
    """Up to `limit` keys newest first, below `after`, with their `environment_slug`; with
    `environment_id`, only the keys bound to that environment (what a bound key may see)."""
    query = _with_environment().order_by(keys.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(keys.c.id < after)
    if environment_id is not None:
        query = query.where(keys.c.environment_id == environment_id)
    return list((await conn.execute(query)).mappings())


async def revoke(conn: AsyncConnection, key_id: str) -> RowMapping:
    """Revoke the key now, or keep the time it was first revoked (the row returned has no
    `environment_slug`)."""
    statement = (
        update(keys)
        .where(keys.c.id == key_id)
        .values(revoked_at=func.coalesce(keys.c.revoked_at, func.now()))
        .returning(keys)
    )
    return (await conn.execute(statement)).mappings().one()


async def lock_live_unbound_admins(conn: AsyncConnection) -> list[str]:
    """The ids of the live (neither revoked nor expired) admin keys bound to no environment
    (those that may manage everything), locked until the transaction ends, in id order (so
    two lockers never deadlock). A revocation waiting on the lock then sees the other's
    outcome: a row revoked meanwhile is left out."""
    statement = (
        select(keys.c.id)
        .where(keys.c.scope == "admin")
        .where(keys.c.environment_id.is_(None))
        .where(keys.c.revoked_at.is_(None))
        .where(or_(keys.c.expires_at.is_(None), keys.c.expires_at > func.now()))
        .order_by(keys.c.id)
        .with_for_update()
    )
    return list((await conn.scalars(statement)).all())


async def any_exists(conn: AsyncConnection) -> bool:
    return (await conn.scalar(select(literal_column("1")).select_from(keys).limit(1))) is not None


async def record_use(conn: AsyncConnection, used: dict[str, datetime]) -> None:
    """Move each key's `last_used_at` forward to when it was last seen (never back)."""
    if not used:
        return
    ids, times = zip(*sorted(used.items()), strict=True)
    rows = select(
        func.unnest(bindparam("ids", list(ids), type_=ARRAY(Text))).label("id"),
        func.unnest(bindparam("times", list(times), type_=ARRAY(DateTime(timezone=True)))).label("used_at"),
    ).subquery()
    await conn.execute(
        update(keys)
        .where(keys.c.id == rows.c.id)
        .where((keys.c.last_used_at.is_(None)) | (keys.c.last_used_at < rows.c.used_at))
        .values(last_used_at=rows.c.used_at)
    )
