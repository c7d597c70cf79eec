"""The database handle: engine, transactions with retry, and autocommit reads."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
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


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy asyncpg URL as a DSN asyncpg itself accepts."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return dsn.replace("ssl=", "sslmode=")


async def _nothing_to_reset(_: asyncpg.Connection) -> None:
    """The driver pool's connections only run single autocommit SELECTs (`driver_read`):
    there is no session state to reset, and asyncpg's default reset costs a round trip
    (`RESET ALL`, `UNLISTEN *`, ...) per query."""


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


# What a transaction in progress changed, by channel (see `notify`).
_changes: ContextVar[dict[str, set[str]] | None] = ContextVar("changes", default=None)

# Every process LISTENs on both. The payload is the id of an agent whose resolution
# changed, or of an API key that was created or revoked.
RESOLUTION_CHANNEL = "agent_variants_resolution"
KEYS_CHANNEL = "agent_variants_keys"
# The payload on RESOLUTION_CHANNEL that stands for every agent (never an agent id: ids have `_`).
ALL_AGENTS = "*"


def resolution_change(agent_id: str, environment: tuple[str, str] | None = None) -> str:
    """The payload announcing a change (a NOTIFY's, and this process's own note): the agent
    id alone when every environment's resolution may have changed (its base config, a
    variant), or the agent id with one environment's id and slug when only that one's may
    (an activation, a rule set, an experiment): caches and watches keyed by either name of
    that environment refresh, and nothing else of the agent's does."""
    return agent_id if environment is None else f"{agent_id} {environment[0]} {environment[1]}"


def parse_changes(payloads: set[str] | frozenset[str]) -> dict[str, frozenset[str] | None]:
    """{agent id: the names (ids and slugs) of the environments that changed, or None for
    all of them}, from payloads made by `change`."""
    changed: dict[str, frozenset[str] | None] = {}
    for payload in payloads:
        agent_id, _, where = payload.partition(" ")
        if not where or (agent_id in changed and changed[agent_id] is None):
            changed[agent_id] = None
            continue
        names = frozenset(where.split(" "))
        before = changed.get(agent_id, frozenset())
        changed[agent_id] = names | before if before is not None else None
    return changed


async def notify(conn: AsyncConnection, channel: str, payload: str) -> None:
    """Record, in the current transaction, that `payload` changed: a NOTIFY that other
    processes get at commit, and a note for this process's own `on_commit` callbacks.
    Use cases call it through `services.api.writes.announce`."""
    await conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})
    changes = _changes.get()
    if changes is not None:
        changes.setdefault(channel, set()).add(payload)


@dataclass(eq=False)
class EffectLog:
    """The effects of one idempotent request's transactions, kept with its key.

    `saved`: the results its transactions committed before (a retry after the process
    died), returned again in order instead of running their units; `save` stores a new
    result in the committing transaction. Set by the idempotency middleware for the task
    that runs the request."""

    task: asyncio.Task[Any] | None
    saved: list[Any]
    save: Callable[[AsyncConnection, Any], Awaitable[None]]
    replayed: int = 0


_effects: ContextVar[EffectLog | None] = ContextVar("effects", default=None)


@contextmanager
def effects_logged(effects: EffectLog) -> Iterator[None]:
    """Within this block, this task's transactions save their results to `effects`."""
    token = _effects.set(effects)
    try:
        yield
    finally:
        _effects.reset(token)


