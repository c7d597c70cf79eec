"""What migration tests share besides fixtures."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate


async def step(conn: AsyncConnection, action: str, revision: str) -> None:
    """One migration step, committed, as the service applies it."""
    await migrate.run_on(conn, action, revision)
    await conn.commit()
