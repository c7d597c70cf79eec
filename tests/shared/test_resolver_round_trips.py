"""`resolve_agent_config` costs one database round trip per call, in-process and over HTTP.

What a call sends is counted on the driver itself, from three sources that together cover
every message asyncpg can send for SQLAlchemy:

- SQLAlchemy's `before_cursor_execute`: each statement SQLAlchemy runs (asyncpg executes
  them as prepared statements, which asyncpg's query logger does not see);
- asyncpg's query logger: what runs through the connection's own methods: `BEGIN` and
  `COMMIT`, and the resolver's statement, which goes to the driver directly;
- the asyncpg connection's `_get_statement` (private, but the one place every statement is
  prepared): a new prepared statement is a Parse round trip, made the first time a
  connection sees a statement; after that the statement comes from a cache.

The control tests show each source counting what it should, so a silent instrument can't
make the round-trip assertions pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.api.app import create_app
from services.api.db import Database
from services.shared.agent_config import AgentNotFound, VariantNotFound, resolve_agent_config
from tests.helpers import bearer, config, create_agent, create_variant, settings_for_tests

pytestmark = pytest.mark.live


class CountingConnection(asyncpg.Connection):
    """An asyncpg connection that counts its Parse round trips (new prepared statements)."""

    prepared: list[str] = []  # each engine gets a subclass with a list of its own

    async def _get_statement(self, query: str, *args: Any, **kwargs: Any) -> Any:
        statement = await super()._get_statement(query, *args, **kwargs)
        seen = self.__dict__.setdefault("seen_statements", set())
        if id(statement) not in seen:  # not from a cache: the server just parsed it
            seen.add(id(statement))
            self.prepared.append(query)
        return statement


@dataclass
class Recorder:
    """Everything the engine's connections send, from the three sources above."""

    executed: list[str] = field(default_factory=list)  # SQLAlchemy statements
    logged: list[str] = field(default_factory=list)  # asyncpg simple-protocol queries
    prepared: list[str] = field(default_factory=list)  # Parse round trips

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.executed.append(statement)

    def _on_connect(self, dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda query: self.logged.append(query.query))

    @asynccontextmanager
    async def measure(self) -> AsyncIterator[Trips]:
        trips = Trips()
        marks = len(self.executed), len(self.logged), len(self.prepared)
        yield trips
        # asyncpg calls its query loggers with loop.call_soon: let them run.
        for _ in range(3):
            await asyncio.sleep(0)
        trips.executed = self.executed[marks[0] :]
        trips.logged = self.logged[marks[1] :]
        trips.prepared = self.prepared[marks[2] :]


@dataclass
class Trips:
    executed: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)

    @property
    def statements(self) -> int:
        """Statements sent: SQLAlchemy's plus the driver's own, BEGIN and COMMIT included."""
        return len(self.executed) + len(self.logged)

    @property
    def verbs(self) -> list[str]:
        return [q.split()[0].rstrip(";").upper() for q in self.executed + self.logged]

    @property
    def control(self) -> list[str]:
        """Transaction control sent: BEGIN, COMMIT, SAVEPOINT ..."""
        return [q.split()[0].rstrip(";").upper() for q in self.logged if not q.lstrip().upper().startswith("SELECT")]

    @property
    def round_trips(self) -> int:
        return self.statements + len(self.prepared)

    def __repr__(self) -> str:
        return f"Trips(executed={self.executed}, logged={self.logged}, prepared={self.prepared})"


def counting_engine(url: str, recorder: Recorder, **options: Any) -> AsyncEngine:
    """An engine whose every connection reports to `recorder`."""

    class Connection(CountingConnection):
        prepared = recorder.prepared

    engine = create_async_engine(url, connect_args={"connection_class": Connection}, **options)
    event.listen(engine.sync_engine, "before_cursor_execute", recorder._on_execute)
    event.listen(engine.sync_engine, "connect", recorder._on_connect)
    return engine


