"""Applying Alembic migrations from the service and the CLI, and checking the schema's head."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.api.catalog.seed import seed_from_package

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _run(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, action)(config, revision)


async def run_on(conn: AsyncConnection, action: str = "upgrade", revision: str = "head") -> None:
    """Run `alembic upgrade/downgrade <revision>` on this connection (caller commits)."""
    await conn.run_sync(_run, action, revision)


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url`; safe when several processes do it at once (env.py
    takes an advisory lock, so the others wait and then find nothing to do). At head, the
    model catalog is then seeded in the same transaction (`catalog.seed`: once per data
    source, missing models only)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await run_on(conn, "upgrade", revision)
            if revision in ("head", head_revision()):
                await seed_from_package(conn)
    finally:
        await engine.dispose()


async def current_revision(conn: AsyncConnection) -> str | None:
    exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
    if not exists:
        return None
    return await conn.scalar(text("SELECT version_num FROM alembic_version"))
