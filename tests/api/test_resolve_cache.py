"""The resolve cache: the LRU itself, and `GET /resolved` served from it on real PostgreSQL.

Whether a response came from the cache is proven by counting the SQL statements the
test's connection runs: a hit runs none. Every kind of write is followed by a read that
must equal what an app without a cache answers on the same database (read-your-writes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as statistic
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.app import create_app
from services.api.db import Database, parse_changes, resolution_change
from services.api.resolution import cache as resolve_cache
from services.api.resolution.cache import ResolveCache
from services.api.resolution.schemas import to_body
from services.shared.agent_config import resolve_agent_config
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID as PROD
from tests.helpers import (
    admin_key,
    app_of,
    assert_problem,
    bearer,
    config,
    create_agent,
    create_variant,
    settings_for_tests,
    unique,
)

# ------------------------------------------------------------------------- the LRU itself


class Clock:
    """Stands in for `time` in resolve_cache, so TTLs are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def make(*, size: int = 10, ttl: float = 60.0, trusted: bool = True) -> ResolveCache:
    return ResolveCache(max_entries=size, ttl_seconds=ttl, trusted=trusted)


def put(cache: ResolveCache, ref: str, agent_id: str, *, explain: bool = False, body: bytes | None = None) -> None:
    body = body if body is not None else f"{agent_id}:{ref}:{explain}".encode()
    cache.put(ref, PROD, explain, agent_id, body, f'"{agent_id}"', generation=cache.generation)


def test_a_put_is_served_by_get_with_its_body_etag_and_agent() -> None:
    cache = make()
    cache.put("slug", PROD, True, "agt_1", b"{}", '"e"', generation=cache.generation)
    entry = cache.get("slug", PROD, True)
    assert entry is not None
    assert (entry.agent_id, entry.body, entry.etag) == ("agt_1", b"{}", '"e"')
    assert cache.get("slug", PROD, False) is None  # explain is part of the key
    assert cache.get("other", PROD, True) is None


def test_the_lru_bound_evicts_the_least_recently_used_entry() -> None:
    cache = make(size=2)
    put(cache, "a", "agt_a")
    put(cache, "b", "agt_b")
    assert cache.get("a", PROD, False) is not None  # a is now the most recently used
    put(cache, "c", "agt_c")
    assert len(cache) == 2
    assert cache.get("b", PROD, False) is None
    assert cache.get("a", PROD, False) is not None and cache.get("c", PROD, False) is not None


def test_without_reads_the_oldest_put_is_evicted_first_and_the_index_stays_bounded() -> None:
    cache = make(size=3)
    for n in range(50):
        put(cache, f"ref{n}", f"agt_{n}")
    assert len(cache) == 3
    assert [cache.get(f"ref{n}", PROD, False) is not None for n in (46, 47, 48, 49)] == [False, True, True, True]
    # Evicted entries leave nothing behind in the per-agent index (no slow leak).
    assert set(cache._keys_by_agent) == {"agt_47", "agt_48", "agt_49"}


def test_an_entry_expires_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(resolve_cache, "time", clock)
    cache = make(ttl=5.0)
    put(cache, "a", "agt_a")
    clock.now += 4.999
    assert cache.get("a", PROD, False) is not None
    clock.now += 0.001
    assert cache.get("a", PROD, False) is None
    assert len(cache) == 0  # an expired entry is dropped, not kept around


def test_invalidate_drops_every_ref_of_that_agent_and_only_those() -> None:
    cache = make()
    for agent in ("a", "b"):
        for ref in (f"agt_{agent}", f"slug-{agent}"):
            for explain in (False, True):
                put(cache, ref, f"agt_{agent}", explain=explain)
    assert len(cache) == 8
    before = cache.generation
    cache.invalidate({"agt_a"})
    assert cache.generation > before
    assert [cache.get(ref, PROD, explain) for ref in ("agt_a", "slug-a") for explain in (False, True)] == [None] * 4
    assert all(cache.get(ref, PROD, explain) is not None for ref in ("agt_b", "slug-b") for explain in (False, True))
    assert len(cache) == 4


