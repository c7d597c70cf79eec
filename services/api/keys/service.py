"""API keys: create (the only time a secret exists outside its holder), list, revoke.

Every create and revoke announces itself (a NOTIFY on KEYS_CHANNEL) in its transaction, so every process's
key ring stops trusting what it holds and reloads; the process that made the change
invalidates its ring before it answers (its next request waits for the reload).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database
from services.api.exceptions import KeyNameTaken, LastAdminKey, NotFound
from services.api.keys import repository, tokens
from services.api.keys.schemas import KeyCreate, key_body
from services.api.writes import announce
from services.shared.identifiers import new_id


async def _insert(conn: AsyncConnection, body: KeyCreate) -> dict[str, Any]:
    secret = tokens.new_secret()
    row = await repository.insert_one(
        conn,
        id=new_id("api_key"),
        name=body.name,
        scope=body.scope,
        secret_hash=tokens.digest(secret),
        expires_at=body.expires_at,
    )
    if row is None:
        raise KeyNameTaken(f"An API key named '{body.name}' already exists (revoked keys keep their names)")
    await announce.key_changed(conn, row["id"])
    return key_body(row, secret=secret)


async def create_key(db: Database, body: KeyCreate) -> dict[str, Any]:
    """The new key, with its secret: shown this once, stored only as a digest."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        return await _insert(conn, body)

    return await db.transaction(unit)


async def create_first_admin_key(db: Database, name: str = "admin") -> dict[str, Any] | None:
    """An admin key when there is no key at all, else None. Processes starting together
    create one between them: the table lock makes the check and the insert one step."""

    async def unit(conn: AsyncConnection) -> dict[str, Any] | None:
        if await repository.any_exists(conn):  # the usual start: no lock needed
            return None
        await conn.execute(text("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE"))
        if await repository.any_exists(conn):
            return None
        return await _insert(conn, KeyCreate(name=name, scope="admin"))

    return await db.transaction(unit)


async def list_keys(db: Database, *, after: str | None, limit: int) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [key_body(row) for row in await repository.list_page(conn, after=after, limit=limit)]


async def get_key(db: Database, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await repository.get(conn, ref)
    if row is None:
        raise NotFound("API key", ref)
    return key_body(row)


async def revoke_key(db: Database, ref: str) -> dict[str, Any]:
    """Revoke a key by id or name. Revoking a revoked key changes nothing and succeeds.
    The last live admin key cannot be revoked (LastAdminKey): the live admin keys are
    locked first, so two revocations of the last two admin keys never both succeed."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await repository.get(conn, ref)
        if row is None:
            raise NotFound("API key", ref)
        if row["revoked_at"] is not None:
            return key_body(row)
        if row["scope"] == "admin" and await repository.lock_live_admins(conn) == [row["id"]]:
            raise LastAdminKey(f"The API key '{row['name']}' is the last live admin key: create another one first")
        revoked = await repository.revoke(conn, row["id"])
        await announce.key_changed(conn, revoked["id"])
        return key_body(revoked)

    return await db.transaction(unit)
