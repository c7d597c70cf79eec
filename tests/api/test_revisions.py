"""Revisions: every change writes exactly one, with the full objects; list, filter, get."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.api.history_support import (
    REVISION_ID,
    REVISION_KEYS,
    TIMESTAMP,
    all_revisions,
    newest_revision,
    stored_revision_count,
)
from tests.helpers import TEST_KEY_NAME, assert_problem, config, create_agent, create_variant, problem_params, unique

ACTOR = {"X-Actor": "alice@example.com"}


class History:
    """Asserts that each step of a test wrote exactly one revision, and what it says."""

    def __init__(self, client: httpx.AsyncClient, conn: AsyncConnection, agent_id: str) -> None:
        self.client, self.conn, self.agent_id = client, conn, agent_id
        self.count = 0
        self.seen: set[str] = set()
        self.newest: str | None = None

    async def start(self) -> None:
        self.count = await stored_revision_count(self.conn, self.agent_id)
        listed = await all_revisions(self.client, self.agent_id)
        self.seen = {r["id"] for r in listed}
        self.newest = listed[0]["id"]

    async def expect(
        self,
        *,
        target: str,
        target_id: str,
        action: str,
        active: str | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        actor: str = TEST_KEY_NAME,
    ) -> dict[str, Any]:
        assert await stored_revision_count(self.conn, self.agent_id) == self.count + 1
        self.count += 1
        revision = await newest_revision(self.client, self.agent_id)
        assert revision["id"] not in self.seen
        self.seen.add(revision["id"])
        self.newest = revision["id"]
        assert set(revision) == REVISION_KEYS
        assert revision["object"] == "revision"
        assert REVISION_ID.match(revision["id"]), revision["id"]
        assert TIMESTAMP.match(revision["created_at"]), revision["created_at"]
        assert revision["agent_id"] == self.agent_id
        assert (revision["target"], revision["target_id"], revision["action"]) == (target, target_id, action)
        # X-Actor when sent, else the key's name; the key is always named.
        assert revision["actor"] == actor
        assert revision["api_key"] == TEST_KEY_NAME
        assert revision["active_variant_id"] == active
        assert revision["before"] == before
        assert revision["after"] == after
        return revision

    async def expect_none(self) -> None:
        assert await stored_revision_count(self.conn, self.agent_id) == self.count
        assert (await newest_revision(self.client, self.agent_id))["id"] == self.newest


async def get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------- one revision per change


async def test_agent_create_and_update_write_one_revision_each(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    response = await client.post("/v1/agents", json={"name": unique(), "config": config()}, headers=ACTOR)
    assert response.status_code == 201, response.text
    agent = response.json()
    history = History(client, conn, agent["id"])
    await history.expect(
        target="agent",
        target_id=agent["id"],
        action="create",
        active=None,
        before=None,
        after=agent,
        actor=ACTOR["X-Actor"],
    )

    patch = {"name": "Renamed", "description": "new", "metadata": {"team": "x"}, "config": {"temperature": 0.3}}
    response = await client.patch(f"/v1/agents/{agent['id']}", json=patch)
    assert response.status_code == 200, response.text
    updated = response.json()
    await history.expect(
        target="agent", target_id=agent["id"], action="update", active=None, before=agent, after=updated
    )
    # Without X-Actor the actor is the name of the key that made the change.
    assert (await newest_revision(client, agent["id"]))["actor"] == TEST_KEY_NAME


async def test_variant_changes_write_one_revision_each(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    base = f"/v1/agents/{aid}/variants"
    history = History(client, conn, aid)
    await history.start()

    response = await client.post(
        base, json={"variant_name": unique("variant"), "overrides": {"max_tokens": 9}}, headers=ACTOR
    )
    assert response.status_code == 201, response.text
    a = response.json()
    await history.expect(
        target="variant", target_id=a["id"], action="create", active=None, before=None, after=a, actor=ACTOR["X-Actor"]
    )

    b = await create_variant(client, aid, overrides={"temperature": 0.1})
    await history.expect(target="variant", target_id=b["id"], action="create", active=None, before=None, after=b)

    response = await client.patch(
        f"{base}/{a['id']}",
        json={"overrides": {"max_tokens": None, "max_retries": 5}, "slug": "renamed-a"},
        headers=ACTOR,
    )
    assert response.status_code == 200, response.text
    a2 = response.json()
    await history.expect(
        target="variant", target_id=a["id"], action="update", active=None, before=a, after=a2, actor=ACTOR["X-Actor"]
    )

    response = await client.post(f"{base}/renamed-a/activate")
    assert response.status_code == 200, response.text
    a3 = response.json()
    await history.expect(target="variant", target_id=a["id"], action="activate", active=a["id"], before=a2, after=a3)

    # Activating another one: one revision (of the variant activated), naming it active after.
    b_before = await get(client, f"{base}/{b['id']}")
    response = await client.post(f"{base}/{b['id']}/activate")
    assert response.status_code == 200, response.text
    b2 = response.json()
    await history.expect(
        target="variant", target_id=b["id"], action="activate", active=b["id"], before=b_before, after=b2
    )

    response = await client.post(f"{base}/{b['id']}/deactivate")
    assert response.status_code == 200, response.text
    b3 = response.json()
    await history.expect(target="variant", target_id=b["id"], action="deactivate", active=None, before=b2, after=b3)

    a_before = await get(client, f"{base}/{a['id']}")
    response = await client.delete(f"{base}/{a['id']}")
    assert response.status_code == 204, response.text
    await history.expect(target="variant", target_id=a["id"], action="delete", active=None, before=a_before, after=None)

    # The agent's own revisions do not move with its variants: only the create is its.
    own = await all_revisions(client, aid, target_id=aid)
    assert [r["action"] for r in own] == ["create"]


async def test_restore_and_undo_write_one_revision_each(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    v = await create_variant(client, aid, variant_name="First", description="one", overrides={"max_tokens": 7})
    created = await newest_revision(client, aid)
    response = await client.patch(
        f"/v1/agents/{aid}/variants/{v['id']}", json={"variant_name": "Second", "overrides": {"max_tokens": 8}}
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    history = History(client, conn, aid)
    await history.start()

    response = await client.post(
        f"/v1/agents/{aid}/variants/{v['id']}/restore", json={"revision_id": created["id"]}, headers=ACTOR
    )
    assert response.status_code == 200, response.text
    restored = response.json()
    assert (restored["variant_name"], restored["overrides"]) == ("First", {"max_tokens": 7})
    await history.expect(
        target="variant",
        target_id=v["id"],
        action="restore",
        active=None,
        before=patched,
        after=restored,
        actor=ACTOR["X-Actor"],
    )

    response = await client.post(f"/v1/agents/{aid}/undo", headers=ACTOR)
    assert response.status_code == 200, response.text
    undone = await get(client, f"/v1/agents/{aid}/variants/{v['id']}")
    assert (undone["variant_name"], undone["overrides"]) == ("Second", {"max_tokens": 8})
    revision = await history.expect(
        target="variant",
        target_id=v["id"],
        action="undo",
        active=None,
        before=restored,
        after=undone,
        actor=ACTOR["X-Actor"],
    )
    assert response.json()["revision"] == revision


async def test_undo_of_an_agent_update_records_the_agent_objects(
    client: httpx.AsyncClient, conn: AsyncConnection
) -> None:
    agent = await create_agent(client)
    v = await create_variant(client, agent["id"])
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{v['id']}/activate")
    assert response.status_code == 200, response.text
    before = await get(client, f"/v1/agents/{agent['id']}")
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_retries": 9}})
    assert response.status_code == 200, response.text
    changed = response.json()
    history = History(client, conn, agent["id"])
    await history.start()

    response = await client.post(f"/v1/agents/{agent['id']}/undo")
    assert response.status_code == 200, response.text
    after = await get(client, f"/v1/agents/{agent['id']}")
    assert after["config"] == before["config"]
    await history.expect(
        target="agent", target_id=agent["id"], action="undo", active=v["id"], before=changed, after=after
    )


async def test_writes_that_change_nothing_write_no_revision(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    agent = await create_agent(client, metadata={"k": "v"})
    aid = agent["id"]
    base = f"/v1/agents/{aid}/variants"
    a = await create_variant(client, aid, overrides={"temperature": 0.5}, metadata={"m": "1"})
    b = await create_variant(client, aid)
    response = await client.post(f"{base}/{a['id']}/activate")
    assert response.status_code == 200, response.text
    created = (await all_revisions(client, aid, target_id=a["id"]))[-1]
    history = History(client, conn, aid)
    await history.start()

    no_ops = [
        ("POST", f"{base}/{a['id']}/activate", None),
        ("POST", f"{base}/{b['id']}/deactivate", None),
        (
            "PATCH",
            f"{base}/{a['id']}",
            {
                "overrides": {"temperature": 0.5},
                "variant_name": a["variant_name"],
                "metadata": {"m": "1"},
                "description": "",
            },
        ),
        ("PATCH", f"{base}/{b['id']}", {"overrides": {"max_tokens": None}}),
        ("PATCH", f"{base}/{a['id']}", {}),
        (
            "PATCH",
            f"/v1/agents/{aid}",
            {"config": {"temperature": 1.0}, "name": agent["name"], "metadata": {"k": "v"}, "slug": agent["slug"]},
        ),
        ("POST", f"{base}/{a['id']}/restore", {"revision_id": created["id"]}),
    ]
    for method, path, body in no_ops:
        before = await client.get(path.removesuffix("/activate").removesuffix("/deactivate").removesuffix("/restore"))
        response = await client.request(method, path, json=body)
        assert response.status_code == 200, (path, response.text)
        # Nothing moved: same version, and no revision.
        assert response.json()["version"] == before.json()["version"], path
        await history.expect_none()


# ---------------------------------------------------------------- list, filter, get


async def test_list_is_newest_first_and_pages_without_repeats(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    for n in range(3):
        await create_variant(client, aid)
        response = await client.patch(f"/v1/agents/{aid}", json={"config": {"max_retries": n + 3}})
        assert response.status_code == 200, response.text
    everything = await all_revisions(client, aid)
    assert len(everything) == 7
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 7
    times = [r["created_at"] for r in everything]
    assert times == sorted(times, reverse=True)
    assert everything[-1]["action"] == "create" and everything[-1]["target"] == "agent"

    pages, after = [], None
    while True:
        params = {"limit": 3, **({"after": after} if after else {})}
        response = await client.get(f"/v1/agents/{aid}/revisions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["object"] == "list"
        assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
        pages.append(page)
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert [len(p["data"]) for p in pages] == [3, 3, 1]
    assert [r["id"] for p in pages for r in p["data"]] == ids

    # `after` the oldest: an empty page with null ends.
    response = await client.get(f"/v1/agents/{aid}/revisions", params={"after": ids[-1]})
    assert response.json() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize(
    "cursor", ["nope", "var_01JD0000000000000000000000", "rev_123", "agt_01JD0000000000000000000000"]
)
async def test_a_cursor_that_is_not_a_revision_id_is_invalid_cursor(client: httpx.AsyncClient, cursor: str) -> None:
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/revisions", params={"after": cursor})
    assert_problem(response, 422, "invalid_cursor")
    assert problem_params(response) == {"after"}


@pytest.mark.parametrize("limit", [0, 101, "x"])
async def test_limit_out_of_range_is_422(client: httpx.AsyncClient, limit: Any) -> None:
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/revisions", params={"limit": limit})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"limit"}


async def test_target_id_filters_and_pages(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    aid = agent["id"]
    a = await create_variant(client, aid)
    b = await create_variant(client, aid)
    for n in range(3):
        for v in (a, b):
            response = await client.patch(
                f"/v1/agents/{aid}/variants/{v['id']}", json={"overrides": {"max_retries": n}}
            )
            assert response.status_code == 200, response.text
    response = await client.patch(f"/v1/agents/{aid}", json={"description": "d"})
    assert response.status_code == 200

    of_a = await all_revisions(client, aid, target_id=a["id"])
    assert [r["action"] for r in of_a] == ["update"] * 3 + ["create"]
    assert {r["target_id"] for r in of_a} == {a["id"]}
    assert [r["id"] for r in of_a] == sorted((r["id"] for r in of_a), reverse=True)
    of_agent = await all_revisions(client, aid, target_id=aid)
    assert [r["action"] for r in of_agent] == ["update", "create"]

    # Paging within the filter: `after` an id of another target still positions by id.
    everything = await all_revisions(client, aid)
    middle = everything[3]["id"]
    response = await client.get(f"/v1/agents/{aid}/revisions", params={"target_id": a["id"], "after": middle})
    expected = [r["id"] for r in of_a if r["id"] < middle]
    assert [r["id"] for r in response.json()["data"]] == expected

    response = await client.get(f"/v1/agents/{aid}/revisions", params={"target_id": "var_01JD0000000000000000000000"})
    assert response.status_code == 200 and response.json()["data"] == []


async def test_get_one_revision(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    await create_variant(client, agent["id"])
    listed = await all_revisions(client, agent["id"])
    for revision in listed:
        for ref in (agent["id"], agent["slug"]):
            response = await client.get(f"/v1/agents/{ref}/revisions/{revision['id']}")
            assert response.status_code == 200, response.text
            assert response.json() == revision


async def test_unknown_revision_or_one_of_another_agent_is_404(client: httpx.AsyncClient) -> None:
    mine = await create_agent(client)
    other = await create_agent(client)
    theirs = await newest_revision(client, other["id"])
    for revision in (theirs["id"], "rev_01JD0000000000000000000000", "nope"):
        response = await client.get(f"/v1/agents/{mine['id']}/revisions/{revision}")
        body = assert_problem(response, 404, "resource_missing")
        assert revision in body["detail"]
    response = await client.get("/v1/agents/no-such-agent/revisions")
    assert_problem(response, 404, "resource_missing")
    response = await client.get(f"/v1/agents/no-such-agent/revisions/{theirs['id']}")
    assert_problem(response, 404, "resource_missing")


async def test_revisions_go_away_with_a_purged_agent(client: httpx.AsyncClient, conn: AsyncConnection) -> None:
    agent = await create_agent(client)
    survivor = await create_agent(client)
    v = await create_variant(client, agent["id"])
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{v['id']}/activate")
    assert response.status_code == 200
    assert await stored_revision_count(conn, agent["id"]) == 3

    response = await client.delete(f"/v1/agents/{agent['id']}")
    assert response.status_code == 204, response.text
    assert await stored_revision_count(conn, agent["id"]) == 4  # archived: its history stays, plus `archive`
    response = await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})
    assert response.status_code == 204, response.text
    assert await stored_revision_count(conn, agent["id"]) == 0
    left = await conn.scalar(text("SELECT count(*) FROM revisions WHERE target_id = :v"), {"v": v["id"]})
    assert left == 0
    assert_problem(await client.get(f"/v1/agents/{agent['id']}/revisions"), 404, "resource_missing")
    # Another agent's history is untouched.
    assert await stored_revision_count(conn, survivor["id"]) == 1


async def test_target_id_that_is_not_an_id_of_this_agent_matches_nothing(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    other = await create_agent(client)
    theirs = await create_variant(client, other["id"])
    for target_id in ("nope", theirs["id"], other["id"]):
        response = await client.get(f"/v1/agents/{agent['id']}/revisions", params={"target_id": target_id})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == [] and response.json()["has_more"] is False


@pytest.mark.live
async def test_concurrent_changes_are_recorded_in_the_order_they_applied(live_client: httpx.AsyncClient) -> None:
    """Racing PATCHes to one agent: sorted by `created_at`, each revision's `before` is the
    previous one's `after`, so history replays exactly what happened."""
    client = live_client
    agent = await create_agent(client)
    try:
        responses = await asyncio.gather(
            *(client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_retries": n}}) for n in range(3, 15))
        )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        history = sorted(await all_revisions(client, agent["id"]), key=lambda r: (r["created_at"], r["id"]))
        assert len(history) == 13 and history[0]["action"] == "create"
        assert len({r["created_at"] for r in history}) == 13
        for previous, revision in zip(history, history[1:], strict=False):
            assert revision["before"] == previous["after"]
            assert revision["after"]["version"] == previous["after"]["version"] + 1
        final = (await client.get(f"/v1/agents/{agent['id']}")).json()
        assert history[-1]["after"] == final
    finally:
        assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