def test_a_ref_that_moved_to_another_agent_is_invalidated_by_its_new_agent_only() -> None:
    cache = make()
    put(cache, "shared-slug", "agt_old")
    put(cache, "shared-slug", "agt_new")  # the slug now names another agent
    assert len(cache) == 1
    cache.invalidate({"agt_old"})
    entry = cache.get("shared-slug", PROD, False)
    assert entry is not None and entry.agent_id == "agt_new"
    cache.invalidate({"agt_new"})
    assert cache.get("shared-slug", PROD, False) is None


def test_a_put_computed_before_an_invalidation_is_dropped() -> None:
    cache = make()
    read_began_at = cache.generation
    cache.invalidate({"agt_unrelated"})  # any change since the read began may concern it
    cache.put("a", PROD, False, "agt_a", b"old", '"old"', generation=read_began_at)
    assert cache.get("a", PROD, False) is None and len(cache) == 0
    cache.put("a", PROD, False, "agt_a", b"new", '"new"', generation=cache.generation)
    entry = cache.get("a", PROD, False)
    assert entry is not None and entry.body == b"new"


def test_a_put_computed_before_a_clear_is_dropped() -> None:
    cache = make()
    read_began_at = cache.generation
    cache.clear()
    cache.put("a", PROD, False, "agt_a", b"old", '"old"', generation=read_began_at)
    assert cache.get("a", PROD, False) is None


def test_an_untrusted_cache_serves_and_stores_nothing() -> None:
    cache = make(trusted=False)
    put(cache, "a", "agt_a")
    assert len(cache) == 0 and cache.get("a", PROD, False) is None
    assert not cache.enabled

    cache = make()
    put(cache, "a", "agt_a")
    cache.trusted = False  # e.g. the listener connection dropped
    assert cache.get("a", PROD, False) is None
    put(cache, "b", "agt_b")
    cache.trusted = True
    assert cache.get("b", PROD, False) is None


def test_clear_empties_the_cache_and_its_index() -> None:
    cache = make()
    for n in range(5):
        put(cache, f"r{n}", f"agt_{n}", explain=n % 2 == 0)
    before = cache.generation
    cache.clear()
    assert len(cache) == 0 and cache._keys_by_agent == {}
    assert cache.generation > before
    assert all(cache.get(f"r{n}", PROD, n % 2 == 0) is None for n in range(5))


def test_a_size_of_zero_disables_the_cache() -> None:
    cache = make(size=0)
    put(cache, "a", "agt_a")
    assert not cache.enabled and len(cache) == 0 and cache.get("a", PROD, False) is None


# ----------------------------------------------------------------------- HTTP, cache on


class Statements:
    def __init__(self) -> None:
        self.sql: list[str] = []

    def __len__(self) -> int:
        return len(self.sql)


@asynccontextmanager
async def counting(conn: AsyncConnection) -> AsyncIterator[Statements]:
    """The SQL statements run on the test's connection (the app's only one) meanwhile."""
    statements = Statements()

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.sql.append(statement)

    def logged(query: Any) -> None:  # what goes to the driver directly (the resolver's query)
        statements.sql.append(query.query)

    engine = conn.sync_engine
    driver = conn.sync_connection.connection.driver_connection
    event.listen(engine, "before_cursor_execute", record)
    driver.add_query_logger(logged)
    try:
        yield statements
        for _ in range(3):  # asyncpg calls query loggers with loop.call_soon: let them run
            await asyncio.sleep(0)
    finally:
        event.remove(engine, "before_cursor_execute", record)
        driver.remove_query_logger(logged)


