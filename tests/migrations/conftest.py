"""Fixtures for migration tests: an empty database per test, and a connection to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool


@pytest.fixture
def fresh_url(empty_url: str) -> str:
    """An empty database, made for this test and dropped after it."""
    return empty_url


@pytest.fixture
async def fresh(fresh_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection to that empty database."""
    engine = create_async_engine(fresh_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()
