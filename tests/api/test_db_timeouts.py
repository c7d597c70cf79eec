"""The database's client-side bounds: they hold even when the server stops answering."""

from __future__ import annotations

import time

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from services.api.db import Database
from services.api.errors import database_unavailable

SECONDS = 0.3


async def test_a_statement_past_the_command_timeout_fails_and_its_connection_is_not_reused(live_url: str) -> None:
    db = Database.from_url(live_url, pool_size=1, max_overflow=0, command_timeout_seconds=SECONDS)
    try:
        async with db.read() as conn:
            before = await conn.scalar(text("SELECT pg_backend_pid()"))
        with pytest.raises(TimeoutError) as raised:
            async with db.read() as conn:
                await conn.execute(text("SELECT pg_sleep(5)"))
        assert database_unavailable(raised.value)
        # The pool's one connection was discarded (it may still be mid-query), not handed out again.
        async with db.read() as conn:
            after = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert after != before
    finally:
        await db.dispose()


async def test_waiting_for_a_pooled_connection_is_bounded(live_url: str) -> None:
    db = Database.from_url(live_url, pool_size=1, max_overflow=0, pool_timeout_seconds=SECONDS)
    try:
        async with db.read():
            started = time.monotonic()
            with pytest.raises(sqlalchemy.exc.TimeoutError) as raised:
                async with db.read():
                    pass
            assert time.monotonic() - started < SECONDS + 0.5
        assert database_unavailable(raised.value)
    finally:
        await db.dispose()
