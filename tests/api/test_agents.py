"""Agents over HTTP: create, read, list, merge-patch and delete, happy paths and errors."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import text

from services.shared.agent_config import CONFIG_FIELDS, DEFAULTS
from services.shared.identifiers import is_id, new_id
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params, unique

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def agent_count(client: httpx.AsyncClient) -> int:
    body = (await client.get("/v1/agents", params={"limit": 100})).json()
    assert not body["has_more"]
    return len(body["data"])


# --- create ----------------------------------------------------------------------------


async def test_create_returns_201_with_location_etag_and_the_full_object(client):
    response = await client.post(
        "/v1/agents",
        json={
            "name": "Support Bot",
            "description": "Answers tickets",
            "metadata": {"team": "cx"},
            "config": config(temperature=0.3),
        },
    )
    assert response.status_code == 201, response.text
    agent = response.json()
    assert response.headers["location"] == f"/v1/agents/{agent['id']}"
    assert response.headers["etag"] == '"1"'
    assert agent["object"] == "agent"
    assert is_id("agent", agent["id"])
    assert agent["slug"] == "support-bot"
    assert agent["name"] == "Support Bot"
    assert agent["description"] == "Answers tickets"
    assert agent["metadata"] == {"team": "cx"}
    assert agent["config"]["temperature"] == 0.3
    assert agent["active_variant_id"] is None
    assert agent["variant_count"] == 0
    assert agent["version"] == 1
    assert TIMESTAMP.match(agent["created_at"]) and TIMESTAMP.match(agent["updated_at"])
    # The Location header names the object just made.
    fetched = await client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == agent


async def test_create_fills_defaults_for_every_omitted_field(client):
    agent = await create_agent(client, config={"model_provider": "anthropic", "model_name": "claude"})
    expected = {**DEFAULTS, "model_provider": "anthropic", "model_name": "claude", "params": {}, "tools": {}}
    expected["variables"] = {}  # nothing to infer: the default templates are empty
    assert agent["config"] == expected
    assert set(agent["config"]) == {*CONFIG_FIELDS, "params", "tools", "variables"}
    assert agent["description"] == ""
    assert agent["metadata"] == {}


async def test_create_treats_null_optional_fields_as_their_default(client):
    body = {
        "name": unique(),
        "slug": None,
        "description": None,
        "metadata": None,
        "config": config(system_prompt=None, temperature=None, max_tokens=None, max_retries=None),
    }
    response = await client.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    agent = response.json()
    assert agent["description"] == "" and agent["metadata"] == {}
    assert agent["config"]["system_prompt"] == ""
    assert agent["config"]["temperature"] == 1.0
    assert agent["config"]["max_tokens"] == 1024
    assert agent["config"]["max_retries"] == 2
    assert agent["slug"]  # derived from the name


async def test_create_with_explicit_slug_uses_it(client):
    agent = await create_agent(client, name="Whatever Name", slug="my-agent-7")
    assert agent["slug"] == "my-agent-7"


async def test_create_with_an_explicit_slug_already_taken_is_409_and_writes_nothing(client):
    await create_agent(client, name="First", slug="taken-slug")
    before = await agent_count(client)
    response = await client.post("/v1/agents", json={"name": "Second", "slug": "taken-slug", "config": config()})
    body = assert_problem(response, 409, "slug_taken")
    assert "taken-slug" in body["detail"]
    assert await agent_count(client) == before


async def test_derived_slug_collisions_get_numbered_suffixes(client):
    slugs = [(await create_agent(client, name="Triage Bot"))["slug"] for _ in range(3)]
    assert slugs == ["triage-bot", "triage-bot-2", "triage-bot-3"]


async def test_derived_slug_skips_suffixes_taken_explicitly(client):
    await create_agent(client, name="Router")
    await create_agent(client, name="x", slug="router-2")
    assert (await create_agent(client, name="Router"))["slug"] == "router-3"


async def test_a_suffixed_long_slug_is_shortened_to_fit_64(client):
    name = "word " * 30
    first = await create_agent(client, name=name)
    second = await create_agent(client, name=name)
    assert len(first["slug"]) <= 64
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", first["slug"])
    assert len(second["slug"]) <= 64
    assert second["slug"].endswith("-2")
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", second["slug"])
    assert second["slug"][:-2] == first["slug"][: len(second["slug"]) - 2].rstrip("-")


async def test_unicode_name_is_transliterated_into_the_slug(client):
    agent = await create_agent(client, name="Ünïcödé Bot")
    assert agent["slug"] == "unicode-bot"
    assert agent["name"] == "Ünïcödé Bot"


async def test_base_is_reserved_for_variants_only(client):
    assert (await create_agent(client, name="Base"))["slug"] == "base"


async def test_name_with_an_empty_slug_needs_an_explicit_slug(client):
    before = await agent_count(client)
    response = await client.post("/v1/agents", json={"name": "!!! ???", "config": config()})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug"}
    assert await agent_count(client) == before
    agent = await create_agent(client, name="!!! ???", slug="punctuation")
    assert agent["slug"] == "punctuation"


async def test_an_explicit_slug_must_already_be_valid(client):
    for bad in ("Has Caps", "under_score", "trailing-", "-leading", "double--hyphen", "x" * 65, ""):
        response = await client.post("/v1/agents", json={"name": "n", "slug": bad, "config": config()})
        assert_problem(response, 422, "validation_error")
        assert problem_params(response) == {"slug"}, bad


async def test_create_requires_name_and_model_fields(client):
    response = await client.post("/v1/agents", json={"config": {}})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "config.model_provider", "config.model_name"}


async def test_temperature_accepts_a_json_integer(client):
    agent = await create_agent(client, config=config(temperature=2))
    assert agent["config"]["temperature"] == 2.0


# --- read ------------------------------------------------------------------------------


async def test_get_by_id_and_by_slug_return_the_same_agent_with_its_etag(client):
    agent = await create_agent(client)
    by_id = await client.get(f"/v1/agents/{agent['id']}")
    by_slug = await client.get(f"/v1/agents/{agent['slug']}")
    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.json() == by_slug.json() == agent
    assert by_id.headers["etag"] == '"1"'


async def test_unknown_agent_is_404_problem_naming_it(client):
    for ref in ("support-bot", new_id("agent"), "agt_not-a-ulid", "Not_A_Slug"):
        response = await client.get(f"/v1/agents/{ref}")
        body = assert_problem(response, 404, "resource_missing")
        assert body["detail"] == f"Agent '{ref}' not found"


async def test_if_none_match_with_the_current_etag_is_304(client):
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.headers["etag"] == '"1"'
    assert response.content == b""
    # A stale ETag gets the object.
    await client.patch(f"/v1/agents/{agent['id']}", json={"name": "renamed"})
    response = await client.get(f"/v1/agents/{agent['id']}", headers={"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    assert response.json()["name"] == "renamed"


# --- list ------------------------------------------------------------------------------


async def test_list_pages_newest_first_without_repeats_or_gaps(client):
    created = [(await create_agent(client))["id"] for _ in range(5)]
    newest_first = list(reversed(created))

    page = (await client.get("/v1/agents", params={"limit": 2})).json()
    assert page["object"] == "list"
    assert [a["id"] for a in page["data"]] == newest_first[:2]
    assert page["first_id"] == newest_first[0] and page["last_id"] == newest_first[1]
    assert page["has_more"] is True

    seen = [a["id"] for a in page["data"]]
    while page["has_more"]:
        page = (await client.get("/v1/agents", params={"limit": 2, "after": page["last_id"]})).json()
        seen += [a["id"] for a in page["data"]]
    assert seen == newest_first
    assert len(page["data"]) == 1 and page["has_more"] is False


async def test_list_default_limit_is_20(client):
    for _ in range(21):
        await create_agent(client)
    page = (await client.get("/v1/agents")).json()
    assert len(page["data"]) == 20
    assert page["has_more"] is True


async def test_list_empty_page_has_null_ids(client):
    agent = await create_agent(client)
    page = (await client.get("/v1/agents", params={"after": agent["id"]})).json()
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


async def test_after_still_positions_once_its_item_is_deleted(client):
    a, b, c = [(await create_agent(client))["id"] for _ in range(3)]
    assert (await client.delete(f"/v1/agents/{b}")).status_code == 204
    page = (await client.get("/v1/agents", params={"after": b})).json()
    assert [x["id"] for x in page["data"]] == [a]
    # An id that never existed positions just as well.
    page = (await client.get("/v1/agents", params={"after": new_id("agent")})).json()
    assert [x["id"] for x in page["data"]] == [c, a]


async def test_malformed_after_is_422_invalid_cursor(client):
    for bad in ("nope", "agt_123", new_id("variant"), "agt_" + "U" * 26):
        response = await client.get("/v1/agents", params={"after": bad})
        body = assert_problem(response, 422, "invalid_cursor")
        assert problem_params(response) == {"after"}
        assert "must be the id of an agent" in body["detail"]


async def test_limit_out_of_range_is_422(client):
    for bad in ("0", "101", "-1", "ten"):
        response = await client.get("/v1/agents", params={"limit": bad})
        assert_problem(response, 422, "validation_error")
        assert problem_params(response) == {"limit"}
    assert (await client.get("/v1/agents", params={"limit": 100})).status_code == 200
    assert (await client.get("/v1/agents", params={"limit": 1})).status_code == 200


# --- patch -----------------------------------------------------------------------------


async def test_patch_name_keeps_the_slug_and_bumps_version(client):
    agent = await create_agent(client, name="Old Name")
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"name": "Brand New Name"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Brand New Name"
    assert updated["slug"] == "old-name"
    assert updated["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert updated["updated_at"] >= agent["updated_at"]
    assert updated["created_at"] == agent["created_at"]


async def test_patch_slug_renames_and_the_old_slug_stops_resolving(client):
    agent = await create_agent(client, name="Slugged")
    response = await client.patch(f"/v1/agents/{agent['slug']}", json={"slug": "renamed-slug"})
    assert response.status_code == 200, response.text
    assert response.json()["slug"] == "renamed-slug"
    assert (await client.get("/v1/agents/renamed-slug")).json()["id"] == agent["id"]
    assert_problem(await client.get("/v1/agents/slugged"), 404, "resource_missing")


async def test_patch_slug_to_a_taken_one_is_409_and_writes_nothing(client):
    await create_agent(client, slug="occupied")
    agent = await create_agent(client)
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"slug": "occupied", "name": "changed"})
    assert_problem(response, 409, "slug_taken")
    after = (await client.get(f"/v1/agents/{agent['id']}")).json()
    assert after == agent


async def test_patch_invalid_slug_is_422(client):
    agent = await create_agent(client)
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"slug": "Not Valid"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug"}


async def test_patch_null_description_resets_it(client):
    agent = await create_agent(client, description="something")
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"description": None})
    assert response.status_code == 200
    assert response.json()["description"] == ""
    assert response.json()["version"] == 2


async def test_patch_metadata_merges_and_null_deletes_keys(client):
    agent = await create_agent(client, metadata={"a": "1", "b": "2", "c": "3"})
    response = await client.patch(
        f"/v1/agents/{agent['id']}", json={"metadata": {"a": "10", "b": None, "d": "4", "missing": None}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"a": "10", "c": "3", "d": "4"}
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"metadata": None})
    assert response.json()["metadata"] == {}
    assert response.json()["version"] == 3


async def test_patch_metadata_over_16_pairs_after_merge_is_422(client):
    agent = await create_agent(client, metadata={f"k{i}": "v" for i in range(16)})
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"metadata": {"one-more": "v"}})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"metadata"}
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["version"] == 1
    # Removing one while adding one stays at 16: fine.
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"metadata": {"k0": None, "one-more": "v"}})
    assert response.status_code == 200
    assert len(response.json()["metadata"]) == 16


async def test_patch_config_fields_changes_only_those(client):
    agent = await create_agent(client, config=config(system_prompt="be nice", max_retries=5))
    response = await client.patch(
        f"/v1/agents/{agent['id']}", json={"config": {"temperature": 0.1, "model_name": "gpt-5"}}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["config"] == {**agent["config"], "temperature": 0.1, "model_name": "gpt-5"}
    assert updated["version"] == 2


async def test_every_patch_that_changes_something_bumps_version_by_exactly_one(client):
    agent = await create_agent(client)
    patches = [
        {"name": "n2"},
        {"slug": unique("s").replace(" ", "-")},
        {"description": "d"},
        {"metadata": {"k": "v"}},
        {"config": {"max_tokens": 77}},
        {"name": "n3", "description": "d3", "config": {"timeout_seconds": 9, "token_budget": 10_000_000_000}},
    ]
    version = agent["version"]
    for patch in patches:
        response = await client.patch(f"/v1/agents/{agent['id']}", json=patch)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == version + 1, patch
        version += 1


async def test_a_patch_that_changes_nothing_bumps_nothing(client):
    agent = await create_agent(client, description="same", metadata={"k": "v"})
    for patch in (
        {},
        {"name": agent["name"]},
        {"slug": agent["slug"]},
        {"description": "same"},
        {"metadata": {"k": "v"}},
        {"metadata": {"absent": None}},
        {"config": {"model_provider": agent["config"]["model_provider"], "temperature": 1.0}},
    ):
        response = await client.patch(f"/v1/agents/{agent['id']}", json=patch)
        assert response.status_code == 200, response.text
        assert response.json() == agent, patch
        assert response.headers["etag"] == '"1"'


async def test_null_config_field_in_patch_is_422_naming_it_and_writes_nothing(client):
    agent = await create_agent(client)
    response = await client.patch(
        f"/v1/agents/{agent['id']}", json={"name": "x", "config": {"temperature": None, "max_tokens": None}}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"config.temperature", "config.max_tokens"}
    assert (await client.get(f"/v1/agents/{agent['id']}")).json() == agent


async def test_null_name_slug_or_config_in_patch_is_422(client):
    agent = await create_agent(client)
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"name": None, "slug": None, "config": None})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "slug", "config"}


async def test_patch_accepts_merge_patch_content_type(client):
    agent = await create_agent(client)
    response = await client.patch(
        f"/v1/agents/{agent['id']}",
        content=b'{"name": "merged", "config": {"max_retries": 0}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "merged"
    assert response.json()["config"]["max_retries"] == 0


async def test_patch_accepts_merge_patch_with_a_charset(client):
    agent = await create_agent(client)
    response = await client.patch(
        f"/v1/agents/{agent['id']}",
        content='{"description": "café"}'.encode(),
        headers={"Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["description"] == "café"


async def test_patch_unknown_agent_is_404(client):
    response = await client.patch("/v1/agents/ghost", json={"name": "x"})
    body = assert_problem(response, 404, "resource_missing")
    assert body["detail"] == "Agent 'ghost' not found"


async def test_variant_changes_do_not_bump_the_agent_version(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    fetched = (await client.get(f"/v1/agents/{agent['id']}")).json()
    assert fetched["variant_count"] == 1
    assert fetched["active_variant_id"] == variant["id"]
    assert fetched["version"] == 1


# --- delete ----------------------------------------------------------------------------


async def test_delete_is_204_then_404(client):
    agent = await create_agent(client)
    response = await client.delete(f"/v1/agents/{agent['slug']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(f"/v1/agents/{agent['id']}"), 404, "resource_missing")
    assert_problem(await client.delete(f"/v1/agents/{agent['id']}"), 404, "resource_missing")
    # Archived (contract 1.1), not erased: the slug stays taken until a purge.
    assert_problem(
        await client.post("/v1/agents", json={"name": "x", "slug": agent["slug"], "config": config()}),
        409,
        "slug_taken",
    )
    assert (await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})).status_code == 204
    assert (await create_agent(client, name="x", slug=agent["slug"]))["slug"] == agent["slug"]


async def test_purge_cascades_to_variants(client, conn):
    agent = await create_agent(client)
    v1 = await create_variant(client, agent["id"])
    await create_variant(client, agent["id"], overrides={"temperature": 0.5})
    await client.post(f"/v1/agents/{agent['id']}/variants/{v1['id']}/activate")
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    count = text("SELECT count(*) FROM variants WHERE agent_id = :a")
    assert await conn.scalar(count, {"a": agent["id"]}) == 2  # archived: everything kept
    assert (await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})).status_code == 204
    assert await conn.scalar(count, {"a": agent["id"]}) == 0
    response = await client.get(f"/v1/agents/{agent['id']}/variants/{v1['id']}")
    assert_problem(response, 404, "resource_missing")
