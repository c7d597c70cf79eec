"""API keys bound to an environment (contract 1.1, "Environments"): creating and listing
them; the environment of their requests (theirs by default, their own named by slug or id,
any other 403 `environment_forbidden`); the access matrix again with bound keys; the keys a
bound key manages; environment writes; an environment a live key is bound to is in use;
the last unbound admin key.

The tests run in-process on the rolled-back database (`client` is an unbound admin key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.api.access.keyring import KeyRing
from services.api.db import Database
from services.api.exceptions import EnvironmentForbidden
from services.api.keys import repository, tokens
from services.api.principal import Principal, request_environment
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id
from tests.api.test_access_matrix import (
    ADMIN,
    EXPECTED,
    OPEN,
    RANK,
    SCOPES,
    World,
    app_routes,
    opened_world,
    send,
)
from tests.helpers import TEST_KEY_NAME, assert_problem, bearer, create_agent, problem_params, unique

E = "/v1/environments"


async def create_environment(client: httpx.AsyncClient, slug: str) -> dict[str, Any]:
    response = await client.post(E, json={"name": slug.title(), "slug": slug})
    assert response.status_code == 201, response.text
    return response.json()


async def create_key(client: httpx.AsyncClient, scope: str = "read", **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/keys", json={"name": unique("key").replace(" ", "-"), "scope": scope, **body})
    assert response.status_code == 201, response.text
    return response.json()


def as_key(client: httpx.AsyncClient, key: dict[str, Any]) -> httpx.AsyncClient:
    """A client on the same app that sends this key."""
    return httpx.AsyncClient(transport=client._transport, base_url="http://test", headers=bearer(key["secret"]))


def assert_forbidden(response: httpx.Response, key: dict[str, Any], *, param: bool = True) -> None:
    """403 `environment_forbidden` naming the key and its environment (and `param`
    `environment` when the request named one)."""
    body = assert_problem(response, 403, "environment_forbidden")
    assert key["name"] in body["detail"] and f"'{key['environment']}'" in body["detail"], body["detail"]
    assert problem_params(response) == ({"environment"} if param else set())


@pytest.fixture
async def staging(client: httpx.AsyncClient) -> dict[str, Any]:
    return await create_environment(client, "staging")


# --- creating and listing bound keys ---------------------------------------------------------


async def test_a_key_is_bound_by_slug_or_id_and_shows_its_environment(
    client: httpx.AsyncClient, staging: dict[str, Any]
) -> None:
    by_slug = await create_key(client, environment="staging")
    by_id = await create_key(client, environment=staging["id"])
    unbound = await create_key(client)
    nulled = await create_key(client, environment=None)
    assert (by_slug["environment"], by_id["environment"]) == ("staging", "staging")
    assert unbound["environment"] is None and nulled["environment"] is None
    listed = {key["id"]: key for key in (await client.get("/v1/keys", params={"limit": 100})).json()["data"]}
    for key in (by_slug, by_id, unbound, nulled):
        assert listed[key["id"]] == {**key, "secret": None}
        assert (await client.get(f"/v1/keys/{key['name']}")).json() == {**key, "secret": None}
    assert listed[next(k for k in listed if listed[k]["name"] == TEST_KEY_NAME)]["environment"] is None


@pytest.mark.parametrize("ref", ["nowhere", "env_01JDQ5Z3B8C4D5E6F7G8H9J0KM", "Not A Slug"])
async def test_an_unknown_environment_at_creation_is_404_naming_environment(
    client: httpx.AsyncClient, ref: str
) -> None:
    name = unique("key").replace(" ", "-")
    response = await client.post("/v1/keys", json={"name": name, "scope": "read", "environment": ref})
    body = assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"environment"}
    assert ref in body["detail"]
    assert (await client.get(f"/v1/keys/{name}")).status_code == 404  # nothing was made


async def test_the_key_ring_holds_the_environment_on_both_paths(
    client: httpx.AsyncClient, db: Database, staging: dict[str, Any]
) -> None:
    """From memory (the ring's load) and from the database (the ring not listening)."""
    key = await create_key(client, environment="staging")
    for listening in (True, False):
        ring = KeyRing(lambda: db, listening=listening)
        principal = await ring.verify(key["secret"].encode())
        assert (principal.environment_id, principal.environment_slug) == (staging["id"], "staging"), listening
        assert principal.bound
    unbound = await KeyRing(lambda: db, listening=True).verify((await create_key(client))["secret"].encode())
    assert (unbound.environment_id, unbound.environment_slug, unbound.bound) == (None, None, False)


# --- the environment of a request --------------------------------------------------------------


def principal(environment_id: str | None = None, slug: str | None = None) -> Principal:
    return Principal(
        id=new_id("api_key"),
        name="staging-ci",
        scope="read",
        rank=1,
        digest=b"\0" * 32,
        expires_at=None,
        revoked_at=None,
        environment_id=environment_id,
        environment_slug=slug,
    )


def test_request_environment() -> None:
    staging_id = new_id("environment")
    bound, unbound = principal(staging_id, "staging"), principal()
    assert request_environment(None, None) == PRODUCTION_ENVIRONMENT_ID  # auth off
    assert request_environment(None, "anything") == "anything"
    assert request_environment(unbound, None) == PRODUCTION_ENVIRONMENT_ID
    assert request_environment(unbound, "staging") == "staging"
    assert request_environment(bound, None) == staging_id
    assert request_environment(bound, "staging") == staging_id
    assert request_environment(bound, staging_id) == staging_id
    for other in ("production", PRODUCTION_ENVIRONMENT_ID, "nowhere", "Staging"):
        with pytest.raises(EnvironmentForbidden) as refused:
            request_environment(bound, other)
        assert "staging-ci" in refused.value.detail and "'staging'" in refused.value.detail
        assert [error.param for error in refused.value.errors or []] == ["environment"]


async def test_a_bound_key_works_in_its_environment_by_default_and_by_name(
    client: httpx.AsyncClient, staging: dict[str, Any]
) -> None:
    agent = await create_agent(client)
    rules = f"/v1/agents/{agent['slug']}/rules"
    reader = await create_key(client, environment="staging")
    async with as_key(client, reader) as bound:
        for query in ({}, {"environment": "staging"}, {"environment": staging["id"]}):
            response = await bound.get(rules, params=query)
            assert response.status_code == 200, (query, response.text)
            assert response.json()["environment"] == "staging", query
    # An unbound key's default stays production.
    assert (await client.get(rules)).json()["environment"] == "production"


@pytest.mark.parametrize("other", ["production", PRODUCTION_ENVIRONMENT_ID, "qa", "nowhere"])
async def test_a_bound_key_naming_another_environment_is_403(
    client: httpx.AsyncClient, staging: dict[str, Any], other: str
) -> None:
    """Another environment, by slug or id, and one that does not exist alike (the check
    comes before the lookup); writes change nothing."""
    await create_environment(client, "qa")
    agent = await create_agent(client)
    rules = f"/v1/agents/{agent['slug']}/rules"
    writer = await create_key(client, scope="write", environment="staging")
    async with as_key(client, writer) as bound:
        assert_forbidden(await bound.get(rules, params={"environment": other}), writer)
        put = await bound.put(rules, params={"environment": other}, json={"rules": []})
        assert_forbidden(put, writer)
    production = (await client.get(rules, params={"environment": "production"})).json()
    assert production["version"] == 0


# --- the access matrix, with bound keys --------------------------------------------------------

BOUND = {scope: f"bound {scope}" for scope in SCOPES}
# Environment writes, and the model catalog's (shared by every environment): unbound keys only.
ENVIRONMENT_WRITES = {
    (method, path) for method, path in EXPECTED if path.startswith((E, "/v1/models")) and method != "GET"
}


@pytest.fixture
async def bound_world(db: Database) -> AsyncIterator[World]:
    """The access matrix's world, plus a key of each scope bound to `matrix-staging`."""
    async with opened_world(db) as world:
        admin = httpx.AsyncClient(transport=world.http._transport, base_url="http://test", headers=world.headers[ADMIN])
        async with admin:
            await create_environment(admin, "matrix-staging")
            for scope in SCOPES:
                key = await create_key(admin, scope=scope, environment="matrix-staging")
                world.headers[BOUND[scope]] = bearer(key["secret"])
        yield world


@pytest.mark.parametrize("scope", SCOPES)
async def test_access_matrix_for_bound_keys(bound_world: World, scope: str) -> None:
    """A bound key gets what an unbound key of its scope gets, except: environment writes are
    403 `environment_forbidden` (whatever its scope), a key bound elsewhere (or to none) is
    404 to it, and so is an experiment of another environment. Its per-environment reads
    answer for its own environment."""
    world, credential = bound_world, BOUND[scope]
    failures = []
    for method, template in app_routes(world.app):
        needed = EXPECTED[(method, template)]
        response = await send(world, method, template, credential)
        where = f"{method} {template} with a key of scope {scope} bound to matrix-staging"
        if needed is not OPEN and RANK[scope] < RANK[needed]:
            expected = (403, "insufficient_scope")
        elif (method, template) in ENVIRONMENT_WRITES:
            expected = (403, "environment_forbidden")
        elif (method, template) == ("GET", "/v1/keys/{key}"):  # `matrix-read`, an unbound key
            expected = (404, "resource_missing")
        elif method == "GET" and (
            template.startswith("/v1/agents/{agent}/experiments/{experiment}")
            or template == "/v1/agents/{agent}/revisions/{revision}"
        ):
            # The world's experiment runs in production, and its newest revision (the
            # experiment's creation) was made there: per-environment data another
            # environment's key does not see.
            expected = (404, "resource_missing")
        else:
            baseline = await send(world, method, template, ADMIN)
            # (A console form refused for its missing CSRF token is a 403 for every credential alike.)
            refused = response.status_code == 401 or (
                response.status_code == 403 and not template.startswith("/console")
            )
            if refused or response.status_code != baseline.status_code:
                failures.append(f"{where}: {response.status_code}, the admin key got {baseline.status_code}")
            continue
        try:
            assert_problem(response, *expected)
        except AssertionError as error:
            failures.append(f"{where}: expected {expected}, got {response.status_code}: {error}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("scope", [scope for scope in SCOPES if scope != "resolve"])
async def test_the_matrix_per_environment_route_answers_for_the_keys_environment(
    bound_world: World, scope: str
) -> None:
    """GET .../rules (a per-environment route): the key's own environment without
    `?environment=` or when naming it, 403 when naming another."""
    world, headers = bound_world, bound_world.headers[BOUND[scope]]
    path = f"/v1/agents/{world.read_params['agent']}/rules"
    for query in ({}, {"environment": "matrix-staging"}):
        response = await world.http.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["environment"] == "matrix-staging"
    for other in ("production", PRODUCTION_ENVIRONMENT_ID):
        response = await world.http.get(path, params={"environment": other}, headers=headers)
        assert_problem(response, 403, "environment_forbidden")
        assert problem_params(response) == {"environment"}
    unbound = await world.http.get(path, params={"environment": "matrix-staging"}, headers=world.headers[ADMIN])
    assert unbound.status_code == 200 and unbound.json()["environment"] == "matrix-staging"


# --- the keys a bound key manages ----------------------------------------------------------------


async def test_a_bound_admin_key_creates_keys_in_its_environment_only(
    client: httpx.AsyncClient, staging: dict[str, Any]
) -> None:
    await create_environment(client, "qa")
    admin = await create_key(client, scope="admin", environment="staging")
    async with as_key(client, admin) as bound:
        # Naming none: its own environment (the default of every request of a bound key).
        for body in ({}, {"environment": None}, {"environment": "staging"}, {"environment": staging["id"]}):
            response = await bound.post(
                "/v1/keys", json={"name": unique("key").replace(" ", "-"), "scope": "admin", **body}
            )
            assert response.status_code == 201, (body, response.text)
            assert response.json()["environment"] == "staging"
        for other in ("production", PRODUCTION_ENVIRONMENT_ID, "qa", "nowhere"):
            name = unique("key").replace(" ", "-")
            response = await bound.post("/v1/keys", json={"name": name, "scope": "read", "environment": other})
            assert_forbidden(response, admin)
            assert (await client.get(f"/v1/keys/{name}")).status_code == 404  # nothing was made


async def test_a_bound_admin_key_sees_and_revokes_only_its_environments_keys(
    client: httpx.AsyncClient, staging: dict[str, Any]
) -> None:
    await create_environment(client, "qa")
    admin = await create_key(client, scope="admin", environment="staging")
    mine = await create_key(client, environment="staging")
    elsewhere = await create_key(client, environment="qa")
    unbound = await create_key(client)
    async with as_key(client, admin) as bound:
        listed = (await bound.get("/v1/keys", params={"limit": 100})).json()["data"]
        assert {key["id"] for key in listed} == {admin["id"], mine["id"]}
        assert all(key["environment"] == "staging" for key in listed)
        assert (await bound.get(f"/v1/keys/{mine['name']}")).status_code == 200
        # Keys bound elsewhere or to none are absent to it: 404, as unknown ones, by name or id.
        for other in (elsewhere, unbound, {"name": TEST_KEY_NAME, "id": TEST_KEY_NAME}):
            for ref in (other["name"], other["id"]):
                assert_problem(await bound.get(f"/v1/keys/{ref}"), 404, "resource_missing")
                assert_problem(await bound.delete(f"/v1/keys/{ref}"), 404, "resource_missing")
        assert (await bound.delete(f"/v1/keys/{mine['id']}")).status_code == 204
    for other in (elsewhere, unbound):  # still live, still working
        assert (await client.get(f"/v1/keys/{other['id']}")).json()["revoked_at"] is None
        async with as_key(client, other) as still:
            assert (await still.get("/v1/agents")).status_code == 200
    assert (await client.get(f"/v1/keys/{mine['id']}")).json()["revoked_at"] is not None
    async with as_key(client, mine) as gone:
        assert_problem(await gone.get("/v1/agents"), 401, "unauthorized")


async def test_a_bound_admin_key_pages_through_its_keys_only(
    client: httpx.AsyncClient, staging: dict[str, Any]
) -> None:
    admin = await create_key(client, scope="admin", environment="staging")
    made = [await create_key(client, environment="staging") for _ in range(3)]
    for _ in range(3):
        await create_key(client)  # unbound, interleaved in id order with nothing of staging's
    async with as_key(client, admin) as bound:
        seen, after = [], None
        while True:
            page = (await bound.get("/v1/keys", params={"limit": 2, **({"after": after} if after else {})})).json()
            seen += [key["id"] for key in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
    assert seen == sorted([admin["id"], *(key["id"] for key in made)], reverse=True)


# --- the last admin key ----------------------------------------------------------------------------


async def test_bound_admin_keys_do_not_count_as_the_last_admin_key(
    client: httpx.AsyncClient, staging: dict[str, Any]
) -> None:
    """The test's own key is the only unbound admin key: with bound admin keys about, it
    still cannot be revoked; each bound admin key can, even the last one of its environment."""
    first = await create_key(client, scope="admin", environment="staging")
    second = await create_key(client, scope="admin", environment="staging")
    body = assert_problem(await client.delete(f"/v1/keys/{TEST_KEY_NAME}"), 409, "last_admin_key")
    assert TEST_KEY_NAME in body["detail"]
    async with as_key(client, first) as bound:
        assert (await bound.delete(f"/v1/keys/{second['id']}")).status_code == 204
        assert (await bound.delete(f"/v1/keys/{first['id']}")).status_code == 204  # itself, the last bound one
    assert_problem(await client.delete(f"/v1/keys/{TEST_KEY_NAME}"), 409, "last_admin_key")
    other = await create_key(client, scope="admin")
    assert (await client.delete(f"/v1/keys/{TEST_KEY_NAME}")).status_code == 204
    async with as_key(client, other) as unbound:
        assert_problem(await unbound.delete(f"/v1/keys/{other['id']}"), 409, "last_admin_key")


# --- environments ----------------------------------------------------------------------------------


async def test_a_bound_admin_key_cannot_write_environments(client: httpx.AsyncClient, staging: dict[str, Any]) -> None:
    admin = await create_key(client, scope="admin", environment="staging")
    before = (await client.get(E, params={"limit": 100})).json()
    async with as_key(client, admin) as bound:
        assert_forbidden(await bound.post(E, json={"name": "Rogue"}), admin, param=False)
        assert_forbidden(await bound.post(E, json={}), admin, param=False)  # before the body is checked
        for ref in ("staging", staging["id"], "production", "nowhere"):
            assert_forbidden(await bound.patch(f"{E}/{ref}", json={"name": "Renamed"}), admin, param=False)
            assert_forbidden(await bound.delete(f"{E}/{ref}"), admin, param=False)
        # Reading them is fine.
        assert (await bound.get(E, params={"limit": 100})).json() == before
        assert (await bound.get(f"{E}/staging")).status_code == 200
    assert (await client.get(E, params={"limit": 100})).json() == before


async def test_an_environment_a_live_key_is_bound_to_is_in_use(client: httpx.AsyncClient, db: Database) -> None:
    environment = await create_environment(client, "review")
    key = await create_key(client, environment="review")
    body = assert_problem(await client.delete(f"{E}/review"), 409, "environment_in_use")
    assert "review" in body["detail"] and "key" in body["detail"]
    assert (await client.get(f"{E}/review")).status_code == 200

    # An expired key does not count (KeyCreate refuses past expiries: straight to the repository).
    async def expired(conn: Any) -> None:
        await repository.insert_one(
            conn,
            id=new_id("api_key"),
            name=unique("lapsed").replace(" ", "-"),
            scope="read",
            secret_hash=tokens.digest(tokens.new_secret()),
            expires_at=datetime.now(UTC) - timedelta(hours=1),
            environment_id=environment["id"],
        )

    await db.transaction(expired)
    assert_problem(await client.delete(f"{E}/review"), 409, "environment_in_use")  # the live one still counts
    assert (await client.delete(f"/v1/keys/{key['id']}")).status_code == 204
    assert (await client.delete(f"{E}/review")).status_code == 204
    assert (await client.get(f"{E}/review")).status_code == 404
    # The revoked key stays, unbound now that its environment is gone; it still does not work.
    gone = (await client.get(f"/v1/keys/{key['id']}")).json()
    assert gone["revoked_at"] is not None and gone["environment"] is None
    async with as_key(client, key) as revoked:
        assert_problem(await revoked.get("/v1/agents"), 401, "unauthorized")
