"""Races with real commits: single-active activation, slug collisions, activate vs delete.

These run on the live database (`live_client`), so every request commits and other
connections see it. Each test makes agents of its own and deletes them at the end.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID as PROD
from tests.helpers import create_agent, create_variant, unique

pytestmark = pytest.mark.live

# The live Database pool holds 20 + 20 connections; one request per connection.
RACERS = 40

# Two active variants of one agent in one environment, as a reader sees the tables: the
# activation rows, and the variants they name (a torn state would show a variant twice).
TWO_ACTIVE = text(
    "SELECT a.environment_id, count(DISTINCT v.id) FROM activations a JOIN variants v ON v.id = a.variant_id"
    " WHERE a.agent_id = :agent GROUP BY a.environment_id HAVING count(DISTINCT v.id) > 1"
    " OR count(*) > 1"
)


@asynccontextmanager
async def own_connection(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection outside the app's pool, in autocommit: each query sees the latest commits."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


@asynccontextmanager
async def agents_deleted(client: httpx.AsyncClient) -> AsyncIterator[list[str]]:
    """Collects agent ids; deletes them all on the way out, whatever the test did."""
    created: list[str] = []
    try:
        yield created
    finally:
        for agent_id in created:
            response = await client.delete(f"/v1/agents/{agent_id}")
            assert response.status_code in (204, 404), response.text


async def watch_single_active(url: str, agent_id: str, stop: asyncio.Event) -> tuple[int, list[tuple[str, int]]]:
    """Poll for two active variants of the agent until `stop`; (polls made, violations)."""
    polls, violations = 0, []
    async with own_connection(url) as conn:
        while True:
            done = stop.is_set()  # read before the query, so the last poll follows the storm
            rows = (await conn.execute(TWO_ACTIVE, {"agent": agent_id})).all()
            polls += 1
            violations += [tuple(row) for row in rows]
            if done:
                return polls, violations


async def storm_with_observer(
    url: str, agent_id: str, requests: list[Callable[[], Awaitable[httpx.Response]]]
) -> tuple[list[httpx.Response], int]:
    """Fire `requests` at once while an observer watches the single-active rule."""
    stop = asyncio.Event()
    observer = asyncio.create_task(watch_single_active(url, agent_id, stop))
    await asyncio.sleep(0)  # let the observer connect and start polling
    try:
        responses = await asyncio.gather(*(request() for request in requests))
    finally:
        stop.set()
        polls, violations = await observer
    assert violations == [], f"two variants active at once: {violations}"
    return list(responses), polls


async def active_ids(conn: AsyncConnection, agent_id: str, environment_id: str = PROD) -> list[str]:
    rows = await conn.scalars(
        text("SELECT variant_id FROM activations WHERE agent_id = :agent AND environment_id = :environment"),
        {"agent": agent_id, "environment": environment_id},
    )
    return list(rows)


async def test_simultaneous_activations_leave_exactly_one_active(live_client: httpx.AsyncClient, live_url: str) -> None:
    async with agents_deleted(live_client) as created:
        agent = await create_agent(live_client)
        created.append(agent["id"])
        variants = [await create_variant(live_client, agent["id"]) for _ in range(RACERS)]
        ids = {v["id"] for v in variants}
        # Start with one active, so every activation has an old one to deactivate.
        first = await live_client.post(f"/v1/agents/{agent['id']}/variants/{variants[0]['id']}/activate")
        assert first.status_code == 200, first.text

        for round_ in range(3):
            order = variants if round_ % 2 == 0 else variants[::-1]
            requests = [
                (lambda v=v: live_client.post(f"/v1/agents/{agent['id']}/variants/{v['slug']}/activate")) for v in order
            ]
            responses, polls = await storm_with_observer(live_url, agent["id"], requests)

            assert [r.status_code for r in responses] == [200] * len(requests), [
                r.text for r in responses if r.status_code != 200
            ]
            for response, variant in zip(responses, order, strict=True):
                body = response.json()
                assert body["id"] == variant["id"]
                assert body["is_active"] is True  # it was active when its transaction committed
            assert polls >= 2  # the observer really looked during the storm

            async with own_connection(live_url) as conn:
                active = await active_ids(conn, agent["id"])
            assert len(active) == 1 and active[0] in ids
            reported = (await live_client.get(f"/v1/agents/{agent['id']}")).json()
            assert reported["active_variant_id"] == active[0]
            resolved = (await live_client.get(f"/v1/agents/{agent['id']}/resolved")).json()
            assert resolved["variant_id"] == active[0]
            listed = (
                await live_client.get(f"/v1/agents/{agent['id']}/variants", params={"is_active": "true", "limit": 100})
            ).json()
            assert [v["id"] for v in listed["data"]] == active


async def test_simultaneous_activations_in_two_environments_leave_one_active_in_each(
    live_client: httpx.AsyncClient, live_url: str
) -> None:
    """Contract 1.1: at most one active variant per agent per environment. Activations race in
    production and staging at once, the same variants in both; an observer never sees two
    active in one environment, and each ends with exactly one, which the API, the resolution
    and the list agree on, and which the other environment's storm did not disturb."""
    staging = await live_client.post("/v1/environments", json={"name": unique("Staging")})
    assert staging.status_code == 201, staging.text
    env = staging.json()
    async with agents_deleted(live_client) as created:
        agent = await create_agent(live_client)
        created.append(agent["id"])
        variants = [await create_variant(live_client, agent["id"]) for _ in range(RACERS // 2)]
        ids = {v["id"] for v in variants}

        def activate(variant: dict[str, Any], environment: str) -> Callable[[], Awaitable[httpx.Response]]:
            path = f"/v1/agents/{agent['id']}/variants/{variant['slug']}/activate"
            return lambda: live_client.post(path, params={"environment": environment})

        requests = [activate(v, "production") for v in variants] + [activate(v, env["slug"]) for v in variants[::-1]]
        responses, polls = await storm_with_observer(live_url, agent["id"], requests)
        assert [r.status_code for r in responses] == [200] * len(requests), [r.text for r in responses]
        assert polls >= 2
        assert all(r.json()["is_active"] is True for r in responses)

        async with own_connection(live_url) as conn:
            active = {
                name: await active_ids(conn, agent["id"], env_id)
                for name, env_id in (("production", PROD), (env["slug"], env["id"]))
            }
        assert all(len(found) == 1 and found[0] in ids for found in active.values()), active
        shown = (await live_client.get(f"/v1/agents/{agent['id']}")).json()
        assert shown["active_variants"] == {name: found[0] for name, found in active.items()}
        for name, found in active.items():
            params = {"environment": name}
            assert (await live_client.get(f"/v1/agents/{agent['id']}", params=params)).json()[
                "active_variant_id"
            ] == found[0]
            resolved = (await live_client.get(f"/v1/agents/{agent['id']}/resolved", params=params)).json()
            assert (resolved["variant_id"], resolved["environment"]) == (found[0], name)
            listed = await live_client.get(
                f"/v1/agents/{agent['id']}/variants", params={**params, "is_active": "true", "limit": 100}
            )
            assert [v["id"] for v in listed.json()["data"]] == found
        # A deactivation in one environment leaves the other's activation alone.
        production_active = active["production"][0]
        off = await live_client.post(
            f"/v1/agents/{agent['id']}/variants/{active[env['slug']][0]}/deactivate",
            params={"environment": env["slug"]},
        )
        assert off.status_code == 200 and off.json()["is_active"] is False
        async with own_connection(live_url) as conn:
            assert await active_ids(conn, agent["id"], env["id"]) == []
            assert await active_ids(conn, agent["id"]) == [production_active]


async def test_database_itself_refuses_a_second_active_variant(live_client: httpx.AsyncClient, live_url: str) -> None:
    """The activations' primary key (agent, environment), not only the service's lock,
    enforces the rule."""
    async with agents_deleted(live_client) as created:
        agent = await create_agent(live_client)
        created.append(agent["id"])
        one = await create_variant(live_client, agent["id"])
        two = await create_variant(live_client, agent["id"])
        assert (await live_client.post(f"/v1/agents/{agent['id']}/variants/{one['id']}/activate")).status_code == 200
        async with own_connection(live_url) as conn:
            with pytest.raises(IntegrityError) as raised:
                await conn.execute(
                    text(
                        "INSERT INTO activations (agent_id, environment_id, variant_id, activated_at)"
                        " VALUES (:agent, :environment, :variant, now())"
                    ),
                    {"agent": agent["id"], "environment": PROD, "variant": two["id"]},
                )
            assert "pk_activations" in str(raised.value)
            assert await active_ids(conn, agent["id"]) == [one["id"]]


async def test_racing_creates_with_the_same_derived_agent_slug_get_suffixes(
    live_client: httpx.AsyncClient,
) -> None:
    name = unique("Racing Agent")
    stem = name.lower().replace(" ", "-")
    racers = 10
    async with agents_deleted(live_client) as created:
        responses = await asyncio.gather(
            *(
                live_client.post(
                    "/v1/agents", json={"name": name, "config": {"model_provider": "p", "model_name": "m"}}
                )
                for _ in range(racers)
            )
        )
        created += [r.json()["id"] for r in responses if r.status_code == 201]
        assert [r.status_code for r in responses] == [201] * racers, [r.text for r in responses]
        slugs = sorted(r.json()["slug"] for r in responses)
        assert sorted(slugs) == sorted([stem] + [f"{stem}-{n}" for n in range(2, racers + 1)])
        for response in responses:  # each reply names what was stored
            stored = (await live_client.get(f"/v1/agents/{response.json()['slug']}")).json()
            assert stored["id"] == response.json()["id"]


async def test_racing_creates_with_the_same_derived_variant_slug_get_suffixes(
    live_client: httpx.AsyncClient,
) -> None:
    racers = 10
    async with agents_deleted(live_client) as created:
        agents = [await create_agent(live_client) for _ in range(2)]
        created += [a["id"] for a in agents]
        # The same name in two agents at once: suffixes count within each agent.
        responses = await asyncio.gather(
            *(
                live_client.post(f"/v1/agents/{agent['id']}/variants", json={"variant_name": "Shadow Prompt"})
                for _ in range(racers)
                for agent in agents
            )
        )
        assert [r.status_code for r in responses] == [201] * len(responses), [r.text for r in responses]
        expected = sorted(["shadow-prompt"] + [f"shadow-prompt-{n}" for n in range(2, racers + 1)])
        for agent in agents:
            slugs = sorted(r.json()["slug"] for r in responses if r.json()["agent_id"] == agent["id"])
            assert slugs == expected
            reported = (await live_client.get(f"/v1/agents/{agent['id']}")).json()
            assert reported["variant_count"] == racers


async def test_racing_creates_with_the_same_explicit_agent_slug_one_wins(
    live_client: httpx.AsyncClient,
) -> None:
    slug = unique("explicit").replace(" ", "-")
    racers = 10
    async with agents_deleted(live_client) as created:
        responses = await asyncio.gather(
            *(
                live_client.post(
                    "/v1/agents",
                    json={
                        "name": f"Racer {n}",
                        "slug": slug,
                        "config": {"model_provider": "p", "model_name": "m"},
                    },
                )
                for n in range(racers)
            )
        )
        created += [r.json()["id"] for r in responses if r.status_code == 201]
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: racers - 1}, [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["code"] == "slug_taken"
        winner = next(r.json() for r in responses if r.status_code == 201)
        stored = (await live_client.get(f"/v1/agents/{slug}")).json()
        assert stored["id"] == winner["id"] and stored["name"] == winner["name"]


async def test_racing_creates_with_the_same_explicit_variant_slug_one_wins(
    live_client: httpx.AsyncClient,
) -> None:
    racers = 10
    async with agents_deleted(live_client) as created:
        agent = await create_agent(live_client)
        created.append(agent["id"])
        responses = await asyncio.gather(
            *(
                live_client.post(
                    f"/v1/agents/{agent['id']}/variants", json={"variant_name": f"Racer {n}", "slug": "contested"}
                )
                for n in range(racers)
            )
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: racers - 1}, [r.text for r in responses]
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slug_taken"}
        listed = (await live_client.get(f"/v1/agents/{agent['id']}/variants", params={"limit": 100})).json()
        assert [v["slug"] for v in listed["data"]] == ["contested"]


async def test_activate_racing_delete_of_the_previously_active_variant(
    live_client: httpx.AsyncClient, live_url: str
) -> None:
    """Activate B while deleting A (active until then): delete is 204 only if it ran after
    the activation, else 409 variant_active; never a 500, never a torn state."""
    pairs = 12
    async with agents_deleted(live_client) as created:
        agents = [await create_agent(live_client) for _ in range(pairs)]
        created += [a["id"] for a in agents]
        setups = []
        for agent in agents:
            old = await create_variant(live_client, agent["id"])
            new = await create_variant(live_client, agent["id"])
            response = await live_client.post(f"/v1/agents/{agent['id']}/variants/{old['id']}/activate")
            assert response.status_code == 200
            setups.append((agent, old, new))

        for round_ in range(2):
            requests = []
            for agent, old, new in setups:
                activate = f"/v1/agents/{agent['id']}/variants/{new['id']}/activate"
                delete = f"/v1/agents/{agent['id']}/variants/{old['id']}"
                # Alternate which request is sent first.
                pair = [lambda a=activate: live_client.post(a), lambda d=delete: live_client.delete(d)]
                requests += pair if round_ == 0 else pair[::-1]
            responses = await asyncio.gather(*(request() for request in requests))
            assert all(r.status_code < 500 for r in responses), [r.text for r in responses if r.status_code >= 500]

            async with own_connection(live_url) as conn:
                for agent, old, new in setups:
                    by_path = {r.request.url.path: r for r in responses}
                    activated = by_path[f"/v1/agents/{agent['id']}/variants/{new['id']}/activate"]
                    deleted = by_path[f"/v1/agents/{agent['id']}/variants/{old['id']}"]
                    assert activated.status_code == 200, activated.text
                    assert activated.json()["is_active"] is True
                    # Round 2 deletes what round 1 may already have deleted.
                    allowed = {204, 409} if round_ == 0 else {204, 404, 409}
                    assert deleted.status_code in allowed, deleted.text
                    if deleted.status_code == 409:
                        assert deleted.json()["code"] == "variant_active"
                    old_exists = await conn.scalar(
                        text("SELECT count(*) FROM variants WHERE id = :id"), {"id": old["id"]}
                    )
                    assert old_exists == (0 if deleted.status_code in (204, 404) else 1)
                    assert await active_ids(conn, agent["id"]) == [new["id"]]
                    reported = (await live_client.get(f"/v1/agents/{agent['id']}")).json()
                    assert reported["active_variant_id"] == new["id"]
                    assert reported["variant_count"] == 1 + old_exists


async def test_activation_storm_mixed_with_deletes_and_deactivations(
    live_client: httpx.AsyncClient, live_url: str
) -> None:
    """Activations, deactivations and deletes of one agent's variants, all at once."""
    async with agents_deleted(live_client) as created:
        agent = await create_agent(live_client)
        created.append(agent["id"])
        variants = [await create_variant(live_client, agent["id"]) for _ in range(12)]
        base = f"/v1/agents/{agent['id']}/variants"
        requests: list[Callable[[], Awaitable[httpx.Response]]] = []
        for n, variant in enumerate(variants):
            requests.append(lambda v=variant: live_client.post(f"{base}/{v['id']}/activate"))
            if n % 3 == 0:
                requests.append(lambda v=variant: live_client.delete(f"{base}/{v['id']}"))
            if n % 3 == 1:
                requests.append(lambda v=variant: live_client.post(f"{base}/{v['id']}/deactivate"))
        responses, _ = await storm_with_observer(live_url, agent["id"], requests)

        for response in responses:
            method, path = response.request.method, response.request.url.path
            if path.endswith("/activate"):
                # The variant may have been deleted just before: 404, never 500.
                assert response.status_code in (200, 404), response.text
            elif path.endswith("/deactivate"):
                assert response.status_code == 200, response.text
            else:
                assert method == "DELETE"
                assert response.status_code in (204, 409), response.text
            if response.status_code >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
        async with own_connection(live_url) as conn:
            active = await active_ids(conn, agent["id"])
            remaining = set(
                await conn.scalars(text("SELECT id FROM variants WHERE agent_id = :agent"), {"agent": agent["id"]})
            )
        assert len(active) <= 1 and set(active) <= remaining
        reported = (await live_client.get(f"/v1/agents/{agent['id']}")).json()
        assert reported["active_variant_id"] == (active[0] if active else None)
        assert reported["variant_count"] == len(remaining)
        deleted = {
            r.request.url.path.rsplit("/", 1)[1]
            for r in responses
            if r.request.method == "DELETE" and r.status_code == 204
        }
        assert deleted.isdisjoint(remaining)
