"""Variants over HTTP: create, clone, list, merge-patch, activate, deactivate, delete."""

from __future__ import annotations

import re
from typing import Any

import httpx

from services.shared.agent_config import CONFIG_FIELDS
from services.shared.identifiers import is_id, new_id
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def path(agent: dict[str, Any], variant: dict[str, Any] | str | None = None, action: str | None = None) -> str:
    base = f"/v1/agents/{agent['id']}/variants"
    if variant is None:
        return base
    ref = variant if isinstance(variant, str) else variant["id"]
    return f"{base}/{ref}" + (f"/{action}" if action else "")


async def get(client: httpx.AsyncClient, agent: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(path(agent, variant))
    assert response.status_code == 200, response.text
    return response.json()


async def variant_ids(client: httpx.AsyncClient, agent: dict[str, Any], **params: Any) -> list[str]:
    body = (await client.get(path(agent), params={"limit": 100, **params})).json()
    return [v["id"] for v in body["data"]]


FULL_BASE = config(
    system_prompt="You help.",
    user_prompt_template="Q: {q}",
    prompt_version="v1",
    temperature=0.7,
    max_tokens=500,
    context_window=8000,
    input_token_limit=4000,
    token_budget=1_000_000,
    timeout_seconds=30,
    max_retries=3,
)


# --- create ----------------------------------------------------------------------------


async def test_create_stores_exactly_the_given_overrides(client):
    agent = await create_agent(client)
    response = await client.post(
        path(agent),
        json={
            "variant_name": "Cold",
            "description": "low temp",
            "metadata": {"owner": "ml"},
            "overrides": {"temperature": 0.2, "system_prompt": "Be terse."},
        },
    )
    assert response.status_code == 201, response.text
    variant = response.json()
    assert response.headers["location"] == f"/v1/agents/{agent['id']}/variants/{variant['id']}"
    assert response.headers["etag"] == '"1"'
    assert variant["object"] == "variant"
    assert is_id("variant", variant["id"])
    assert variant["agent_id"] == agent["id"]
    assert variant["variant_name"] == "Cold"
    assert variant["slug"] == "cold"
    assert variant["description"] == "low temp"
    assert variant["metadata"] == {"owner": "ml"}
    assert variant["overrides"] == {"temperature": 0.2, "system_prompt": "Be terse."}
    assert variant["is_active"] is False
    assert variant["cloned_from"] is None
    assert variant["version"] == 1
    assert variant["activated_at"] is None
    assert TIMESTAMP.match(variant["created_at"]) and TIMESTAMP.match(variant["updated_at"])
    assert (await client.get(response.headers["location"])).json() == variant


async def test_create_without_overrides_stores_none(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    assert variant["overrides"] == {}
    variant = await create_variant(client, agent["id"], overrides={"temperature": None, "max_retries": 0})
    assert variant["overrides"] == {"max_retries": 0}


async def test_overrides_may_set_a_value_equal_to_the_base(client):
    agent = await create_agent(client, config=config(temperature=0.5))
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.5})
    assert variant["overrides"] == {"temperature": 0.5}


async def test_clone_from_base_copies_all_twelve_then_applies_overrides(client):
    agent = await create_agent(client, config=FULL_BASE)
    variant = await create_variant(client, agent["id"], clone_from="base", overrides={"temperature": 1.5})
    assert variant["overrides"] == {**FULL_BASE, "temperature": 1.5}
    assert set(variant["overrides"]) == set(CONFIG_FIELDS)
    assert variant["cloned_from"] == {"source": "base", "variant_id": None}
    assert variant["is_active"] is False


async def test_clone_from_base_is_a_snapshot(client):
    agent = await create_agent(client, config=FULL_BASE)
    variant = await create_variant(client, agent["id"], clone_from="base")
    await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": "changed"}})
    assert (await get(client, agent, variant))["overrides"]["system_prompt"] == "You help."


async def test_clone_from_a_variant_by_id_copies_its_stored_overrides_only(client):
    agent = await create_agent(client, config=FULL_BASE)
    source = await create_variant(client, agent["id"], overrides={"temperature": 0.1, "prompt_version": "v2"})
    clone = await create_variant(client, agent["id"], clone_from=source["id"], overrides={"max_retries": 9})
    assert clone["overrides"] == {"temperature": 0.1, "prompt_version": "v2", "max_retries": 9}
    assert clone["cloned_from"] == {"source": "variant", "variant_id": source["id"]}
    # The source is untouched.
    assert (await get(client, agent, source)) == source


