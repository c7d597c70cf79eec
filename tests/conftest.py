"""Test fixtures: a real PostgreSQL, one pair of databases per xdist worker.

- `av_<worker>`: migrated once; each test runs inside an outer transaction that is
  rolled back, and the code's own transactions become savepoints (fast, isolated).
- `av_live_<worker>`: migrated once; tests that need real commits seen by other
  connections (concurrency, the stateful machine, schemathesis) use it, each on agents
  of its own.

The server is the embedded one (started once, shared by the workers) unless
TEST_DATABASE_URL names another server's admin database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.api import embedded, migrate
from services.api.app import create_app
from services.api.db import Database
from services.api.settings import normalise_database_url
from services.shared.identifiers import new_id
from tests.helpers import TEST_KEY_NAME, admin_key, settings_for_tests

ROOT = Path(__file__).resolve().parents[1]
# Faster, not durable: a test server never needs to survive a crash.
FAST_SETTINGS = """
ALTER SYSTEM SET fsync = off;
ALTER SYSTEM SET synchronous_commit = off;
ALTER SYSTEM SET full_page_writes = off;
SELECT pg_reload_conf();
"""


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _server_url() -> str:
    """An asyncpg URL of the server's admin database."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return normalise_database_url(configured)
    # Empty counts as unset: Path("") is the working directory, which the server (as root) would chown.
    data_dir = Path(os.environ.get("TEST_EMBEDDED_POSTGRES_DIR") or ROOT / ".data" / "test-postgres")
    server = embedded.start(data_dir, settings_sql=FAST_SETTINGS)
    return embedded.with_database(server.get_uri(), "postgres")


async def _recreate(admin: AsyncEngine, name: str) -> None:
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
async def database_urls(server_url: str) -> dict[str, str]:
    """Fresh, migrated databases for this worker: {"rollback": url, "live": url}."""
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    urls = {}
    try:
        for role, name in (("rollback", f"av_{_worker()}"), ("live", f"av_live_{_worker()}")):
            await _recreate(admin, name)
            urls[role] = embedded.with_database(server_url, name)
            await migrate.upgrade(urls[role])
    finally:
        await admin.dispose()
    return urls


@pytest.fixture(scope="session")
async def engine(database_urls: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_urls["rollback"], pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back after the test."""
    async with engine.connect() as connection:
        outer = await connection.begin()
        try:
            yield connection
        finally:
            await outer.rollback()


@pytest.fixture
def db(conn: AsyncConnection) -> Database:
    return Database.bound_to(conn)


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for_tests(), database=db)
    secret = await admin_key(db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {secret}"}
    ) as http:
        yield http


@pytest.fixture
async def empty_url(server_url: str) -> AsyncIterator[str]:
    """An empty database (no schema), made for this test and dropped after it."""
    name = f"av_empty_{os.getpid()}_{new_id('api_key')[-8:].lower()}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield embedded.with_database(server_url, name)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
def live_url(database_urls: dict[str, str]) -> str:
    return database_urls["live"]


@pytest.fixture
async def live_db(live_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(live_url, pool_size=20, max_overflow=20)
    yield database
    await database.dispose()


@pytest.fixture
async def live_key(live_db: Database) -> str:
    """An admin key's secret in the live database (which keeps what tests commit, so
    each test's key has a name of its own)."""
    return await admin_key(live_db, f"{TEST_KEY_NAME}-{new_id('api_key').lower()[-12:]}")


@pytest.fixture
async def live_client(live_db: Database, live_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for_tests(), database=live_db)
    secret = live_key
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {secret}"}
    ) as http:
        yield http


def pytest_configure(config: pytest.Config) -> None:
    # Quiet the embedded server wrapper, which logs every pg_ctl call.
    import logging

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
