"""Console sessions: the browser holds a random token in an HttpOnly cookie; the database
holds its SHA-256, the API key it was opened with, and the session's CSRF token.

A session is only as good as its key: every lookup joins the key and requires it to be
neither revoked nor expired, so revoking a key ends its sessions on every replica at once.
The secret of the key is never stored, nor put in the cookie.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database
from services.api.models import ApiKey, ConsoleSession, Environment, table_of
from services.api.principal import RANK

LIFETIME = timedelta(hours=12)
sessions = table_of(ConsoleSession)
keys = table_of(ApiKey)
environments = table_of(Environment)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the key's name and scope (admin, with no key, while auth is off), and
    the environment the key is bound to (contract 1.1), if it is."""

    key_id: str | None
    key_name: str | None
    scope: str
    csrf_token: str
    environment_id: str | None = None
    environment_slug: str | None = None

    @property
    def can_write(self) -> bool:
        return RANK[self.scope] >= RANK["write"]


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


async def open_session(db: Database, key_id: str | None) -> str:
    """A new session for this key; its token (for the cookie)."""
    token = secrets.token_urlsafe(32)

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(
            insert(sessions).values(
                token_hash=_hash(token),
                api_key_id=key_id,
                csrf_token=secrets.token_urlsafe(32),
                expires_at=datetime.now(UTC) + LIFETIME,
            )
        )

    await db.transaction(unit)
    return token


# The least scope that may use the console: `resolve` keys are for agents, and see no page.
LEAST_SCOPE = "read"
CONSOLE_SCOPES = tuple(scope for scope, rank in RANK.items() if rank >= RANK[LEAST_SCOPE])


async def viewer_of(db: Database, token: str | None, *, auth_disabled: bool) -> Viewer | None:
    """The session's viewer, if the token names a live session whose key still works. A
    session opened while auth was off (no key) counts only while auth is still off."""
    if not token or len(token) > 100:
        return None
    key_is_live = (
        keys.c.revoked_at.is_(None)
        & keys.c.scope.in_(CONSOLE_SCOPES)
        & or_(keys.c.expires_at.is_(None), keys.c.expires_at > func.now())
    )
    query = (
        select(
            sessions.c.api_key_id,
            sessions.c.csrf_token,
            keys.c.name,
            keys.c.scope,
            keys.c.environment_id,
            environments.c.slug.label("environment_slug"),
        )
        .select_from(
            sessions.outerjoin(keys, keys.c.id == sessions.c.api_key_id).outerjoin(
                environments, environments.c.id == keys.c.environment_id
            )
        )
        .where(sessions.c.token_hash == _hash(token), sessions.c.expires_at > func.now())
        .where(sessions.c.api_key_id.is_(None) if auth_disabled else key_is_live)
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    if row.api_key_id is None:
        return Viewer(None, None, "admin", row.csrf_token)
    return Viewer(row.api_key_id, row.name, row.scope, row.csrf_token, row.environment_id, row.environment_slug)


async def close_session(db: Database, token: str | None) -> None:
    """Sign out: the session is gone, whoever holds the token."""
    if not token:
        return

    async def unit(conn: AsyncConnection) -> None:
        await conn.execute(delete(sessions).where(sessions.c.token_hash == _hash(token)))

    await db.transaction(unit)


async def purge_expired(db: Database) -> int:
    async def unit(conn: AsyncConnection) -> int:
        result = await conn.execute(delete(sessions).where(sessions.c.expires_at <= func.now()))
        return result.rowcount or 0

    return await db.transaction(unit)
