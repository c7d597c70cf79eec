"""API keys: create (the only time a secret exists outside its holder), list, revoke.

Every create and revoke announces itself (a NOTIFY on KEYS_CHANNEL) in its transaction, so every process's
key ring stops trusting what it holds and reloads; the process that made the change
invalidates its ring before it answers (its next request waits for the reload).

A key may be bound to an environment (contract 1.1). The use cases take the `caller`, the
key making the request (None from the CLI, or with auth off): a bound caller manages only
the keys bound to its environment, and binds the keys it makes to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database
from services.api.environments import repository as environments
from services.api.exceptions import KeyNameTaken, LastAdminKey, NotFound
from services.api.keys import repository, tokens
from services.api.keys.schemas import KeyCreate, key_body
from services.api.principal import Principal, request_environment
from services.api.writes import announce
from services.shared.identifiers import new_id


async def _insert(conn: AsyncConnection, body: KeyCreate, environment: RowMapping | None) -> dict[str, Any]:
    secret = tokens.new_secret()
    row = await repository.insert_one(
        conn,
        id=new_id("api_key"),
        name=body.name,
        scope=body.scope,
        secret_hash=tokens.digest(secret),
        expires_at=body.expires_at,
        environment_id=environment["id"] if environment is not None else None,
    )
    if row is None:
        raise KeyNameTaken(f"An API key named '{body.name}' already exists (revoked keys keep their names)")
    await announce.key_changed(conn, row["id"])
    slug = environment["slug"] if environment is not None else None
    return key_body({**row, "environment_slug": slug}, secret=secret)


async def _binding(conn: AsyncConnection, named: str | None, caller: Principal | None) -> RowMapping | None:
    """The environment a new key is bound to, held until the transaction ends (so it
    cannot be deleted before the key refers to it), or None: unbound. A bound caller binds
    keys to its own environment only: naming none means its own, naming another is 403
    `environment_forbidden` (as every request of a bound key). Unknown: 404
    `resource_missing`, `param` `environment`."""
    if caller is not None and caller.bound:
        named = request_environment(caller, named)
    if named is None:
        return None
    return await environments.hold(conn, named)


def _visible(row: RowMapping | None, caller: Principal | None) -> RowMapping | None:
    """The key when the caller may manage it, else None. A bound key manages only the keys
    bound to its environment; to it, every other key is absent (404, as an unknown one):
    its list leaves them out, so answering 403 to a get or a revocation would only tell it
    which names exist elsewhere. Unbound keys (and the CLI, `caller` None) see every key."""
    if row is None or caller is None or not caller.bound:
        return row
    return row if row["environment_id"] == caller.environment_id else None


async def create_key(db: Database, body: KeyCreate, *, caller: Principal | None = None) -> dict[str, Any]:
    """The new key, with its secret: shown this once, stored only as a digest. `caller` is
    the key creating it (None: the CLI, or auth off), which bounds where it may bind it."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        return await _insert(conn, body, await _binding(conn, body.environment, caller))

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
        return await _insert(conn, KeyCreate(name=name, scope="admin"), None)

    return await db.transaction(unit)


async def list_keys(
    db: Database, *, after: str | None, limit: int, caller: Principal | None = None
) -> list[dict[str, Any]]:
    """Keys newest first; to a bound caller, only those bound to its environment."""
    only = caller.environment_id if caller is not None else None
    async with db.read() as conn:
        rows = await repository.list_page(conn, after=after, limit=limit, environment_id=only)
        return [key_body(row) for row in rows]


async def get_key(db: Database, ref: str, *, caller: Principal | None = None) -> dict[str, Any]:
    async with db.read() as conn:
        row = _visible(await repository.get(conn, ref), caller)
    if row is None:
        raise NotFound("API key", ref)
    return key_body(row)


async def revoke_key(db: Database, ref: str, *, caller: Principal | None = None) -> dict[str, Any]:
    """Revoke a key by id or name. Revoking a revoked key changes nothing and succeeds.
    A bound caller revokes only keys bound to its environment (others are 404, `_visible`).
    The last live unbound admin key cannot be revoked (LastAdminKey): an installation keeps
    a key that may manage everything (keys of every environment, environments themselves),
    which bound admin keys cannot. Bound admin keys may all go. The live unbound admin keys
    are locked first, so two revocations of the last two never both succeed."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = _visible(await repository.get(conn, ref), caller)
        if row is None:
            raise NotFound("API key", ref)
        if row["revoked_at"] is not None:
            return key_body(row)
        if (
            row["scope"] == "admin"
            and row["environment_id"] is None
            and await repository.lock_live_unbound_admins(conn) == [row["id"]]
        ):
            raise LastAdminKey(
                f"The API key '{row['name']}' is the last live admin key bound to no environment: "
                "create another one first"
            )
        revoked = await repository.revoke(conn, row["id"])
        await announce.key_changed(conn, revoked["id"])
        return key_body({**revoked, "environment_slug": row["environment_slug"]})

    return await db.transaction(unit)