@pytest.fixture
async def seeded(live_client: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    """An agent with an active variant (two overrides) and an inactive one, deleted after."""
    agent = await create_agent(live_client, config=config(temperature=0.5, max_tokens=100))
    active = await create_variant(live_client, agent["id"], overrides={"temperature": 1.5})
    other = await create_variant(live_client, agent["id"], overrides={"max_tokens": 7, "system_prompt": "hi"})
    response = await live_client.post(f"/v1/agents/{agent['id']}/variants/{active['id']}/activate")
    assert response.status_code == 200, response.text
    bare = await create_agent(live_client)  # no variants at all
    yield {"agent": agent, "active": active, "other": other, "bare": bare}
    for created in (agent, bare):
        assert (await live_client.delete(f"/v1/agents/{created['id']}")).status_code == 204


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def autocommit(live_url: str, recorder: Recorder) -> AsyncIterator[AsyncConnection]:
    engine = counting_engine(live_url, recorder, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def calls(s: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(agent, kwargs, what the result must show) for every way of calling the resolver."""
    agent, active, other, bare = s["agent"], s["active"], s["other"], s["bare"]
    return [
        (agent["id"], {}, {"variant_id": active["id"], "source": "variant", "temperature": 1.5, "max_tokens": 100}),
        (agent["slug"], {}, {"variant_id": active["id"], "source": "variant", "temperature": 1.5}),
        (bare["id"], {}, {"variant_id": None, "source": "agent", "temperature": 1.0}),
        (bare["slug"], {}, {"variant_id": None, "source": "agent", "max_tokens": 1024}),
        (
            agent["id"],
            {"variant": other["id"]},
            {"variant_id": other["id"], "source": "preview", "temperature": 0.5, "max_tokens": 7},
        ),
        (
            agent["slug"],
            {"variant": other["slug"]},
            {"variant_id": other["id"], "source": "preview", "system_prompt": "hi"},
        ),
        (agent["id"], {"variant": active["slug"]}, {"variant_id": active["id"], "source": "preview"}),
        (agent["slug"], {"variant": other["id"]}, {"variant_id": other["id"], "source": "preview"}),
    ]


async def test_each_resolve_is_one_statement_and_one_round_trip(
    seeded: dict[str, Any], autocommit: AsyncConnection, recorder: Recorder
) -> None:
    for attempt in range(3):
        for agent, kwargs, expected in calls(seeded):
            async with recorder.measure() as trips:
                resolved = await resolve_agent_config(autocommit, agent, **kwargs)
            for name, value in expected.items():
                assert getattr(resolved, name) == value, (agent, kwargs, name)
            # One statement, no BEGIN/COMMIT around it, every time.
            assert trips.statements == 1 and trips.verbs == ["SELECT"], trips
            if attempt > 0:
                # Once the connection has the statement prepared, it is one round trip.
                assert trips.round_trips == 1, trips
            else:
                assert len(trips.prepared) <= 1, trips


async def test_not_found_costs_one_round_trip_too(
    seeded: dict[str, Any], autocommit: AsyncConnection, recorder: Recorder
) -> None:
    agent = seeded["agent"]
    missing_agent = "agt_01J00000000000000000000000"
    missing_variant = "var_01J00000000000000000000000"
    cases: list[tuple[str, dict[str, Any], type[LookupError]]] = [
        (missing_agent, {}, AgentNotFound),
        ("no-such-agent", {}, AgentNotFound),
        (missing_agent, {"variant": "whatever"}, AgentNotFound),
        (agent["id"], {"variant": missing_variant}, VariantNotFound),
        (agent["slug"], {"variant": "no-such-variant"}, VariantNotFound),
        # Malformed references: no row can match, but the answer still needs at most
        # the one statement that says whether the agent exists.
        ("Not A Slug!", {}, AgentNotFound),
        ("agt_nope", {"variant": "x"}, AgentNotFound),
        (agent["id"], {"variant": "Not A Slug!"}, VariantNotFound),
        (agent["slug"], {"variant": "var_nope"}, VariantNotFound),
        ("no-such-agent", {"variant": "Not A Slug!"}, AgentNotFound),
    ]
    for attempt in range(2):
        for ref, kwargs, error in cases:
            async with recorder.measure() as trips:
                with pytest.raises(error):
                    await resolve_agent_config(autocommit, ref, **kwargs)
            assert trips.statements <= 1 and not trips.control, (ref, kwargs, trips)
            if attempt > 0:
                assert trips.round_trips <= 1, (ref, kwargs, trips)


async def test_control_the_counter_sees_begin_commit_and_prepare(
    seeded: dict[str, Any], live_url: str, recorder: Recorder
) -> None:
    """In a transaction the same call costs BEGIN and COMMIT too, and a fresh connection
    prepares the statement first: the instruments see all of it."""
    engine = counting_engine(live_url, recorder)  # not autocommit
    try:
        async with engine.connect() as conn:
            async with recorder.measure() as trips:
                await resolve_agent_config(conn, seeded["agent"]["id"])
                await conn.commit()
    finally:
        await engine.dispose()
    assert trips.control == ["BEGIN", "COMMIT"], trips
    assert sorted(trips.verbs) == ["BEGIN", "COMMIT", "SELECT"], trips
    assert len(trips.prepared) == 1, trips  # a new connection has nothing prepared yet
    assert trips.round_trips == 4


async def test_http_resolve_uses_one_round_trip_through_database_read(
    seeded: dict[str, Any], live_url: str, live_key: str, recorder: Recorder
) -> None:
    """`GET /v1/agents/{agent}/resolved` through the app's own `Database.read()`, with an
    API key: once the key ring is loaded, checking the key costs no round trip."""
    # One pooled connection, so warming it up warms every request.
    engine = counting_engine(live_url, recorder, pool_size=1, max_overflow=0)
    database = Database(engine=engine)
    # The cache off: this measures the database path, not cache hits.
    app = create_app(settings_for_tests(resolve_cache_size=0), database=database)
    agent, active, other = seeded["agent"], seeded["active"], seeded["other"]
    urls = [
        f"/v1/agents/{agent['id']}/resolved",
        f"/v1/agents/{agent['slug']}/resolved?explain=true",
        f"/v1/agents/{agent['id']}/resolved?variant={other['id']}",
        f"/v1/agents/{agent['slug']}/resolved?variant={other['slug']}",
        f"/v1/agents/{seeded['bare']['slug']}/resolved",
    ]
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", headers=bearer(live_key)
        ) as http:
            # The first authenticated request loads the key ring (one query, once).
            assert (await http.get(f"/v1/agents/{agent['id']}")).status_code == 200
            for attempt in range(3):
                for url in urls:
                    async with recorder.measure() as trips:
                        response = await http.get(url)
                    assert response.status_code == 200, response.text
                    assert trips.statements == 1 and trips.verbs == ["SELECT"], (url, trips)
                    if attempt > 0:
                        assert trips.round_trips == 1, (url, trips)
                assert (await http.get(urls[0])).json()["variant_id"] == active["id"]

            # Control: a write through the same app runs in a transaction, and it shows.
            async with recorder.measure() as trips:
                response = await http.post(f"/v1/agents/{agent['id']}/variants/{active['id']}/activate")
            assert response.status_code == 200
            assert trips.control == ["BEGIN", "COMMIT"], trips
    finally:
        await database.dispose()
