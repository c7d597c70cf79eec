"""Environments (contract 1.1, issue 18's first slice): `production` from the migration;
create, list, get, patch and delete; slugs; the 100 limit; ETags, If-Match and
idempotent creates; who may do what.

Most tests run on the rolled-back database (`client`, `db`). The race for the last free
place commits on the live database and removes what it made.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.api.db import Database
from services.api.environments.service import MAX_ENVIRONMENTS
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, is_id
from tests.helpers import assert_problem, bearer, create_agent, every_item, problem_params, settings_for_tests, unique

FIELDS = {"object", "id", "slug", "name", "description", "version", "created_at", "updated_at"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
E = "/v1/environments"


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("name", unique("env"))
    response = await client.post(E, json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- production ---------------------------------------------------------------------------


async def test_production_exists_with_its_fixed_id(client):
    response = await client.get(f"{E}/production")
    assert response.status_code == 200, response.text
    production = response.json()
    assert production["id"] == PRODUCTION_ENVIRONMENT_ID and is_id("environment", production["id"])
    assert production["slug"] == "production" and production["name"] == "Production"
    assert production["object"] == "environment" and set(production) == FIELDS
    assert production["version"] == 1 and response.headers["etag"] == '"1"'
    assert (await client.get(f"{E}/{PRODUCTION_ENVIRONMENT_ID}")).json() == production


async def test_production_cannot_be_deleted(client):
    for ref in ("production", PRODUCTION_ENVIRONMENT_ID):
        body = assert_problem(await client.delete(f"{E}/{ref}"), 409, "environment_protected")
        assert "production" in body["detail"]
    assert (await client.get(f"{E}/production")).status_code == 200


async def test_production_can_be_renamed_but_keeps_its_slug(client):
    response = await client.patch(f"{E}/production", json={"name": "Prod (EU)"})
    assert response.status_code == 200, response.text
    assert response.json()["slug"] == "production" and response.json()["name"] == "Prod (EU)"
    assert (await client.get(f"{E}/production")).json()["version"] == 2


# --- create -------------------------------------------------------------------------------


async def test_create_answers_201_with_location_and_etag(client):
    response = await client.post(E, json={"name": "Staging", "description": "Before production."})
    assert response.status_code == 201, response.text
    environment = response.json()
    assert set(environment) == FIELDS and environment["object"] == "environment"
    assert is_id("environment", environment["id"])
    assert environment["slug"] == "staging" and environment["name"] == "Staging"
    assert environment["description"] == "Before production." and environment["version"] == 1
    assert TIMESTAMP.match(environment["created_at"]) and environment["created_at"] == environment["updated_at"]
    assert response.headers["location"] == f"{E}/{environment['id']}"
    assert response.headers["etag"] == '"1"'
    assert (await client.get(response.headers["location"])).json() == environment


async def test_optional_fields_may_be_null(client):
    environment = await create(client, name="QA", slug=None, description=None)
    assert environment["slug"] == "qa" and environment["description"] == ""


async def test_a_derived_slug_that_is_taken_gets_a_suffix(client):
    first = await create(client, name="Canary")
    second = await create(client, name="Canary")
    third = await create(client, name="canary!")
    assert [first["slug"], second["slug"], third["slug"]] == ["canary", "canary-2", "canary-3"]


async def test_the_slug_is_derived_with_the_one_slug_function(client):
    environment = await create(client, name="Ünïcödé Staging")
    assert environment["slug"] == "unicode-staging"
    long = await create(client, name="x" * 70)
    assert long["slug"] == "x" * 64


async def test_an_explicit_slug_that_is_taken_is_409(client):
    await create(client, name="Staging", slug="stage")
    body = assert_problem(await client.post(E, json={"name": "Other", "slug": "stage"}), 409, "slug_taken")
    assert body["errors"] == [{"param": "slug", "message": "already taken"}]
    assert "stage" in body["detail"]
    assert_problem(await client.post(E, json={"name": "Prod", "slug": "production"}), 409, "slug_taken")


@pytest.mark.parametrize("slug", ["Staging", "stag_ing", "-staging", "staging-", "st--aging", "s" * 65, ""])
async def test_an_explicit_slug_must_be_a_valid_slug(client, slug):
    response = await client.post(E, json={"name": "Staging", "slug": slug})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug"}


async def test_a_name_without_a_slug_needs_an_explicit_one(client):
    response = await client.post(E, json={"name": "!!!"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug"}
    assert (await create(client, name="!!!", slug="bangs"))["slug"] == "bangs"


async def test_every_bad_field_is_named(client):
    response = await client.post(E, json={"name": "", "description": "x" * 4097, "colour": "red"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "description", "colour"}
    response = await client.post(E, json={"description": 5})
    assert problem_params(response) == {"name", "description"}


async def test_a_replayed_create_returns_the_first_response(client):
    headers = {"Idempotency-Key": "env-create-1"}
    first = await client.post(E, json={"name": "Replayed"}, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(E, json={"name": "Replayed"}, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"] and again.headers["etag"] == '"1"'
    listed = await every_item(client, E)
    assert [e["slug"] for e in listed].count("replayed") == 1 and "replayed-2" not in {e["slug"] for e in listed}
    other = await client.post(E, json={"name": "Something else"}, headers=headers)
    body = assert_problem(other, 409, "idempotency_key_reused")
    assert "env-create-1" in body["detail"]


# --- the limit ----------------------------------------------------------------------------


async def test_at_most_100_environments_production_included(client):
    existing = len(await every_item(client, E))
    made = [await create(client, name=f"Fill {n}") for n in range(MAX_ENVIRONMENTS - existing)]
    assert len(await every_item(client, E)) == MAX_ENVIRONMENTS == 100
    body = assert_problem(await client.post(E, json={"name": "One too many"}), 409, "environment_limit_reached")
    assert "100" in body["detail"]
    # An explicit slug, taken or not, gets the same answer: the limit is checked first.
    assert_problem(await client.post(E, json={"name": "X", "slug": "x-free"}), 409, "environment_limit_reached")
    assert len(await every_item(client, E)) == 100
    assert (await client.delete(f"{E}/{made[-1]['id']}")).status_code == 204
    await create(client, name="Room again")
    assert len(await every_item(client, E)) == 100


@pytest.mark.live
async def test_racing_creates_never_pass_the_limit(live_client: httpx.AsyncClient):
    """Creates racing for the last free place: exactly one gets it (the count and the insert
    are one step under the table lock), on a database that commits for real."""
    made: list[str] = []
    try:
        existing = len(await every_item(live_client, E))
        for n in range(MAX_ENVIRONMENTS - 1 - existing):
            made.append((await create(live_client, name=f"Race fill {n}"))["id"])
        responses = await asyncio.gather(*(live_client.post(E, json={"name": unique("racer")}) for _ in range(6)))
        created = [r for r in responses if r.status_code == 201]
        made += [r.json()["id"] for r in created]
        assert len(created) == 1, [r.text for r in responses]
        for refused in (r for r in responses if r.status_code != 201):
            assert_problem(refused, 409, "environment_limit_reached")
        assert len(await every_item(live_client, E)) == MAX_ENVIRONMENTS
    finally:
        for environment_id in made:
            assert (await live_client.delete(f"{E}/{environment_id}")).status_code == 204


@pytest.mark.live
async def test_racing_creates_of_one_name_get_distinct_slugs(live_client: httpx.AsyncClient):
    name = unique("same name")
    responses = await asyncio.gather(*(live_client.post(E, json={"name": name}) for _ in range(5)))
    try:
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        slugs = sorted(r.json()["slug"] for r in responses)
        stem = responses[0].json()["slug"].split("-")[0]
        assert len(set(slugs)) == 5 and all(s.startswith(stem) for s in slugs)
    finally:
        for response in responses:
            if response.status_code == 201:
                await live_client.delete(f"{E}/{response.json()['id']}")


# --- read -------------------------------------------------------------------------------


async def test_get_by_id_or_slug_with_etag_and_304(client):
    environment = await create(client, name="Staging")
    for ref in (environment["id"], environment["slug"]):
        response = await client.get(f"{E}/{ref}")
        assert response.status_code == 200 and response.json() == environment
        assert response.headers["etag"] == '"1"'
        cached = await client.get(f"{E}/{ref}", headers={"If-None-Match": '"1"'})
        assert cached.status_code == 304 and cached.headers["etag"] == '"1"' and not cached.content
    await client.patch(f"{E}/{environment['id']}", json={"name": "Staging 2"})
    fresh = await client.get(f"{E}/staging", headers={"If-None-Match": '"1"'})
    assert fresh.status_code == 200 and fresh.headers["etag"] == '"2"'


# Well-formed ids that name nothing, written out (ids made at collection would differ per xdist worker).
UNKNOWN_ENV_ID = "env_01JDQ3S1W3Y5A7C9E1G3J5K7M8"
AN_AGENT_ID = "agt_01JDQ3V0Y8K2M4N6P8R0S2T4V6"


@pytest.mark.parametrize("ref", ["nowhere", UNKNOWN_ENV_ID, AN_AGENT_ID, "env_x", "Bad Slug"])
async def test_an_unknown_environment_is_404(client, ref):
    for method, body in (("GET", None), ("PATCH", {"name": "X"}), ("DELETE", None)):
        response = await client.request(method, f"{E}/{ref}", json=body)
        problem = assert_problem(response, 404, "resource_missing")
        assert problem["detail"] == f"Environment '{ref}' not found"


async def test_the_list_pages_newest_first_with_production_last(client):
    made = [await create(client, name=f"Paged {n}") for n in range(5)]
    everything = await every_item(client, E)
    assert everything[-1]["id"] == PRODUCTION_ENVIRONMENT_ID
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    assert [e["id"] for e in everything[:5]] == [e["id"] for e in reversed(made)]
    seen: list[str] = []
    after = None
    while True:
        response = await client.get(E, params={"limit": 2, **({"after": after} if after else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        ids = [e["id"] for e in page["data"]]
        if ids:
            assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
        seen += ids
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == [e["id"] for e in everything]
    # A cursor of a deleted environment still positions the page.
    await client.delete(f"{E}/{made[2]['id']}")
    rest = (await client.get(E, params={"after": made[2]["id"], "limit": 100})).json()["data"]
    assert [e["id"] for e in rest][:2] == [made[1]["id"], made[0]["id"]]


@pytest.mark.parametrize("after", [AN_AGENT_ID, "production", "env_1", ""])
async def test_a_cursor_that_is_not_an_environment_id_is_422(client, after):
    response = await client.get(E, params={"after": after})
    assert_problem(response, 422, "invalid_cursor")
    assert problem_params(response) == {"after"}


@pytest.mark.parametrize("limit", ["0", "101", "x"])
async def test_limit_is_1_to_100(client, limit):
    assert_problem(await client.get(E, params={"limit": limit}), 422, "validation_error")


# --- patch ------------------------------------------------------------------------------


async def test_patch_changes_name_and_description_and_bumps_the_version(client):
    environment = await create(client, name="Staging", description="old")
    url = f"{E}/{environment['id']}"
    response = await client.patch(url, json={"name": "Staging (EU)"})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["name"] == "Staging (EU)" and patched["slug"] == "staging" and patched["description"] == "old"
    assert patched["version"] == 2 and response.headers["etag"] == '"2"'
    assert patched["updated_at"] > environment["updated_at"] and patched["created_at"] == environment["created_at"]
    response = await client.patch(
        url, content=b'{"description": null}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["description"] == "" and response.json()["version"] == 3


async def test_a_patch_that_changes_nothing_bumps_nothing(client):
    environment = await create(client, name="Staging", description="d")
    url = f"{E}/{environment['id']}"
    for body in ({}, {"name": "Staging"}, {"description": "d"}, {"name": "Staging", "description": "d"}):
        response = await client.patch(url, json=body)
        assert response.status_code == 200 and response.json() == environment, body
    empty = await create(client, name="Empty")
    unchanged = await client.patch(f"{E}/{empty['id']}", json={"description": None})
    assert unchanged.json()["version"] == 1


async def test_a_slug_in_a_patch_is_422_and_changes_nothing(client):
    environment = await create(client, name="Staging")
    url = f"{E}/{environment['id']}"
    for slug in ("staging-2", "staging", None):
        response = await client.patch(url, json={"name": "Renamed", "slug": slug})
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"] == [
            {"param": "slug", "message": "an environment's slug never changes (it is not part of a patch)"}
        ]
    # With other bad fields, every one is named.
    response = await client.patch(url, json={"name": None, "slug": "x", "extra": 1})
    assert problem_params(response) == {"name", "slug", "extra"}
    assert (await client.get(url)).json() == environment


async def test_name_cannot_be_null_or_empty_in_a_patch(client):
    environment = await create(client, name="Staging")
    for name in (None, "", 5):
        response = await client.patch(f"{E}/{environment['id']}", json={"name": name})
        assert_problem(response, 422, "validation_error")
        assert problem_params(response) == {"name"}


async def test_if_match_on_patch(client):
    environment = await create(client, name="Staging")
    url = f"{E}/{environment['id']}"
    await client.patch(url, json={"name": "Two"})
    for stale in ('"1"', 'W/"2"', "2", '"3"'):
        response = await client.patch(url, json={"name": "Three"}, headers={"If-Match": stale})
        assert_problem(response, 412, "precondition_failed")
    assert (await client.get(url)).json()["name"] == "Two"
    for current in ('"2"', '"1", "3"'):  # the second: a list naming the version after the first
        response = await client.patch(url, json={"description": current}, headers={"If-Match": current})
        assert response.status_code == 200, response.text
    response = await client.patch(url, json={"name": "Any"}, headers={"If-Match": "*"})
    assert response.status_code == 200 and response.json()["version"] == 5


# --- delete -----------------------------------------------------------------------------


async def test_delete_answers_204_and_the_environment_is_gone(client):
    environment = await create(client, name="Staging")
    response = await client.delete(f"{E}/staging")
    assert response.status_code == 204 and not response.content
    assert_problem(await client.get(f"{E}/{environment['id']}"), 404, "resource_missing")
    assert environment["id"] not in {e["id"] for e in await every_item(client, E)}
    # Its slug is free again (environments are erased, not archived).
    assert (await create(client, name="Staging"))["slug"] == "staging"


async def test_if_match_on_delete(client):
    environment = await create(client, name="Staging")
    url = f"{E}/{environment['id']}"
    await client.patch(url, json={"name": "Two"})
    assert_problem(await client.delete(url, headers={"If-Match": '"1"'}), 412, "precondition_failed")
    assert (await client.get(url)).status_code == 200
    assert (await client.delete(url, headers={"If-Match": '"2"'})).status_code == 204


async def test_a_stale_if_match_on_production_is_412_before_the_protection(client):
    response = await client.delete(f"{E}/production", headers={"If-Match": '"7"'})
    assert_problem(response, 412, "precondition_failed")


async def test_environment_changes_write_no_revision(client):
    """The contract's revisions are an agent's history; environments belong to none."""
    agent = await create_agent(client)
    before = (await client.get(f"/v1/agents/{agent['id']}/revisions")).json()
    environment = await create(client, name="Staging")
    await client.patch(f"{E}/{environment['id']}", json={"name": "Renamed"})
    await client.delete(f"{E}/{environment['id']}")
    assert (await client.get(f"/v1/agents/{agent['id']}/revisions")).json() == before


# --- scopes ---------------------------------------------------------------------------


async def test_reads_need_read_and_writes_need_admin(db: Database):
    app = create_app(settings_for_tests(), database=db)
    keys = {
        scope: (await keys_service.create_key(db, KeyCreate(name=f"env-{scope}", scope=scope)))["secret"]
        for scope in ("resolve", "read", "write", "admin")
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

        async def as_(scope: str, method: str, path: str, body: Any = None) -> httpx.Response:
            return await http.request(method, path, json=body, headers=bearer(keys[scope]))

        assert_problem(await as_("resolve", "GET", E), 403, "insufficient_scope")
        assert_problem(await as_("resolve", "GET", f"{E}/production"), 403, "insufficient_scope")
        for scope in ("read", "write", "admin"):
            assert (await as_(scope, "GET", E)).status_code == 200
            assert (await as_(scope, "GET", f"{E}/production")).status_code == 200
        for scope in ("resolve", "read", "write"):
            body = assert_problem(await as_(scope, "POST", E, {"name": "Staging"}), 403, "insufficient_scope")
            assert "admin" in body["detail"]
            assert_problem(await as_(scope, "PATCH", f"{E}/production", {"name": "P"}), 403, "insufficient_scope")
            assert_problem(await as_(scope, "DELETE", f"{E}/production"), 403, "insufficient_scope")
        created = await as_("admin", "POST", E, {"name": "Staging"})
        assert created.status_code == 201, created.text
        assert (await as_("admin", "PATCH", f"{E}/staging", {"name": "S"})).status_code == 200
        assert (await as_("admin", "DELETE", f"{E}/staging")).status_code == 204