class Database:
    """Runs units of work in transactions and hands out connections for reads.

    In production it owns an engine. Tests bind it to one connection inside an outer
    transaction; each unit then runs in a savepoint that the test rolls back.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine | None = None,
        connection: AsyncConnection | None = None,
        read_engine: AsyncEngine | None = None,
    ) -> None:
        if (engine is None) == (connection is None):
            raise ValueError("give exactly one of engine or connection")
        if read_engine is not None and engine is None:
            raise ValueError("a read engine goes with an engine")
        self.engine = engine
        # Reads (`read`, `snapshot`) check out from their own pool when given one, so
        # writers waiting on an agent's row lock never hold the connections reads need.
        self.read_engine = read_engine or engine
        self._connection = connection
        # Per channel, called after each commit with what it changed there (agent ids on
        # RESOLUTION_CHANNEL, key ids on KEYS_CHANNEL).
        self.on_commit: dict[str, list[Callable[[set[str]], None]]] = {RESOLUTION_CHANNEL: [], KEYS_CHANNEL: []}
        self._autocommit_engine = (
            self.read_engine.execution_options(isolation_level="AUTOCOMMIT") if self.read_engine is not None else None
        )
        # The resolver's pool (`driver_read`), made by `from_url`, usable once `open`ed.
        self._driver_pool: asyncpg.Pool | None = None
        self._driver_pool_open = False
        self._pool_timeout = 30.0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        statement_timeout_seconds: float | None = None,
        idle_in_transaction_timeout_seconds: float | None = None,
        connect_timeout_seconds: float | None = None,
        command_timeout_seconds: float | None = None,
        pool_timeout_seconds: float = 30.0,
        read_pool_size: int | None = None,
    ) -> Database:
        """Two engines on `url`: one for transactions, one for reads (`read`, `snapshot`)
        with `read_pool_size` connections (default: `pool_size`), so writes blocked on a
        row lock, however many, cannot starve reads of connections; both have the same
        overflow and bounds. The server's own timeouts (`statement_timeout_seconds`,
        `idle_in_transaction_timeout_seconds`) act only while it runs; the client's bound
        every wait even when it stops answering: opening a connection, each statement's
        answer, and the wait for a pooled connection. A statement that times out raises
        TimeoutError (a 503), and SQLAlchemy treats it like a cancellation: that connection
        is invalidated (closed, never pooled again), the rest of the pool is kept."""
        server_settings = {}
        if statement_timeout_seconds is not None:
            server_settings["statement_timeout"] = str(round(statement_timeout_seconds * 1000))
        if idle_in_transaction_timeout_seconds is not None:
            idle_ms = round(idle_in_transaction_timeout_seconds * 1000)
            server_settings["idle_in_transaction_session_timeout"] = str(idle_ms)
        connect_args: dict[str, object] = {"server_settings": server_settings} if server_settings else {}
        if connect_timeout_seconds is not None:
            connect_args["timeout"] = connect_timeout_seconds  # asyncpg.connect's
        if command_timeout_seconds is not None:
            connect_args["command_timeout"] = command_timeout_seconds

        def engine(size: int) -> AsyncEngine:
            return create_async_engine(
                url,
                pool_size=size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout_seconds,
                connect_args=connect_args,
                # A pre-ping would add a round trip to every checkout, the resolve hot path
                # included; recycling old connections covers idle ones dropped by the network.
                pool_recycle=1800,
            )

        db = cls(engine=engine(pool_size), read_engine=engine(read_pool_size or pool_size))
        # Not connected until `open`, and then only as connections are needed (min_size=0).
        db._driver_pool = asyncpg.create_pool(
            asyncpg_dsn(url),
            min_size=0,
            max_size=read_pool_size or pool_size,
            max_inactive_connection_lifetime=1800,
            reset=_nothing_to_reset,
            **connect_args,
        )
        db._pool_timeout = pool_timeout_seconds
        return db

    async def open(self) -> None:
        """Make `driver_read` use its own pool (the app's lifespan calls this; without it,
        as in scripts and tests, `driver_read` reads through `read`). Connects nothing yet."""
        if self._driver_pool is not None and not self._driver_pool_open:
            await self._driver_pool
            self._driver_pool_open = True

    @classmethod
    def bound_to(cls, connection: AsyncConnection) -> Database:
        return cls(connection=connection)

    async def transaction(self, unit: Unit[T], *, attempts: int = 6) -> T:
        """Run `unit` in one transaction, retrying it on serialization failures.

        A unit must be replayable: it makes no external calls and returns plain values.

        Under an `Idempotency-Key` (an `EffectLog` is set for this task), the unit's result is
        saved in the same transaction, and a unit whose result was saved before (the process
        died before the response was stored) is not run again: its result is returned.
        """
        effects = _effects.get()
        if effects is not None and effects.task is not asyncio.current_task():
            effects = None  # a task started during the request: not the request's own effect
        if effects is not None and effects.replayed < len(effects.saved):
            effects.replayed += 1
            log.info("replaying a committed effect of an idempotent request")
            return cast(T, effects.saved[effects.replayed - 1])

        async def run(conn: AsyncConnection) -> T:
            result = await unit(conn)
            if effects is not None:
                await effects.save(conn, result)  # in this transaction: both commit, or neither
            return result

        for attempt in range(1, attempts + 1):
            changes: dict[str, set[str]] = {}
            token = _changes.set(changes)
            try:
                if self._connection is not None:
                    async with self._connection.begin_nested():
                        result = await run(self._connection)
                else:
                    assert self.engine is not None
                    async with self.engine.begin() as conn:
                        result = await run(conn)
            except Exception as error:  # noqa: BLE001 - filtered just below
                if not _is_retryable(error):
                    raise
                if attempt == attempts:
                    log.warning("giving up after %d attempts: %s", attempts, error)
                    raise ServiceBusy() from error
                # Jittered exponential backoff: 5 ms, 10 ms, 20 ms ... with full jitter.
                await asyncio.sleep(random.uniform(0, 0.005 * 2 ** (attempt - 1)))
                continue
            finally:
                _changes.reset(token)
            # Committed: this process forgets what it cached for those agents (and keys)
            # before the caller answers (read-your-writes); other processes hear the NOTIFY.
            for channel, changed in changes.items():
                for listener in self.on_commit.get(channel, ()):
                    listener(changed)
            return result
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

    @asynccontextmanager
    async def driver_read(self) -> AsyncIterator[AsyncConnection | asyncpg.Connection]:
        """A connection for one autocommit statement run on the driver itself (the resolver's:
        `resolution_query.fetch` takes either kind). Once `open`ed, an asyncpg connection from
        a pool of its own, the read pool's size, as bounded as the others: checking one out
        through SQLAlchemy cost a resolution miss about 40 us of its 160 (the connection's
        isolation level set and reset, the pool's bookkeeping, greenlet switches)."""
        if not self._driver_pool_open:
            async with self.read() as conn:
                yield conn
            return
        assert self._driver_pool is not None
        async with self._driver_pool.acquire(timeout=self._pool_timeout) as driver:
            yield driver

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads that must agree with each other (several statements, one
        state): a read-only REPEATABLE READ transaction, so no commit lands between them."""
        if self._connection is not None:
            yield self._connection  # tests: one connection, nobody else writes in between
            return
        assert self.read_engine is not None
        async with self.read_engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            async with conn.begin():
                yield conn

    def pool_usage(self) -> dict[str, tuple[int, int, int]]:
        """For /metrics, per pool (`write`: transactions, `read`: reads and snapshots,
        `resolve`: the resolver's `driver_read`), the connections checked out, the tasks
        waiting for one, and the most it holds. None when bound to one connection (tests).
        Neither SQLAlchemy nor asyncpg counts its waiters: they are read from the pools'
        queues (asyncio queues, whose `_getters` are the waiting tasks)."""
        usage: dict[str, tuple[int, int, int]] = {}
        if self.engine is not None:
            usage["write"] = _engine_usage(self.engine)
        if self.read_engine is not None and self.read_engine is not self.engine:
            usage["read"] = _engine_usage(self.read_engine)
        if self._driver_pool_open:
            pool = self._driver_pool
            assert pool is not None
            in_use = pool.get_size() - pool.get_idle_size()
            usage["resolve"] = (in_use, _waiters(getattr(pool, "_queue", None)), pool.get_max_size())
        return usage

    async def dispose(self) -> None:
        if self._driver_pool_open:
            assert self._driver_pool is not None
            self._driver_pool_open = False
            await self._driver_pool.close()
        if self.engine is not None:
            await self.engine.dispose()
        if self.read_engine is not None and self.read_engine is not self.engine:
            await self.read_engine.dispose()


def _waiters(queue: object) -> int:
    """Tasks waiting on an asyncio queue's `get` (0 for anything else)."""
    getters = getattr(queue, "_getters", None)
    return sum(1 for waiter in getters if not waiter.done()) if getters else 0


def _engine_usage(engine: AsyncEngine) -> tuple[int, int, int]:
    pool: Any = engine.pool
    if not hasattr(pool, "checkedout"):  # a pool that does not pool (NullPool): nothing to tell
        return 0, 0, 0
    # SQLAlchemy's async queue makes its asyncio queue on first use: unused, nobody waits.
    queue = getattr(pool, "_pool", None)
    waiting = _waiters(vars(queue).get("_queue")) if queue is not None and hasattr(queue, "__dict__") else 0
    return pool.checkedout(), waiting, pool.size() + max(pool._max_overflow, 0)
