"""Several processes migrating one empty database at once: one applies, the rest wait."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api import migrate

pytestmark = pytest.mark.live


async def test_simultaneous_migrate_commands_all_succeed_and_apply_once(fresh_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_url, "LOG_LEVEL": "warning"}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.api.cli",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = await asyncio.gather(*(p.communicate() for p in processes))
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
        assert migrate.head_revision() in out.decode()

    engine = create_async_engine(fresh_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            tables = await conn.scalar(
                text("SELECT count(*) FROM information_schema.tables WHERE table_name IN ('agents', 'variants')")
            )
    finally:
        await engine.dispose()
    assert versions == [migrate.head_revision()]
    assert tables == 2
