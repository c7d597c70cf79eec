"""Database.transaction retries what PostgreSQL rejects for serialization, and only that."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.app import create_app
from services.api.db import Database
from services.api.exceptions import ServiceBusy
from services.api.settings import Settings


def _raise_sqlstate(code: str) -> str:
    # A real error raised by the real server, with that SQLSTATE, through the real driver.
    return f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{code}'; END $$"


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
async def test_serialization_failures_and_deadlocks_are_retried(db: Database, sqlstate: str) -> None:
    attempts = 0

    async def unit(conn: AsyncConnection) -> int:
        nonlocal attempts
        attempts += 1
        await conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS retry_probe (n int)"))
        await conn.execute(text("INSERT INTO retry_probe VALUES (:n)"), {"n": attempts})
        if attempts == 1:
            await conn.execute(text(_raise_sqlstate(sqlstate)))
        return int(await conn.scalar(text("SELECT count(*) FROM retry_probe")))

    rows = await db.transaction(unit)
    assert attempts == 2
    assert rows == 1  # the first attempt's insert was rolled back with it


async def test_retries_give_up_with_service_busy(db: Database) -> None:
    attempts = 0

    async def unit(conn: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        await conn.execute(text(_raise_sqlstate("40001")))

    with pytest.raises(ServiceBusy):
        await db.transaction(unit, attempts=3)
    assert attempts == 3


async def test_other_database_errors_are_not_retried(db: Database) -> None:
    attempts = 0

    async def unit(conn: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        await conn.execute(text(_raise_sqlstate("23514")))  # check_violation

    with pytest.raises(DBAPIError):
        await db.transaction(unit)
    assert attempts == 1


async def test_service_busy_is_a_503_problem_with_retry_after(db: Database) -> None:
    app = create_app(Settings(database_url=None), database=db)

    @app.get("/busy-probe")
    async def busy() -> None:
        async def unit(conn: AsyncConnection) -> None:
            await conn.execute(text(_raise_sqlstate("40001")))

        await db.transaction(unit, attempts=2)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/busy-probe")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "service_unavailable"