@pytest.fixture
async def uncached(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The same database through an app without a cache: the truth to compare with."""
    app = create_app(settings_for_tests(resolve_cache_size=0), database=db)
    secret = await admin_key(db, "test-admin-uncached")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=bearer(secret)
    ) as http:
        yield http


async def two_variants(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    agent = await create_agent(client, config=config(system_prompt="base", temperature=0.5))
    a = await create_variant(client, agent["id"], overrides={"temperature": 0.1, "prompt_version": "a"})
    b = await create_variant(client, agent["id"], overrides={"temperature": 0.9, "prompt_version": "b"})
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/activate")
    assert response.status_code == 200, response.text
    return agent, a, b


def url(ref: str, query: str = "") -> str:
    return f"/v1/agents/{ref}/resolved" + (f"?{query}" if query else "")


async def test_a_second_get_is_served_from_the_cache_with_the_same_bytes_and_headers(client, conn):
    agent, a, _ = await two_variants(client)
    for ref in (agent["id"], agent["slug"]):
        async with counting(conn) as miss:
            first = await client.get(url(ref))
        assert first.status_code == 200 and len(miss) >= 1
        assert first.json()["variant_id"] == a["id"]
        for _ in range(2):
            async with counting(conn) as hit:
                second = await client.get(url(ref))
            assert len(hit) == 0, hit.sql
            assert second.status_code == 200
            assert second.content == first.content
            assert dict(second.headers) == dict(first.headers)
            for name in ("etag", "content-type", "content-length"):
                assert second.headers[name] == first.headers[name]
        assert first.headers["content-length"] == str(len(first.content))
        assert first.headers["content-type"] == "application/json"


async def test_if_none_match_on_a_hit_is_a_304_without_sql(client, conn):
    agent, _, _ = await two_variants(client)
    first = await client.get(url(agent["slug"]))
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        async with counting(conn) as hit:
            response = await client.get(url(agent["slug"]), headers={"If-None-Match": header})
        assert len(hit) == 0, hit.sql
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    # A tag that does not match gets the body, still from the cache.
    async with counting(conn) as hit:
        response = await client.get(url(agent["slug"]), headers={"If-None-Match": '"other"'})
    assert len(hit) == 0 and response.status_code == 200 and response.content == first.content


async def test_if_none_match_on_a_miss_is_answered_the_same_way(client, uncached, conn):
    agent, _, _ = await two_variants(client)
    etag = (await uncached.get(url(agent["id"]))).headers["etag"]
    async with counting(conn) as miss:
        response = await client.get(url(agent["id"]), headers={"If-None-Match": etag})
    assert len(miss) >= 1
    assert response.status_code == 304 and response.headers["etag"] == etag
    async with counting(conn) as hit:
        again = await client.get(url(agent["id"]), headers={"If-None-Match": etag})
    assert len(hit) == 0 and again.status_code == 304
    assert dict(again.headers) == dict(response.headers)


async def test_explain_is_cached_separately_from_the_plain_resolution(client, conn):
    agent, _, _ = await two_variants(client)
    plain = await client.get(url(agent["id"]))
    assert "provenance" not in plain.json()
    async with counting(conn) as miss:
        explained = await client.get(url(agent["id"], "explain=true"))
    assert len(miss) >= 1  # not served from the plain entry
    assert explained.json()["provenance"]["temperature"] == "variant"
    for query in ("explain=true", "explain=1"):
        async with counting(conn) as hit:
            again = await client.get(url(agent["id"], query))
        assert len(hit) == 0 and again.content == explained.content
    for query in ("", "explain=false", "explain=0"):
        async with counting(conn) as hit:
            again = await client.get(url(agent["id"], query))
        assert len(hit) == 0 and again.content == plain.content
        assert again.headers["etag"] == plain.headers["etag"] != explained.headers["etag"]


@pytest.mark.parametrize("kind", ["variant", "at", "variant+explain"])
async def test_previews_and_time_travel_are_never_served_from_the_cache(client, conn, kind):
    agent, a, b = await two_variants(client)
    plain = await client.get(url(agent["slug"]))
    await client.get(url(agent["slug"], "explain=true"))
    query = {
        "variant": f"variant={b['slug']}",
        "at": "at=" + datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "variant+explain": f"variant={b['id']}&explain=true",
    }[kind]
    bodies = []
    for _ in range(3):
        async with counting(conn) as statements:
            response = await client.get(url(agent["slug"], query))
        assert response.status_code == 200, response.text
        assert len(statements) >= 1, f"?{query} was served from the cache"
        bodies.append(response.json())
    if kind.startswith("variant"):
        assert bodies[0]["variant_id"] == b["id"] and bodies[0]["source"] == "preview"
    # ... and they never land in the plain entries either.
    async with counting(conn) as hit:
        again = await client.get(url(agent["slug"]))
    assert len(hit) == 0 and again.content == plain.content
    assert again.json()["variant_id"] == a["id"]


async def test_subjects_are_answered_from_their_own_entry_and_follow_experiment_changes(client, conn):
    """Since experiments exist, `?subject=` is cached as the issue asks: the running
    experiment (or the fact that none runs) and every arm's response, in an entry of its
    own; it never lands in the plain entries, and starting or stopping is seen at once."""
    agent, a, b = await two_variants(client)
    plain = await client.get(url(agent["slug"]))
    first = await client.get(url(agent["slug"], "subject=user-1"))
    assert first.status_code == 200 and first.content == plain.content  # no experiment: plain
    for _ in range(3):
        async with counting(conn) as hit:
            again = await client.get(url(agent["slug"], "subject=user-1"))
        assert len(hit) == 0 and again.content == plain.content
    experiment = (
        await client.post(
            f"/v1/agents/{agent['id']}/experiments",
            json={"name": "cache", "arms": [{"variant": a["id"], "weight": 1}, {"variant": b["id"], "weight": 1}]},
        )
    ).json()
    assert (await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/start")).status_code == 200
    async with counting(conn) as miss:
        started = (await client.get(url(agent["slug"], "subject=user-1"))).json()
    assert len(miss) >= 1 and started["source"] == "experiment" and started["experiment_id"] == experiment["id"]
    async with counting(conn) as hit:
        assert (await client.get(url(agent["slug"], "subject=user-1"))).json() == started
    assert len(hit) == 0
    # Without a subject, resolution ignores the experiment, and subjects never fill the plain entry.
    assert (await client.get(url(agent["slug"]))).json()["source"] == "variant"
    assert (await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/stop")).status_code == 200
    stopped = (await client.get(url(agent["slug"], "subject=user-1"))).json()
    assert stopped["source"] == "variant" and stopped["experiment_id"] is None


async def test_a_missing_agent_is_not_cached(client, conn):
    for _ in range(2):
        async with counting(conn) as statements:
            response = await client.get(url("no-such-agent"))
        assert_problem(response, 404, "resource_missing")
        assert len(statements) >= 1


async def test_a_cache_size_of_zero_runs_sql_on_every_get(uncached, conn):
    agent = await create_agent(uncached)
    etag = None
    for _ in range(3):
        async with counting(conn) as statements:
            response = await uncached.get(url(agent["id"]))
        assert response.status_code == 200 and len(statements) >= 1
        etag = response.headers["etag"]
    async with counting(conn) as statements:
        response = await uncached.get(url(agent["id"]), headers={"If-None-Match": etag})
    assert response.status_code == 304 and len(statements) >= 1


# ------------------------------------------------------------- read-your-writes, each write


Write = Callable[[httpx.AsyncClient, dict[str, Any], dict[str, Any], dict[str, Any]], Awaitable[httpx.Response]]


async def _restore(client, agent, a, _b):
    """Restore `a` to its state before the patch `_prepare_restore` made (and that was cached)."""
    listed = await client.get(f"/v1/agents/{agent['id']}/revisions", params={"target_id": a["id"], "limit": 100})
    assert listed.status_code == 200, listed.text
    revisions = listed.json()["data"]  # newest first
    assert revisions[0]["action"] == "update", revisions
    return await client.post(
        f"/v1/agents/{agent['id']}/variants/{a['id']}/restore", json={"revision_id": revisions[1]["id"]}
    )


async def _prepare_restore(client, agent, a, _b):
    response = await client.patch(
        f"/v1/agents/{agent['id']}/variants/{a['id']}", json={"overrides": {"temperature": 0.3}}
    )
    assert response.status_code == 200, response.text


# Run before the agent's entries are cached, so the write under test is the only change after.
PREPARE = {"restore": _prepare_restore}
WRITES: dict[str, Write] = {
    "agent patch": lambda c, agent, a, b: c.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_retries": 7}}),
    "agent slug rename": lambda c, agent, a, b: c.patch(
        f"/v1/agents/{agent['slug']}", json={"slug": unique("renamed").replace(" ", "-")}
    ),
    "variant create": lambda c, agent, a, b: c.post(
        f"/v1/agents/{agent['id']}/variants", json={"variant_name": unique("variant")}
    ),
    "variant patch": lambda c, agent, a, b: c.patch(
        f"/v1/agents/{agent['id']}/variants/{a['id']}", json={"overrides": {"prompt_version": "patched"}}
    ),
    "variant slug rename": lambda c, agent, a, b: c.patch(
        f"/v1/agents/{agent['id']}/variants/{a['id']}", json={"slug": "renamed-variant"}
    ),
    "variant delete": lambda c, agent, a, b: c.delete(f"/v1/agents/{agent['id']}/variants/{b['id']}"),
    "activate": lambda c, agent, a, b: c.post(f"/v1/agents/{agent['id']}/variants/{b['id']}/activate"),
    "deactivate": lambda c, agent, a, b: c.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/deactivate"),
    "restore": _restore,
    "undo": lambda c, agent, a, b: c.post(f"/v1/agents/{agent['id']}/undo"),
    "agent delete": lambda c, agent, a, b: c.delete(f"/v1/agents/{agent['id']}"),
}
# Writes after which the plain resolution must differ from before (the others must not).
CHANGES_RESOLUTION = {
    "agent patch",
    "agent slug rename",
    "variant patch",
    "variant slug rename",
    "activate",
    "deactivate",
    "restore",
    "undo",
    "agent delete",
}


@pytest.mark.parametrize("kind", list(WRITES))
async def test_after_each_kind_of_write_the_next_get_reflects_it(client, uncached, conn, kind):
    agent, a, b = await two_variants(client)
    if kind in PREPARE:
        await PREPARE[kind](client, agent, a, b)
    refs = [(ref, query) for ref in (agent["id"], agent["slug"]) for query in ("", "explain=true")]
    before = {}
    for ref, query in refs:  # cache every entry of the agent
        before[ref, query] = (await client.get(url(ref, query))).content
        async with counting(conn) as hit:
            assert (await client.get(url(ref, query))).content == before[ref, query]
        assert len(hit) == 0

    response = await WRITES[kind](client, agent, a, b)
    assert response.status_code in (200, 201, 204), response.text

    refs_now = list(refs)
    if kind == "agent slug rename":
        new_slug = response.json()["slug"]
        refs_now = [(new_slug if ref == agent["slug"] else ref, query) for ref, query in refs]
    for (ref, query), (old_ref, _) in zip(refs_now, refs, strict=True):
        async with counting(conn) as statements:
            got = await client.get(url(ref, query))
        assert len(statements) >= 1, f"{kind}: {ref}?{query} was served from the old entry"
        truth = await uncached.get(url(ref, query))
        assert got.status_code == truth.status_code, (kind, ref, query)
        assert got.content == truth.content, (kind, ref, query)
        if kind in CHANGES_RESOLUTION:
            assert got.content != before[old_ref, query], (kind, ref, query)
        else:
            assert got.content == before[old_ref, query], (kind, ref, query)
        if got.status_code == 200:
            assert got.headers["etag"] == truth.headers["etag"]
            resolved = await resolve_agent_config(conn, ref)
            assert got.json() == to_body(resolved, explain=query == "explain=true")

    if kind == "agent delete":
        for ref, query in refs:
            assert_problem(await client.get(url(ref, query)), 404, "resource_missing")
    if kind == "agent slug rename":
        # The old slug is gone, and a new agent taking it is what the old slug now resolves to.
        assert_problem(await client.get(url(agent["slug"])), 404, "resource_missing")
        newcomer = await create_agent(client, slug=agent["slug"])
        for query in ("", "explain=true"):
            body = (await client.get(url(agent["slug"], query))).json()
            assert body["agent_id"] == newcomer["id"]


async def test_a_failed_write_leaves_the_cached_resolution_correct(client, uncached, conn):
    agent, a, _ = await two_variants(client)
    cached = (await client.get(url(agent["id"]))).content
    response = await client.delete(f"/v1/agents/{agent['id']}/variants/{a['id']}")  # the active one
    assert response.status_code == 409, response.text
    got = await client.get(url(agent["id"]))
    assert got.content == cached == (await uncached.get(url(agent["id"]))).content


# ------------------------------------------------------- read-your-writes, random sequences

OVERRIDE_PATCHES = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.none() | st.sampled_from([0.0, 0.2, 1.5]),
        "prompt_version": st.none() | st.sampled_from(["p1", "p2", ""]),
        "max_retries": st.none() | st.integers(0, 5),
    },
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.sampled_from(["id", "slug"]), st.booleans()),
        st.tuples(st.just("activate"), st.integers(0, 2)),
        st.tuples(st.just("deactivate"), st.integers(0, 2)),
        st.tuples(st.just("patch variant"), st.integers(0, 2), OVERRIDE_PATCHES),
        st.tuples(st.just("rename variant"), st.integers(0, 2)),
        st.tuples(st.just("patch agent"), st.sampled_from(["s1", "s2", "s3"]), st.integers(0, 5)),
        st.tuples(st.just("rename agent")),
        st.tuples(st.just("create variant"), st.booleans()),
        st.tuples(st.just("delete variant"), st.integers(0, 2)),
        st.tuples(st.just("undo")),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(steps=STEPS)
async def test_random_writes_and_reads_always_read_the_uncached_truth(client, uncached, steps):
    agent = await create_agent(client, config=config(system_prompt="s0", temperature=0.5))
    variants = [await create_variant(client, agent["id"], overrides={"temperature": t}) for t in (0.1, 0.2, 0.3)]
    slug = agent["slug"]
    base = f"/v1/agents/{agent['id']}/variants"

    async def check(ref_kind: str, explain: bool) -> None:
        ref = agent["id"] if ref_kind == "id" else slug
        query = "explain=true" if explain else ""
        for _ in range(2):  # the second one is the one a stale cache would answer
            got = await client.get(url(ref, query))
            truth = await uncached.get(url(ref, query))
            assert (got.status_code, got.content) == (truth.status_code, truth.content), (steps, ref, query)
            assert got.headers.get("etag") == truth.headers.get("etag")

    for step in steps:
        name = step[0]
        if name == "read":
            await check(step[1], step[2])
            continue
        if name in ("activate", "deactivate"):
            response = await client.post(f"{base}/{variants[step[1]]['id']}/{name}")
        elif name == "patch variant":
            response = await client.patch(f"{base}/{variants[step[1]]['id']}", json={"overrides": step[2]})
        elif name == "rename variant":
            response = await client.patch(
                f"{base}/{variants[step[1]]['id']}", json={"slug": unique("v").replace(" ", "-")}
            )
        elif name == "patch agent":
            response = await client.patch(
                f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": step[1], "max_retries": step[2]}}
            )
        elif name == "rename agent":
            response = await client.patch(f"/v1/agents/{agent['id']}", json={"slug": unique("a").replace(" ", "-")})
        elif name == "create variant":
            response = await client.post(
                base, json={"variant_name": unique("variant"), "clone_from": "base" if step[1] else None}
            )
            if response.status_code == 201:
                variants.append(response.json())
        elif name == "delete variant":
            response = await client.delete(f"{base}/{variants[step[1]]['id']}")
        else:
            response = await client.post(f"/v1/agents/{agent['id']}/undo")
        assert response.status_code in (200, 201, 204, 404, 409), (step, response.text)
        statistic(f"{name}: {response.status_code}")  # shown by --hypothesis-show-statistics
        # The slug may have changed (a rename, or an undo of one): follow it as a client would.
        current = await uncached.get(f"/v1/agents/{agent['id']}")
        assert current.status_code == 200, current.text
        slug = current.json()["slug"]
        # Every read right after a write is checked, by id and by slug, with and without explain.
        for ref_kind in ("id", "slug"):
            for explain in (False, True):
                await check(ref_kind, explain)


def test_a_change_in_one_environment_drops_that_environments_entries_only() -> None:
    """Contract 1.1 and issue 18: a change in one environment never serves stale data in
    another, and never invalidates more than it must. Entries are keyed by the environment
    as requests named it (id or slug); a change names both."""
    cache = ResolveCache(max_entries=100, ttl_seconds=60, trusted=True)
    for environment in (PROD, "production", "env_1", "staging"):
        cache.put("a", environment, False, "agt_a", b"{}", '"e"', generation=cache.generation)
    cache.put("b", "staging", False, "agt_b", b"{}", '"e"', generation=cache.generation)
    cache.invalidate({resolution_change("agt_a", ("env_1", "staging"))})
    assert [cache.get("a", env, False) is not None for env in (PROD, "production", "env_1", "staging")] == [
        True,
        True,
        False,
        False,
    ]
    assert cache.get("b", "staging", False) is not None  # another agent's
    cache.invalidate({resolution_change("agt_a")})  # a shared definition: every environment
    assert all(cache.get("a", env, False) is None for env in (PROD, "production"))
    assert parse_changes({"agt_a env_1 staging", "agt_a"}) == {"agt_a": None}
    assert parse_changes({"agt_a env_1 staging", "agt_a env_2 qa"}) == {
        "agt_a": frozenset({"env_1", "staging", "env_2", "qa"})
    }


async def test_an_activation_in_staging_leaves_productions_cached_answer(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/environments", json={"name": unique("Staging")})
    assert created.status_code == 201, created.text
    staging = created.json()
    agent = await create_agent(client)
    variant = (await client.post(f"/v1/agents/{agent['id']}/variants", json={"variant_name": "v"})).json()
    path = f"/v1/agents/{agent['slug']}/resolved"
    production_before = await client.get(path)
    staging_before = await client.get(path, params={"environment": staging["slug"]})
    cache = app_of(client).state.resolve_cache
    assert cache.get(agent["slug"], PROD, False) is not None
    assert cache.get(agent["slug"], staging["slug"], False) is not None
    activated = await client.post(
        f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate", params={"environment": staging["slug"]}
    )
    assert activated.status_code == 200
    assert cache.get(agent["slug"], PROD, False) is not None  # untouched: production did not change
    assert cache.get(agent["slug"], staging["slug"], False) is None
    staging_after = (await client.get(path, params={"environment": staging["slug"]})).json()
    assert (staging_before.json()["variant_id"], staging_after["variant_id"]) == (None, variant["id"])
    assert (await client.get(path)).content == production_before.content
