"""The database handle: engine, transactions with retry, and autocommit reads."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.api.exceptions import ServiceBusy

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[AsyncConnection], Awaitable[T]]

# serialization_failure and deadlock_detected: the database asks us to try again.
RETRYABLE_SQLSTATES = {"40001", "40P01"}
# The single-active index can only be hit by a race the agent row lock should prevent;
# if it ever is, the transaction is simply run again.
RETRYABLE_CONSTRAINTS = {"uq_variants_one_active_per_agent"}


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a driver error wrapped by SQLAlchemy, if any."""
    orig = getattr(error, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def constraint_name(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, DBAPIError):
        state = sqlstate(error)
        if state in RETRYABLE_SQLSTATES:
            return True
        return state == "23505" and constraint_name(error) in RETRYABLE_CONSTRAINTS
    return False


class Database:
    """Runs units of work in transactions and hands out connections for reads.

    In production it owns an engine. Tests bind it to one connection inside an outer
    transaction; each unit then runs in a savepoint that the test rolls back.
    """

    def __init__(
        self, *, engine: AsyncEngine | None = None, connection: AsyncConnection | None = None
    ) -> None:
        if (engine is None) == (connection is None):
            raise ValueError("give exactly one of engine or connection")
        self.engine = engine
        self._connection = connection
        self._autocommit_engine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if engine is not None else None
        )

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Database:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            # A pre-ping would add a round trip to every checkout, the resolve hot path
            # included; recycling old connections covers idle ones dropped by the network.
            pool_recycle=1800,
        )
        return cls(engine=engine)

    @classmethod
    def bound_to(cls, connection: AsyncConnection) -> Database:
        return cls(connection=connection)

    async def transaction(self, unit: Unit[T], *, attempts: int = 6) -> T:
        """Run `unit` in one transaction, retrying it on serialization failures.

        A unit must be replayable: it makes no external calls and returns plain values.
        """
        for attempt in range(1, attempts + 1):
            try:
                if self._connection is not None:
                    async with self._connection.begin_nested():
                        return await unit(self._connection)
                assert self.engine is not None
                async with self.engine.begin() as conn:
                    return await unit(conn)
            except Exception as error:  # noqa: BLE001 - filtered just below
                if not _is_retryable(error):
                    raise
                if attempt == attempts:
                    log.warning("giving up after %d attempts: %s", attempts, error)
                    raise ServiceBusy() from error
                # Jittered exponential backoff: 5 ms, 10 ms, 20 ms ... with full jitter.
                await asyncio.sleep(random.uniform(0, 0.005 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for single-statement reads: autocommit, so no BEGIN round trip."""
        if self._connection is not None:
            yield self._connection
            return
        assert self._autocommit_engine is not None
        async with self._autocommit_engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
