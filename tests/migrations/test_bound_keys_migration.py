"""The bound-keys migration: `api_keys.environment_id` (a foreign key without cascade); its
downgrade revokes every bound key before dropping the column (the old code would take them
for unbound keys), and leaves unbound keys and earlier revocations as they were."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

REVISION = "d4f6a8c0e2b5"
BEFORE = "d4e6f8a0b2c3"
EARLIER = datetime(2026, 12, 1, tzinfo=UTC)


async def columns(conn: AsyncConnection) -> set[str]:
    return await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("api_keys")})


async def insert_key(conn: AsyncConnection, key_id: str, *, revoked_at: datetime | None = None) -> None:
    await conn.execute(
        text(
            "INSERT INTO api_keys (id, name, scope, secret_hash, revoked_at) "
            "VALUES (:id, :name, 'admin', :digest, :revoked_at)"
        ),
        {"id": key_id, "name": key_id, "digest": hashlib.sha256(key_id.encode()).digest(), "revoked_at": revoked_at},
    )


async def revoked(conn: AsyncConnection) -> dict[str, datetime | None]:
    """Each key's `revoked_at` (None while live)."""
    rows = await conn.execute(text("SELECT id, revoked_at FROM api_keys ORDER BY id"))
    return {key_id: at for key_id, at in rows}


async def test_upgrade_adds_the_binding_and_downgrade_revokes_bound_keys(fresh: AsyncConnection) -> None:
    await step(fresh, "upgrade", BEFORE)
    assert "environment_id" not in await columns(fresh)
    await insert_key(fresh, "unbound")
    await fresh.commit()

    await step(fresh, "upgrade", REVISION)
    assert "environment_id" in await columns(fresh)
    # Keys made before are unbound.
    assert (await fresh.scalar(text("SELECT environment_id FROM api_keys WHERE id = 'unbound'"))) is None
    await fresh.execute(text("INSERT INTO environments (id, slug, name) VALUES ('env_1', 'staging', 'Staging')"))
    await insert_key(fresh, "bound")
    await insert_key(fresh, "bound-revoked-earlier", revoked_at=EARLIER)
    await fresh.execute(text("UPDATE api_keys SET environment_id = 'env_1' WHERE id LIKE 'bound%'"))
    await fresh.commit()

    # No cascade: the environment cannot go while a key refers to it.
    with pytest.raises(Exception, match="fk_api_keys_environment_id_environments"):
        await fresh.execute(text("DELETE FROM environments WHERE id = 'env_1'"))
    await fresh.rollback()

    await step(fresh, "downgrade", BEFORE)
    assert "environment_id" not in await columns(fresh)
    after = await revoked(fresh)
    assert after["unbound"] is None  # unbound keys keep working
    assert after["bound"] is not None  # a bound key is revoked: the old code would read it as unbound
    assert after["bound-revoked-earlier"] == EARLIER  # the first revocation stays

    await step(fresh, "upgrade", "head")
    assert "environment_id" in await columns(fresh)
    # Up again: every key is unbound, and the keys revoked by the downgrade stay revoked.
    assert (await fresh.scalar(text("SELECT count(*) FROM api_keys WHERE environment_id IS NOT NULL"))) == 0
    assert await revoked(fresh) == after
    assert await migrate.current_revision(fresh) == migrate.head_revision()