async def test_clone_from_an_active_variant_by_slug_is_never_active(client):
    agent = await create_agent(client)
    source = await create_variant(client, agent["id"], variant_name="Source", overrides={"max_tokens": 50})
    assert (await client.post(path(agent, source, "activate"))).status_code == 200
    clone = await create_variant(
        client, agent["id"], clone_from="source", overrides={"max_tokens": 60, "temperature": 0.0}
    )
    assert clone["overrides"] == {"max_tokens": 60, "temperature": 0.0}
    assert clone["cloned_from"] == {"source": "variant", "variant_id": source["id"]}
    assert clone["is_active"] is False
    assert clone["activated_at"] is None
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["active_variant_id"] == source["id"]


async def test_clone_overrides_with_null_drop_a_copied_field(client):
    agent = await create_agent(client)
    source = await create_variant(client, agent["id"], overrides={"temperature": 0.1, "max_tokens": 10})
    clone = await create_variant(client, agent["id"], clone_from=source["id"], overrides={"temperature": None})
    assert clone["overrides"] == {"max_tokens": 10}


async def test_clone_from_unknown_is_404_naming_clone_from_and_writes_nothing(client):
    agent = await create_agent(client)
    other_agent = await create_agent(client)
    foreign = await create_variant(client, other_agent["id"])
    for ref in ("nope", new_id("variant"), foreign["id"], foreign["slug"], "agt_x"):
        response = await client.post(path(agent), json={"variant_name": "c", "clone_from": ref})
        body = assert_problem(response, 404, "resource_missing")
        assert [e["param"] for e in body["errors"]] == ["clone_from"]
        assert body["detail"] == f"Variant '{ref}' not found"
    assert await variant_ids(client, agent) == []


async def test_explicit_slug_base_is_422_slug_reserved(client):
    agent = await create_agent(client)
    response = await client.post(path(agent), json={"variant_name": "x", "slug": "base"})
    assert_problem(response, 422, "slug_reserved")
    assert problem_params(response) == {"slug"}
    assert await variant_ids(client, agent) == []


async def test_derived_slug_base_becomes_base_2(client):
    agent = await create_agent(client)
    first = await create_variant(client, agent["id"], variant_name="Base")
    second = await create_variant(client, agent["id"], variant_name="BASE!")
    assert (first["slug"], second["slug"]) == ("base-2", "base-3")


async def test_derived_variant_slug_collisions_are_per_agent(client):
    a = await create_agent(client)
    b = await create_agent(client)
    slugs_a = [(await create_variant(client, a["id"], variant_name="Hot Take"))["slug"] for _ in range(3)]
    assert slugs_a == ["hot-take", "hot-take-2", "hot-take-3"]
    assert (await create_variant(client, b["id"], variant_name="Hot Take"))["slug"] == "hot-take"


async def test_explicit_slug_taken_within_agent_is_409_but_fine_in_another(client):
    a = await create_agent(client)
    b = await create_agent(client)
    await create_variant(client, a["id"], slug="shared")
    response = await client.post(path(a), json={"variant_name": "again", "slug": "shared"})
    assert_problem(response, 409, "slug_taken")
    assert len(await variant_ids(client, a)) == 1
    assert (await create_variant(client, b["id"], slug="shared"))["slug"] == "shared"


