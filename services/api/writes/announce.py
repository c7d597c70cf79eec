"""Announcing a change: every process drops what it cached and tells its watchers.

A use case calls these in its transaction, as its last step. The NOTIFY reaches the
other processes at commit; this process's own subscribers (see `Database.on_commit`) run
right after the commit, before the write is answered, so a client reads its own writes.
"""

from __future__ import annotations

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import ALL_AGENTS, KEYS_CHANNEL, RESOLUTION_CHANNEL, notify, resolution_change


async def agent_changed(conn: AsyncConnection, agent_id: str, environment: RowMapping | None = None) -> None:
    """This agent's resolution may have changed: in every environment (a shared definition
    changed), or in `environment` (an environments row) only. Its cached answers and bundles
    there go; another environment's stay."""
    where = (environment["id"], environment["slug"]) if environment is not None else None
    await notify(conn, RESOLUTION_CHANNEL, resolution_change(agent_id, where))


async def every_agent_changed(conn: AsyncConnection) -> None:
    """Any agent's resolution may have changed (an environment was deleted: every answer
    cached for it must go, whichever agent it was for): every cache is cleared."""
    await notify(conn, RESOLUTION_CHANNEL, ALL_AGENTS)


async def key_changed(conn: AsyncConnection, key_id: str) -> None:
    """This API key was created or revoked: every process's key ring forgets it."""
    await notify(conn, KEYS_CHANNEL, key_id)
