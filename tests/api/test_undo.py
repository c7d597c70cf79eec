"""Undo, restore and diff over HTTP, on real PostgreSQL.

Undo reverts the agent's newest change not yet undone; a walk of undos is checked against
a stack of the states seen after each change. Restore sets a variant back to a revision's
state; diff compares resolved values against base, a variant or a revision.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.api.history_support import (
    all_revisions,
    newest_revision,
    snapshot,
    stored_revision_count,
    without,
)
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params

UNDO_KEYS = {"object", "reverted_revision_id", "revision"}
MISSING_REVISION = "rev_01JD0000000000000000000000"


async def ok(response: httpx.Response | Any, status: int = 200) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def undo(client: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    body = await ok(client.post(f"/v1/agents/{agent}/undo"))
    assert set(body) == UNDO_KEYS and body["object"] == "undo"
    assert body["revision"]["action"] == "undo"
    return body


async def variant(client: httpx.AsyncClient, agent: str, ref: str) -> dict[str, Any]:
    return await ok(client.get(f"/v1/agents/{agent}/variants/{ref}"))


def editable(v: dict[str, Any]) -> dict[str, Any]:
    return {k: v[k] for k in ("variant_name", "slug", "description", "metadata", "overrides")}


# ---------------------------------------------------------------- undo, one kind at a time


async def test_undo_of_a_variant_update_restores_the_before_state(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(
        client,
        agent["id"],
        slug="first",
        description="d1",
        metadata={"a": "1"},
        overrides={"max_tokens": 10, "temperature": 0.5},
    )
    patch = {
        "variant_name": "Other",
        "slug": "second",
        "description": "d2",
        "metadata": {"a": None, "b": "2"},
        "overrides": {"max_tokens": None, "max_retries": 7},
    }
    changed = await ok(client.patch(f"/v1/agents/{agent['id']}/variants/{v['id']}", json=patch))
    update_revision = await newest_revision(client, agent["id"])

    body = await undo(client, agent["id"])
    assert body["reverted_revision_id"] == update_revision["id"]
    now = await variant(client, agent["id"], "first")
    assert editable(now) == editable(v)
    assert now["id"] == v["id"] and now["version"] == changed["version"] + 1
    assert body["revision"]["before"] == changed and body["revision"]["after"] == now
    assert_problem(await client.get(f"/v1/agents/{agent['id']}/variants/second"), 404, "resource_missing")


async def test_undo_of_an_agent_update_restores_the_before_state(client: httpx.AsyncClient) -> None:
    agent = await create_agent(
        client, description="before", metadata={"k": "v"}, config=config(temperature=0.7, max_tokens=50)
    )
    await ok(
        client.patch(
            f"/v1/agents/{agent['id']}",
            json={
                "name": "New name",
                "slug": agent["slug"] + "-new",
                "description": "after",
                "metadata": {"k": None},
                "config": {"temperature": 0.1, "context_window": 500, "system_prompt": "hi"},
            },
        )
    )
    body = await undo(client, agent["id"])
    now = await ok(client.get(f"/v1/agents/{agent['id']}"))
    assert without(now, "version", "updated_at") == without(agent, "version", "updated_at")
    assert body["revision"]["target"] == "agent" and body["revision"]["after"] == now
    assert (await ok(client.get(f"/v1/agents/{agent['slug']}")))["id"] == agent["id"]


async def test_undo_of_an_activation_restores_the_previous_active_variant_or_none(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    a = await create_variant(client, aid)
    b = await create_variant(client, aid)
    await ok(client.post(f"/v1/agents/{aid}/variants/{a['id']}/activate"))
    await ok(client.post(f"/v1/agents/{aid}/variants/{b['id']}/activate"))

    body = await undo(client, aid)
    assert body["revision"]["active_variant_id"] == a["id"]
    assert (await ok(client.get(f"/v1/agents/{aid}")))["active_variant_id"] == a["id"]
    assert (await variant(client, aid, a["id"]))["is_active"] is True
    assert (await variant(client, aid, b["id"]))["is_active"] is False
    assert (await ok(client.get(f"/v1/agents/{aid}/resolved")))["variant_id"] == a["id"]

    body = await undo(client, aid)  # now the activation of `a`: none was active before it
    assert body["revision"]["active_variant_id"] is None
    assert (await ok(client.get(f"/v1/agents/{aid}")))["active_variant_id"] is None
    listed = await ok(client.get(f"/v1/agents/{aid}/variants", params={"is_active": "true"}))
    assert listed["data"] == []


async def test_undo_of_a_deactivation_reactivates(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"], overrides={"temperature": 0.2})
    await ok(client.post(f"/v1/agents/{agent['id']}/variants/{v['id']}/activate"))
    await ok(client.post(f"/v1/agents/{agent['id']}/variants/{v['id']}/deactivate"))
    body = await undo(client, agent["id"])
    assert body["revision"]["active_variant_id"] == v["id"]
    assert (await variant(client, agent["id"], v["id"]))["is_active"] is True
    resolved = await ok(client.get(f"/v1/agents/{agent['id']}/resolved"))
    assert (resolved["variant_id"], resolved["temperature"]) == (v["id"], 0.2)


async def test_undo_of_a_delete_brings_the_variant_back_with_its_id_and_slug(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    source = await create_variant(client, agent["id"])
    v = await create_variant(
        client,
        agent["id"],
        slug="keeper",
        metadata={"x": "y"},
        description="kept",
        clone_from=source["slug"],
        overrides={"max_retries": 4},
    )
    before = await variant(client, agent["id"], v["id"])
    await ok(client.delete(f"/v1/agents/{agent['id']}/variants/{v['id']}"), 204)
    assert (await ok(client.get(f"/v1/agents/{agent['id']}")))["variant_count"] == 1

    body = await undo(client, agent["id"])
    back = await variant(client, agent["id"], "keeper")
    assert back["id"] == v["id"]
    assert without(back, "version", "updated_at") == without(before, "version", "updated_at")
    assert back["version"] > before["version"]
    assert body["revision"]["before"] is None and body["revision"]["after"] == back
    assert (await ok(client.get(f"/v1/agents/{agent['id']}")))["variant_count"] == 2


async def test_undo_of_a_create_removes_the_variant(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    body = await undo(client, agent["id"])
    assert body["revision"]["target_id"] == v["id"] and body["revision"]["after"] is None
    assert_problem(await client.get(f"/v1/agents/{agent['id']}/variants/{v['id']}"), 404, "resource_missing")
    assert (await ok(client.get(f"/v1/agents/{agent['id']}")))["variant_count"] == 0
    # The slug is free again.
    await create_variant(client, agent["id"], slug=v["slug"])


async def test_undo_response_names_the_reverted_revision_and_the_new_one(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    await create_variant(client, agent["id"])
    reverted = await newest_revision(client, agent["id"])
    response = await client.post(f"/v1/agents/{agent['id']}/undo", headers={"X-Actor": "bob"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == UNDO_KEYS
    assert body["object"] == "undo" and body["reverted_revision_id"] == reverted["id"]
    assert body["revision"]["action"] == "undo" and body["revision"]["actor"] == "bob"
    assert body["revision"]["target_id"] == reverted["target_id"]
    assert body["revision"] == await newest_revision(client, agent["id"])
    assert body["revision"] == await ok(client.get(f"/v1/agents/{agent['id']}/revisions/{body['revision']['id']}"))


async def test_the_agents_creation_is_never_undone(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    for _ in range(2):
        response = await client.post(f"/v1/agents/{agent['slug']}/undo")
        assert_problem(response, 409, "nothing_to_undo")
    assert (await ok(client.get(f"/v1/agents/{agent['id']}")))["id"] == agent["id"]
    assert len(await all_revisions(client, agent["id"])) == 1
    assert_problem(await client.post("/v1/agents/no-such-agent/undo"), 404, "resource_missing")


async def test_undo_skips_undo_revisions(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    a = await create_variant(client, agent["id"])
    b = await create_variant(client, agent["id"])
    first = await undo(client, agent["id"])
    second = await undo(client, agent["id"])
    assert {first["revision"]["target_id"], second["revision"]["target_id"]} == {a["id"], b["id"]}
    assert_problem(await client.post(f"/v1/agents/{agent['id']}/undo"), 409, "nothing_to_undo")


async def test_undo_honours_if_match_against_the_agent(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    await create_variant(client, agent["id"])
    stale = await client.post(f"/v1/agents/{agent['id']}/undo", headers={"If-Match": f'"{agent["version"] + 1}"'})
    assert_problem(stale, 412, "precondition_failed")
    assert (await ok(client.get(f"/v1/agents/{agent['id']}")))["variant_count"] == 1
    await ok(client.post(f"/v1/agents/{agent['id']}/undo", headers={"If-Match": f'"{agent["version"]}"'}))


# ---------------------------------------------------------------- walking back to the creation


async def test_undo_after_undo_walks_back_to_the_agents_creation(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, metadata={"team": "a"}, config=config(max_tokens=100))
    aid = agent["id"]
    base = f"/v1/agents/{aid}/variants"
    states = [await snapshot(client, aid)]  # the state after each change not undone, oldest first
    reverts: list[str] = []  # the revision of each of those changes

    async def change(request: Any, status: int = 200) -> dict[str, Any]:
        body = await ok(request, status)
        states.append(await snapshot(client, aid))
        reverts.append((await newest_revision(client, aid))["id"])
        return body

    async def step_back() -> None:
        body = await undo(client, aid)
        assert body["reverted_revision_id"] == reverts.pop()
        states.pop()
        assert await snapshot(client, aid) == states[-1]

    await change(
        client.patch(
            f"/v1/agents/{aid}",
            json={"slug": agent["slug"] + "-x", "metadata": {"env": "prod"}, "config": {"temperature": 0.2}},
        )
    )
    a = await change(client.post(base, json={"variant_name": "A", "overrides": {"max_tokens": 50}}), 201)
    b = await change(client.post(base, json={"variant_name": "B", "clone_from": "base"}), 201)
    await change(client.post(f"{base}/{a['id']}/activate"))
    await change(client.patch(f"{base}/{a['id']}", json={"slug": "a-two", "overrides": {"system_prompt": "s"}}))
    await change(client.post(f"{base}/{b['id']}/activate"))
    await step_back()  # back to `a` active
    await change(client.post(f"{base}/{b['id']}/activate"))
    await change(client.post(f"{base}/{b['id']}/deactivate"))
    await change(client.delete(f"{base}/a-two"), 204)
    await step_back()  # `a` is back
    await change(client.delete(f"{base}/{a['id']}"), 204)
    c = await change(
        client.post(base, json={"variant_name": "C", "clone_from": b["id"], "overrides": {"max_retries": 1}}), 201
    )
    await change(client.patch(f"/v1/agents/{aid}", json={"config": {"context_window": 1000}}))
    await change(client.patch(f"{base}/{b['id']}", json={"description": "tuned", "overrides": {"prompt_version": "7"}}))
    created_b = (await all_revisions(client, aid, target_id=b["id"]))[-1]
    await change(client.post(f"{base}/{b['id']}/restore", json={"revision_id": created_b["id"]}))
    await change(client.post(f"{base}/{c['id']}/activate"))

    while reverts:
        await step_back()
    assert_problem(await client.post(f"/v1/agents/{aid}/undo"), 409, "nothing_to_undo")
    final = await snapshot(client, aid)
    assert final == states[0]
    assert final["variants"] == [] and final["agent"]["variant_count"] == 0
    assert without(final["agent"], "active_variant_id", "variant_count") == without(
        agent, "active_variant_id", "variant_count", "version", "updated_at"
    )


# ---------------------------------------------------------------- undo that would break a rule


async def test_undo_of_a_delete_whose_overrides_no_longer_fit_is_undo_conflict(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    # An inactive variant is not checked when the agent changes, so the window may shrink
    # under it; bringing it back would break the rule.
    agent = await create_agent(client, config=config(max_tokens=100))
    aid = agent["id"]
    v = await create_variant(client, aid, slug="big", overrides={"max_tokens": 5000})
    await ok(client.patch(f"/v1/agents/{aid}", json={"config": {"context_window": 1000}}))
    await ok(client.delete(f"/v1/agents/{aid}/variants/{v['id']}"), 204)
    delete_revision = await newest_revision(client, aid)
    before, count = await snapshot(client, aid), await stored_revision_count(conn, aid)

    for _ in range(2):  # it stays the newest change not undone: undo does not skip past it
        body = assert_problem(await client.post(f"/v1/agents/{aid}/undo"), 409, "undo_conflict")
        assert body["detail"]
    assert await snapshot(client, aid) == before
    assert await stored_revision_count(conn, aid) == count
    assert await newest_revision(client, aid) == delete_revision
    assert_problem(await client.get(f"/v1/agents/{aid}/variants/big"), 404, "resource_missing")


async def test_undo_of_an_update_whose_before_no_longer_fits_is_undo_conflict(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    agent = await create_agent(client, config=config(max_tokens=100))
    aid = agent["id"]
    v = await create_variant(client, aid, overrides={"max_tokens": 5000})
    await ok(client.patch(f"/v1/agents/{aid}", json={"config": {"context_window": 1000}}))
    await ok(client.patch(f"/v1/agents/{aid}/variants/{v['id']}", json={"overrides": {"max_tokens": 500}}))
    before, count = await snapshot(client, aid), await stored_revision_count(conn, aid)

    assert_problem(await client.post(f"/v1/agents/{aid}/undo"), 409, "undo_conflict")
    assert await snapshot(client, aid) == before
    assert await stored_revision_count(conn, aid) == count
    assert (await variant(client, aid, v["id"]))["overrides"] == {"max_tokens": 500}


async def test_undo_of_a_delete_whose_slug_was_taken_since_is_undo_conflict(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    # Through the API, every change after the delete would be undone first, freeing the
    # slug; a write the history does not know of (an operator's SQL) can still take it.
    agent = await create_agent(client)
    aid = agent["id"]
    gone = await create_variant(client, aid, slug="x")
    other = await create_variant(client, aid, slug="y")
    await ok(client.delete(f"/v1/agents/{aid}/variants/x"), 204)
    await conn.execute(text("UPDATE variants SET slug = 'x' WHERE id = :id"), {"id": other["id"]})
    before, count = await snapshot(client, aid), await stored_revision_count(conn, aid)

    body = assert_problem(await client.post(f"/v1/agents/{aid}/undo"), 409, "undo_conflict")
    assert "x" in body["detail"]
    assert await snapshot(client, aid) == before
    assert await stored_revision_count(conn, aid) == count
    assert (await variant(client, aid, "x"))["id"] == other["id"]
    assert_problem(await client.get(f"/v1/agents/{aid}/variants/{gone['id']}"), 404, "resource_missing")


# ---------------------------------------------------------------- concurrent undos


@pytest.mark.live
async def test_concurrent_undos_each_revert_a_different_revision(live_client: httpx.AsyncClient) -> None:
    client = live_client
    agent = await create_agent(client)
    aid = agent["id"]
    try:
        created = await snapshot(client, aid)
        a = await create_variant(client, aid, overrides={"max_tokens": 10})
        b = await create_variant(client, aid)
        await ok(client.post(f"/v1/agents/{aid}/variants/{a['id']}/activate"))
        await ok(client.patch(f"/v1/agents/{aid}/variants/{b['id']}", json={"overrides": {"temperature": 0.3}}))
        await ok(client.patch(f"/v1/agents/{aid}", json={"config": {"max_retries": 9}}))
        history = await all_revisions(client, aid)
        changes = {r["id"] for r in history if (r["target"], r["action"]) != ("agent", "create")}
        assert len(changes) == 5

        responses = await asyncio.gather(*(client.post(f"/v1/agents/{aid}/undo") for _ in range(8)))
        done = [r.json() for r in responses if r.status_code == 200]
        for response in responses:
            if response.status_code != 200:
                assert_problem(response, 409, "nothing_to_undo")
        reverted = [body["reverted_revision_id"] for body in done]
        assert len(reverted) == len(set(reverted)) == 5
        assert set(reverted) == changes
        assert len({body["revision"]["id"] for body in done}) == 5
        assert await snapshot(client, aid) == created
        history = await all_revisions(client, aid)
        assert sum(r["action"] == "undo" for r in history) == 5
    finally:
        await ok(client.delete(f"/v1/agents/{aid}"), 204)


# ---------------------------------------------------------------- restore


async def test_restore_sets_the_variant_as_right_after_the_revision(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    v = await create_variant(
        client, aid, variant_name="One", slug="one", description="d1", metadata={"a": "1"}, overrides={"max_tokens": 10}
    )
    path = f"/v1/agents/{aid}/variants/{v['id']}"
    await ok(
        client.patch(
            path,
            json={
                "variant_name": "Two",
                "description": "d2",
                "metadata": {"b": "2"},
                "overrides": {"max_tokens": 20, "temperature": 0.4},
            },
        )
    )
    middle = await newest_revision(client, aid)
    await ok(
        client.patch(
            path,
            json={
                "variant_name": "Three",
                "slug": "three",
                "metadata": {"a": None},
                "overrides": {"max_tokens": None, "max_retries": 3},
            },
        )
    )
    await ok(client.post(f"{path}/activate"))

    restored = await ok(client.post(f"{path}/restore", json={"revision_id": middle["id"]}))
    assert (restored["variant_name"], restored["description"], restored["metadata"], restored["overrides"]) == (
        "Two",
        "d2",
        {"a": "1", "b": "2"},
        {"max_tokens": 20, "temperature": 0.4},
    )
    assert restored["slug"] == "three"  # the slug is not restored
    assert restored["is_active"] is True
    assert await variant(client, aid, v["id"]) == restored
    revision = await newest_revision(client, aid)
    assert (revision["action"], revision["target_id"], revision["after"]) == ("restore", v["id"], restored)
    resolved = await ok(client.get(f"/v1/agents/{aid}/resolved"))
    assert (resolved["max_tokens"], resolved["temperature"], resolved["max_retries"]) == (20, 0.4, 2)

    first = (await all_revisions(client, aid, target_id=v["id"]))[-1]
    again = await ok(client.post(f"/v1/agents/{aid}/variants/three/restore", json={"revision_id": first["id"]}))
    assert editable(again) == {**editable(v), "slug": "three"}


async def test_restore_with_a_revision_of_another_target_is_422(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    a = await create_variant(client, agent["id"])
    b = await create_variant(client, agent["id"])
    of_b = await newest_revision(client, agent["id"])
    of_agent = (await all_revisions(client, agent["id"], target_id=agent["id"]))[0]
    for revision in (of_b, of_agent):
        response = await client.post(
            f"/v1/agents/{agent['id']}/variants/{a['id']}/restore", json={"revision_id": revision["id"]}
        )
        assert_problem(response, 422, "validation_error")
        assert problem_params(response) == {"revision_id"}
    assert await variant(client, agent["id"], a["id"]) == a
    assert b["id"] == of_b["target_id"]


@pytest.mark.parametrize("revision_id", [MISSING_REVISION, "nope", "var_01JD0000000000000000000000"])
async def test_restore_with_an_unknown_revision_is_404_naming_revision_id(
    client: httpx.AsyncClient, revision_id: str
) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    response = await client.post(
        f"/v1/agents/{agent['id']}/variants/{v['id']}/restore", json={"revision_id": revision_id}
    )
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"revision_id"}


async def test_restore_with_a_revision_of_another_agent_is_404(client: httpx.AsyncClient) -> None:
    mine, theirs = await create_agent(client), await create_agent(client)
    v = await create_variant(client, mine["id"])
    their_revision = await newest_revision(client, theirs["id"])
    response = await client.post(
        f"/v1/agents/{mine['id']}/variants/{v['id']}/restore", json={"revision_id": their_revision["id"]}
    )
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"revision_id"}


async def test_restore_to_the_revision_that_deleted_the_variant_is_409(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    await ok(client.delete(f"/v1/agents/{agent['id']}/variants/{v['id']}"), 204)
    deleted = await newest_revision(client, agent["id"])
    await undo(client, agent["id"])
    response = await client.post(
        f"/v1/agents/{agent['id']}/variants/{v['id']}/restore", json={"revision_id": deleted["id"]}
    )
    assert_problem(response, 409, "revision_not_restorable")
    assert (await newest_revision(client, agent["id"]))["action"] == "undo"


async def test_restore_rejects_bad_bodies_and_inconsistent_results(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(max_tokens=100))
    v = await create_variant(client, agent["id"], overrides={"max_tokens": 5000})
    created = await newest_revision(client, agent["id"])
    path = f"/v1/agents/{agent['id']}/variants/{v['id']}/restore"
    response = await client.post(path, json={"revision_id": created["id"], "extra": 1})
    assert_problem(response, 422, "validation_error")
    assert_problem(await client.post(path, json={}), 422, "validation_error")

    await ok(client.patch(f"/v1/agents/{agent['id']}/variants/{v['id']}", json={"overrides": {"max_tokens": 50}}))
    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"config": {"context_window": 1000}}))
    response = await client.post(path, json={"revision_id": created["id"]})
    assert_problem(response, 422, "inconsistent_config")
    assert (await variant(client, agent["id"], v["id"]))["overrides"] == {"max_tokens": 50}

    stale = await client.post(path, json={"revision_id": created["id"]}, headers={"If-Match": '"1"'})
    assert_problem(stale, 412, "precondition_failed")


# ---------------------------------------------------------------- diff


def changes_of(body: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    assert set(body) == {"object", "changes"} and body["object"] == "diff"
    for change in body["changes"]:
        assert set(change) == {"field", "from", "to"}
        assert change["from"] != change["to"]
    fields = [change["field"] for change in body["changes"]]
    assert len(fields) == len(set(fields))
    return {change["field"]: (change["from"], change["to"]) for change in body["changes"]}


async def diff(client: httpx.AsyncClient, agent: str, ref: str, against: str) -> dict[str, tuple[Any, Any]]:
    return changes_of(await ok(client.get(f"/v1/agents/{agent}/variants/{ref}/diff", params={"against": against})))


async def test_diff_against_base_lists_only_the_differing_resolved_fields(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(temperature=0.7))
    v = await create_variant(
        client, agent["id"], overrides={"temperature": 0.2, "max_tokens": 2048, "model_name": "gpt-4o"}
    )  # same as base
    assert await diff(client, agent["id"], v["slug"], "base") == {"temperature": (0.7, 0.2), "max_tokens": (1024, 2048)}
    plain = await create_variant(client, agent["id"])
    assert await diff(client, agent["id"], plain["id"], "base") == {}
    # The base moves: the diff is over resolved values now.
    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"config": {"temperature": 0.2, "max_retries": 5}}))
    assert await diff(client, agent["id"], v["id"], "base") == {"max_tokens": (1024, 2048)}


async def test_diff_against_another_variant(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    a = await create_variant(client, agent["id"], overrides={"temperature": 0.2, "system_prompt": "same"})
    b = await create_variant(client, agent["id"], overrides={"system_prompt": "same", "max_retries": 9})
    expected = {"temperature": (1.0, 0.2), "max_retries": (9, 2)}
    assert await diff(client, agent["id"], a["id"], b["slug"]) == expected
    assert await diff(client, agent["id"], a["slug"], b["id"]) == expected
    assert await diff(client, agent["id"], b["id"], a["id"]) == {"temperature": (0.2, 1.0), "max_retries": (2, 9)}
    assert await diff(client, agent["id"], a["id"], a["slug"]) == {}


async def test_diff_against_a_revision(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(max_retries=3))
    agent_created = await newest_revision(client, agent["id"])
    v = await create_variant(client, agent["id"], overrides={"temperature": 0.2})
    variant_created = await newest_revision(client, agent["id"])
    await ok(
        client.patch(
            f"/v1/agents/{agent['id']}/variants/{v['id']}", json={"overrides": {"temperature": 0.9, "max_tokens": 77}}
        )
    )
    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_retries": 4}}))

    # A variant's revision: its overrides then, over the base of then.
    assert await diff(client, agent["id"], v["id"], variant_created["id"]) == {
        "temperature": (0.2, 0.9),
        "max_tokens": (1024, 77),
        "max_retries": (3, 4),
    }
    # An agent's revision: the base config then.
    assert await diff(client, agent["id"], v["id"], agent_created["id"]) == {
        "temperature": (1.0, 0.9),
        "max_tokens": (1024, 77),
        "max_retries": (3, 4),
    }


@pytest.mark.parametrize("against", ["no-such-variant", "var_01JD0000000000000000000000", MISSING_REVISION])
async def test_diff_against_something_unknown_is_404_naming_against(client: httpx.AsyncClient, against: str) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    response = await client.get(f"/v1/agents/{agent['id']}/variants/{v['id']}/diff", params={"against": against})
    body = assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"against"}
    assert against in body["detail"]


async def test_diff_needs_against_and_a_known_variant(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    response = await client.get(f"/v1/agents/{agent['id']}/variants/{v['id']}/diff")
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"against"}
    response = await client.get(f"/v1/agents/{agent['id']}/variants/nope/diff", params={"against": "base"})
    assert_problem(response, 404, "resource_missing")


async def test_diff_against_the_revision_that_deleted_a_variant_is_409(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    gone = await create_variant(client, agent["id"])
    await ok(client.delete(f"/v1/agents/{agent['id']}/variants/{gone['id']}"), 204)
    deleted = await newest_revision(client, agent["id"])
    response = await client.get(f"/v1/agents/{agent['id']}/variants/{v['id']}/diff", params={"against": deleted["id"]})
    assert_problem(response, 409, "revision_not_restorable")