async def test_variant_name_with_an_empty_slug_needs_an_explicit_slug(client):
    agent = await create_agent(client)
    response = await client.post(path(agent), json={"variant_name": "???"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug"}
    assert (await create_variant(client, agent["id"], variant_name="???", slug="q"))["slug"] == "q"


async def test_create_rejects_unknown_override_fields_and_bad_values(client):
    agent = await create_agent(client)
    response = await client.post(
        path(agent),
        json={"variant_name": "x", "overrides": {"temprature": 1.0, "max_tokens": 0, "model_name": ""}},
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"overrides.temprature", "overrides.max_tokens", "overrides.model_name"}


async def test_create_in_unknown_agent_is_404(client):
    response = await client.post("/v1/agents/ghost-agent/variants", json={"variant_name": "x"})
    body = assert_problem(response, 404, "resource_missing")
    assert body["detail"] == "Agent 'ghost-agent' not found"


# --- read and list ---------------------------------------------------------------------


async def test_get_by_id_and_by_slug_with_etag_and_304(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    by_id = await client.get(path(agent, variant))
    by_slug = await client.get(f"/v1/agents/{agent['slug']}/variants/{variant['slug']}")
    assert by_id.json() == by_slug.json() == variant
    assert by_id.headers["etag"] == '"1"'
    response = await client.get(path(agent, variant), headers={"If-None-Match": '"1"'})
    assert response.status_code == 304


async def test_a_variant_is_not_found_under_another_agent(client):
    a = await create_agent(client)
    b = await create_agent(client)
    variant = await create_variant(client, a["id"])
    response = await client.get(path(b, variant))
    body = assert_problem(response, 404, "resource_missing")
    assert body["detail"] == f"Variant '{variant['id']}' not found"


async def test_list_newest_first_with_paging_and_is_active_filter(client):
    agent = await create_agent(client)
    created = [(await create_variant(client, agent["id"]))["id"] for _ in range(4)]
    assert (await client.post(path(agent, created[1], "activate"))).status_code == 200

    assert await variant_ids(client, agent) == list(reversed(created))
    assert await variant_ids(client, agent, is_active="true") == [created[1]]
    assert await variant_ids(client, agent, is_active="false") == [created[3], created[2], created[0]]

    page = (await client.get(path(agent), params={"limit": 2})).json()
    assert page["has_more"] is True
    assert page["first_id"] == created[3] and page["last_id"] == created[2]
    page = (await client.get(path(agent), params={"limit": 2, "after": page["last_id"]})).json()
    assert [v["id"] for v in page["data"]] == [created[1], created[0]]
    assert page["has_more"] is False
    # `after` positions by id even when that item no longer matches the filter.
    page = (await client.get(path(agent), params={"is_active": "false", "after": created[1]})).json()
    assert [v["id"] for v in page["data"]] == [created[0]]


async def test_list_of_unknown_agent_is_404_and_bad_params_are_422(client):
    assert_problem(await client.get("/v1/agents/ghost/variants"), 404, "resource_missing")
    agent = await create_agent(client)
    response = await client.get(path(agent), params={"after": agent["id"]})
    assert_problem(response, 422, "invalid_cursor")
    response = await client.get(path(agent), params={"is_active": "maybe"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"is_active"}
    response = await client.get(path(agent), params={"limit": 101})
    assert problem_params(response) == {"limit"}


# --- patch -----------------------------------------------------------------------------


async def test_patch_overrides_sets_removes_and_keeps(client):
    agent = await create_agent(client)
    variant = await create_variant(
        client,
        agent["id"],
        description="d",
        metadata={"k": "v"},
        overrides={"temperature": 0.2, "max_tokens": 100, "prompt_version": "p1"},
    )
    response = await client.patch(
        path(agent, variant), json={"overrides": {"temperature": None, "max_retries": 7, "prompt_version": "p2"}}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["overrides"] == {"max_tokens": 100, "max_retries": 7, "prompt_version": "p2"}
    assert updated["version"] == 2
    assert response.headers["etag"] == '"2"'
    # Fields not named keep their value.
    for key in ("variant_name", "slug", "description", "metadata", "is_active", "cloned_from", "created_at"):
        assert updated[key] == variant[key]


async def test_patch_overrides_null_removes_every_override(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.2, "max_tokens": 100})
    response = await client.patch(path(agent, variant), json={"overrides": None})
    assert response.status_code == 200
    assert response.json()["overrides"] == {}


async def test_applying_the_same_patch_twice_equals_once(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], metadata={"a": "1"}, overrides={"temperature": 0.2})
    patch = {
        "variant_name": "Renamed",
        "description": "new",
        "metadata": {"a": None, "b": "2"},
        "overrides": {"temperature": None, "max_tokens": 42},
    }
    once = await client.patch(path(agent, variant), json=patch)
    twice = await client.patch(path(agent, variant), json=patch)
    assert once.status_code == twice.status_code == 200
    assert twice.json() == once.json()
    assert once.json()["version"] == 2
    assert once.json()["metadata"] == {"b": "2"}
    assert once.json()["overrides"] == {"max_tokens": 42}
    assert once.json()["slug"] == variant["slug"]  # a rename never changes the slug


async def test_patch_slug_rules(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    other = await create_variant(client, agent["id"], slug="other")
    assert_problem(await client.patch(path(agent, variant), json={"slug": "base"}), 422, "slug_reserved")
    response = await client.patch(path(agent, variant), json={"slug": "other"})
    assert_problem(response, 409, "slug_taken")
    assert await get(client, agent, variant) == variant
    response = await client.patch(path(agent, variant), json={"slug": "fresh"})
    assert response.status_code == 200
    assert (await client.get(path(agent, "fresh"))).json()["id"] == variant["id"]
    assert (await get(client, agent, other))["slug"] == "other"


async def test_patch_with_merge_patch_content_type(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.2})
    response = await client.patch(
        path(agent, variant),
        content=b'{"overrides": {"temperature": null}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["overrides"] == {}


async def test_patch_of_unknown_variant_or_agent_is_404(client):
    agent = await create_agent(client)
    body = assert_problem(await client.patch(path(agent, "ghost"), json={"description": "x"}), 404, "resource_missing")
    assert body["detail"] == "Variant 'ghost' not found"
    body = assert_problem(
        await client.patch("/v1/agents/ghost/variants/ghost", json={"description": "x"}), 404, "resource_missing"
    )
    assert body["detail"] == "Agent 'ghost' not found"


# --- activate and deactivate -----------------------------------------------------------


async def test_activate_makes_it_the_one_active_variant(client):
    agent = await create_agent(client)
    first = await create_variant(client, agent["id"])
    second = await create_variant(client, agent["id"])

    response = await client.post(path(agent, first, "activate"))
    assert response.status_code == 200, response.text
    active = response.json()
    assert active["is_active"] is True
    assert TIMESTAMP.match(active["activated_at"])
    assert active["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["active_variant_id"] == first["id"]

    response = await client.post(f"/v1/agents/{agent['slug']}/variants/{second['slug']}/activate")
    assert response.status_code == 200
    assert response.json()["is_active"] is True
    previous = await get(client, agent, first)
    assert previous["is_active"] is False
    assert previous["activated_at"] is None
    assert previous["version"] == 3
    fetched = (await client.get(f"/v1/agents/{agent['id']}")).json()
    assert fetched["active_variant_id"] == second["id"]
    assert fetched["version"] == agent["version"]
    assert await variant_ids(client, agent, is_active="true") == [second["id"]]


async def test_activating_the_active_variant_is_a_no_op(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    first = (await client.post(path(agent, variant, "activate"))).json()
    response = await client.post(path(agent, variant, "activate"))
    assert response.status_code == 200
    assert response.json() == first
    assert response.headers["etag"] == f'"{first["version"]}"'


async def test_deactivate_clears_the_active_variant_and_is_a_no_op_when_inactive(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    await client.post(path(agent, variant, "activate"))
    response = await client.post(path(agent, variant, "deactivate"))
    assert response.status_code == 200
    body = response.json()
    assert body["is_active"] is False
    assert body["activated_at"] is None
    assert body["version"] == 3
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["active_variant_id"] is None

    again = await client.post(path(agent, variant, "deactivate"))
    assert again.status_code == 200
    assert again.json() == body
    never = await create_variant(client, agent["id"])
    response = await client.post(path(agent, never, "deactivate"))
    assert response.status_code == 200
    assert response.json() == never


async def test_actions_on_unknown_variant_or_agent_are_404(client):
    agent = await create_agent(client)
    for action in ("activate", "deactivate"):
        body = assert_problem(await client.post(path(agent, "ghost", action)), 404, "resource_missing")
        assert body["detail"] == "Variant 'ghost' not found"
        body = assert_problem(await client.post(f"/v1/agents/ghost/variants/x/{action}"), 404, "resource_missing")
        assert body["detail"] == "Agent 'ghost' not found"


# --- delete ----------------------------------------------------------------------------


async def test_delete_inactive_variant_is_204_then_404(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    response = await client.delete(path(agent, variant["slug"]))
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(path(agent, variant)), 404, "resource_missing")
    assert_problem(await client.delete(path(agent, variant)), 404, "resource_missing")
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["variant_count"] == 0


async def test_delete_active_variant_is_409_and_keeps_it(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    active = (await client.post(path(agent, variant, "activate"))).json()
    assert_problem(await client.delete(path(agent, variant)), 409, "variant_active")
    assert await get(client, agent, variant) == active
    await client.post(path(agent, variant, "deactivate"))
    assert (await client.delete(path(agent, variant))).status_code == 204


async def test_delete_in_unknown_agent_is_404(client):
    body = assert_problem(await client.delete("/v1/agents/ghost/variants/x"), 404, "resource_missing")
    assert body["detail"] == "Agent 'ghost' not found"
