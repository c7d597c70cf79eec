"""The environments migration: it makes `production` with its fixed id, and its downgrade
removes the table; up again, `production` is back as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, PRODUCTION_ENVIRONMENT_SLUG, is_id
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

REVISION = "b2c4e6a8d0f1"
BEFORE = "a7d9f1b3c5e8"


async def has_table(conn: AsyncConnection, name: str) -> bool:
    return await conn.run_sync(lambda sync: inspect(sync).has_table(name))


async def environments(conn: AsyncConnection) -> list[tuple[str, str, str, int]]:
    rows = await conn.execute(text("SELECT id, slug, name, version FROM environments ORDER BY id"))
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_upgrade_makes_production_and_downgrade_removes_the_table(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", BEFORE)
    assert not await has_table(fresh, "environments")

    await step(fresh, "upgrade", REVISION)
    production = [(PRODUCTION_ENVIRONMENT_ID, PRODUCTION_ENVIRONMENT_SLUG, "Production", 1)]
    assert await environments(fresh) == production
    assert is_id("environment", PRODUCTION_ENVIRONMENT_ID)
    await fresh.execute(text("INSERT INTO environments (id, slug, name) VALUES ('env_1', 'staging', 'Staging')"))
    await fresh.commit()

    await step(fresh, "downgrade", BEFORE)
    assert not await has_table(fresh, "environments")

    await step(fresh, "upgrade", "head")
    assert await environments(fresh) == production  # the same id on every installation
    assert await migrate.current_revision(fresh) == migrate.head_revision()


async def test_slugs_are_unique_in_the_database(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", REVISION)
    with pytest.raises(Exception, match="uq_environments_slug"):
        await fresh.execute(text("INSERT INTO environments (id, slug, name) VALUES ('env_2', 'production', 'P')"))
    await fresh.rollback()
