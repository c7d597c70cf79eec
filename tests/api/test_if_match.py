"""If-Match on every write, the ETag every write returns, concurrent If-Match PATCHes and X-Actor.

Each write is tried against a target whose version has moved past 1, so `"1"` is stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.helpers import TEST_KEY_NAME, assert_problem, create_agent, create_variant, problem_params


@dataclass(frozen=True)
class Write:
    """One conditional write: the request, and the object whose ETag it is checked against."""

    method: str
    url: str
    agent_id: str
    target_url: str  # GET it for the ETag If-Match compares with
    json: Any = None
    success: int = 200

    async def send(self, client: httpx.AsyncClient, if_match: str | None) -> httpx.Response:
        headers = {"If-Match": if_match} if if_match is not None else {}
        return await client.request(self.method, self.url, json=self.json, headers=headers)


async def ok(response: Awaitable[httpx.Response], status: int = 200) -> dict[str, Any]:
    result = await response
    assert result.status_code == status, result.text
    return result.json() if result.content else {}


def variant_url(agent: dict[str, Any], variant: dict[str, Any]) -> str:
    return f"/v1/agents/{agent['id']}/variants/{variant['id']}"


async def agent_moved(client: httpx.AsyncClient) -> dict[str, Any]:
    """An agent at version 2."""
    agent = await create_agent(client, description="first")
    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"description": "second"}))
    return agent


async def variant_moved(client: httpx.AsyncClient, **body: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A variant at version 2, and the create revision of it."""
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.5}, **body)
    created = (await ok(client.get(f"/v1/agents/{agent['id']}/revisions")))["data"][0]["id"]
    await ok(client.patch(variant_url(agent, variant), json={"overrides": {"temperature": 0.7}}))
    return agent, variant, created


async def patch_agent(client: httpx.AsyncClient) -> Write:
    agent = await agent_moved(client)
    url = f"/v1/agents/{agent['id']}"
    return Write("PATCH", url, agent["id"], url, json={"description": "changed"})


async def delete_agent(client: httpx.AsyncClient) -> Write:
    agent = await agent_moved(client)
    url = f"/v1/agents/{agent['id']}"
    return Write("DELETE", url, agent["id"], url, success=204)


async def patch_variant(client: httpx.AsyncClient) -> Write:
    agent, variant, _ = await variant_moved(client)
    url = variant_url(agent, variant)
    return Write("PATCH", url, agent["id"], url, json={"description": "changed"})


async def delete_variant(client: httpx.AsyncClient) -> Write:
    agent, variant, _ = await variant_moved(client)
    url = variant_url(agent, variant)
    return Write("DELETE", url, agent["id"], url, success=204)


async def activate(client: httpx.AsyncClient) -> Write:
    agent, variant, _ = await variant_moved(client)
    url = variant_url(agent, variant)
    return Write("POST", f"{url}/activate", agent["id"], url)


async def deactivate(client: httpx.AsyncClient) -> Write:
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    url = variant_url(agent, variant)
    await ok(client.post(f"{url}/activate"))
    return Write("POST", f"{url}/deactivate", agent["id"], url)


async def restore(client: httpx.AsyncClient) -> Write:
    agent, variant, created = await variant_moved(client)
    url = variant_url(agent, variant)
    return Write("POST", f"{url}/restore", agent["id"], url, json={"revision_id": created})


async def undo(client: httpx.AsyncClient) -> Write:
    """Undo is checked against the agent's ETag, whatever the change it reverts."""
    agent = await agent_moved(client)
    url = f"/v1/agents/{agent['id']}"
    return Write("POST", f"{url}/undo", agent["id"], url)


WRITES: dict[str, Callable[[httpx.AsyncClient], Awaitable[Write]]] = {
    "patch_agent": patch_agent,
    "delete_agent": delete_agent,
    "patch_variant": patch_variant,
    "delete_variant": delete_variant,
    "activate": activate,
    "deactivate": deactivate,
    "restore": restore,
    "undo": undo,
}
each_write = pytest.mark.parametrize("make", WRITES.values(), ids=WRITES.keys())


async def etag(client: httpx.AsyncClient, url: str) -> str:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{response.json()["version"]}"'
    return response.headers["etag"]


async def snapshot(client: httpx.AsyncClient, agent_id: str) -> tuple[Any, ...]:
    """Everything a write could change: the agent, its variants, its history."""
    agent = await client.get(f"/v1/agents/{agent_id}")
    if agent.status_code == 404:
        return (None,)
    variants = await client.get(f"/v1/agents/{agent_id}/variants", params={"limit": 100})
    revisions = await client.get(f"/v1/agents/{agent_id}/revisions", params={"limit": 100})
    return agent.json(), variants.json(), revisions.json()


async def assert_refused(client: httpx.AsyncClient, write: Write, if_match: str) -> None:
    before = await snapshot(client, write.agent_id)
    assert before[0] is not None

    response = await write.send(client, if_match)

    assert_problem(response, 412, "precondition_failed")
    assert await snapshot(client, write.agent_id) == before


async def assert_done(client: httpx.AsyncClient, write: Write, if_match: str) -> None:
    before = await snapshot(client, write.agent_id)

    response = await write.send(client, if_match)

    assert response.status_code == write.success, response.text
    assert await snapshot(client, write.agent_id) != before
    if write.success == 204:
        assert (await client.get(write.target_url)).status_code == 404


@each_write
async def test_a_stale_etag_is_412_and_changes_nothing(client, make):
    write = await make(client)
    assert await etag(client, write.target_url) != '"1"'

    await assert_refused(client, write, '"1"')


@each_write
async def test_the_current_etag_lets_the_write_through(client, make):
    write = await make(client)

    await assert_done(client, write, await etag(client, write.target_url))


@each_write
async def test_star_matches_any_version(client, make):
    write = await make(client)

    await assert_done(client, write, "*")


@each_write
async def test_a_weak_etag_never_matches(client, make):
    write = await make(client)
    current = await etag(client, write.target_url)

    await assert_refused(client, write, f"W/{current}")


@each_write
async def test_a_list_matches_when_one_of_its_tags_does(client, make):
    write = await make(client)
    current = await etag(client, write.target_url)

    await assert_refused(client, write, '"5000", "1"')
    await assert_done(client, write, f'"5000",{current} , "1"')


@each_write
async def test_an_unquoted_version_does_not_match(client, make):
    write = await make(client)
    current = await etag(client, write.target_url)

    await assert_refused(client, write, current.strip('"'))


@each_write
async def test_without_if_match_the_write_goes_through(client, make):
    write = await make(client)

    await assert_done(client, write, None)


async def test_undo_compares_with_the_agents_etag_not_the_variants(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    for description in ("one", "two"):
        await ok(client.patch(variant_url(agent, variant), json={"description": description}))
    agent_etag = await etag(client, f"/v1/agents/{agent['id']}")
    variant_etag = await etag(client, variant_url(agent, variant))
    assert (agent_etag, variant_etag) == ('"1"', '"3"')  # variant writes leave the agent's version
    write = Write("POST", f"/v1/agents/{agent['id']}/undo", agent["id"], f"/v1/agents/{agent['id']}")

    await assert_refused(client, write, variant_etag)
    await assert_done(client, write, agent_etag)
    assert (await client.get(variant_url(agent, variant))).json()["description"] == "one"


async def test_a_precondition_checked_no_op_still_refuses_a_stale_etag(client):
    agent = await agent_moved(client)
    url = f"/v1/agents/{agent['id']}"

    response = await client.patch(url, json={"description": "second"}, headers={"If-Match": '"1"'})

    assert_problem(response, 412, "precondition_failed")


# --- the ETag of every write ---------------------------------------------------------------


def assert_etag_is_version(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert response.headers["etag"] == f'"{body["version"]}"'
    return body


async def test_every_write_returns_the_etag_of_its_version(client):
    created = assert_etag_is_version(
        await client.post(
            "/v1/agents", json={"name": "Etag bot", "config": {"model_provider": "openai", "model_name": "gpt-4o"}}
        ),
        201,
    )
    agent_url = f"/v1/agents/{created['id']}"
    assert created["version"] == 1
    patched = assert_etag_is_version(await client.patch(agent_url, json={"description": "x"}))
    assert patched["version"] == 2
    unchanged = assert_etag_is_version(await client.patch(agent_url, json={"description": "x"}))
    assert unchanged["version"] == 2  # nothing changed, nothing bumped

    variant = assert_etag_is_version(
        await client.post(f"{agent_url}/variants", json={"variant_name": "V", "overrides": {"temperature": 0.3}}), 201
    )
    url = f"{agent_url}/variants/{variant['id']}"
    revision = (await ok(client.get(f"{agent_url}/revisions")))["data"][0]["id"]
    versions = [variant["version"]]
    for response in (
        client.patch(url, json={"overrides": {"temperature": 0.4}}),
        client.post(f"{url}/activate"),
        client.post(f"{url}/activate"),  # a no-op: same version
        client.post(f"{url}/deactivate"),
        client.post(f"{url}/deactivate"),  # a no-op: same version
        client.post(f"{url}/restore", json={"revision_id": revision}),
    ):
        body = assert_etag_is_version(await response)
        versions.append(body["version"])
        assert (await client.get(url)).headers["etag"] == f'"{body["version"]}"'
    assert versions == [1, 2, 3, 3, 4, 4, 5]
    assert (await client.get(agent_url)).headers["etag"] == '"2"'  # activation is derived for the agent


async def test_the_etag_of_a_write_is_the_one_to_send_next(client):
    agent, variant, _ = await variant_moved(client)
    url = variant_url(agent, variant)
    current = (await client.patch(url, json={"description": "a"})).headers["etag"]

    for description in ("b", "c", "d"):
        response = await client.patch(url, json={"description": description}, headers={"If-Match": current})
        assert response.status_code == 200, response.text
        assert response.headers["etag"] != current
        stale, current = current, response.headers["etag"]
        assert_problem(
            await client.patch(url, json={"description": "z"}, headers={"If-Match": stale}), 412, "precondition_failed"
        )
    assert (await client.get(url)).json()["description"] == "d"


# --- concurrency, on the live database ---------------------------------------------------


@pytest.mark.live
async def test_concurrent_patches_with_one_if_match_let_exactly_one_through(live_client):
    agent = await create_agent(live_client)
    try:
        variant = await create_variant(live_client, agent["id"])
        url = variant_url(agent, variant)
        current = await etag(live_client, url)

        responses = await asyncio.gather(
            *(
                live_client.patch(url, json={"description": f"writer {n}"}, headers={"If-Match": current})
                for n in range(10)
            )
        )

        winners = [r for r in responses if r.status_code == 200]
        assert len(winners) == 1, [(r.status_code, r.text) for r in responses]
        for response in responses:
            if response is not winners[0]:
                assert_problem(response, 412, "precondition_failed")
        after = await ok(live_client.get(url))
        assert after["version"] == variant["version"] + 1
        assert after["description"] == winners[0].json()["description"]
        history = await ok(
            live_client.get(f"/v1/agents/{agent['id']}/revisions", params={"target_id": variant["id"], "limit": 100})
        )
        assert [r["action"] for r in history["data"]] == ["update", "create"]
    finally:
        assert (await live_client.delete(f"/v1/agents/{agent['id']}")).status_code == 204


@pytest.mark.live
async def test_concurrent_activations_with_one_if_match_let_exactly_one_through(live_client):
    agent = await create_agent(live_client)
    try:
        variant = await create_variant(live_client, agent["id"])
        url = variant_url(agent, variant)
        current = await etag(live_client, url)
        # Activate, then deactivate, again and again: each would change the variant if let through.
        requests = [
            live_client.post(f"{url}/{'activate' if n % 2 == 0 else 'deactivate'}", headers={"If-Match": current})
            for n in range(10)
        ]

        responses = await asyncio.gather(*requests)

        through = [r for r in responses if r.status_code == 200 and r.json()["version"] != variant["version"]]
        assert len(through) == 1, [(r.status_code, r.text) for r in responses]
        assert all(r.status_code in (200, 412) for r in responses)
        assert (await ok(live_client.get(url)))["version"] == variant["version"] + 1
    finally:
        assert (await live_client.delete(f"/v1/agents/{agent['id']}")).status_code == 204


# --- X-Actor -----------------------------------------------------------------------------


async def newest_revision(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    return (await ok(client.get(f"/v1/agents/{agent_id}/revisions")))["data"][0]


async def test_x_actor_is_recorded_in_the_revision(client):
    actor = "alice@example.com (via console)"
    response = await client.post(
        "/v1/agents",
        json={"name": "Actor bot", "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
        headers={"X-Actor": actor},
    )
    agent = response.json()
    assert (await newest_revision(client, agent["id"]))["actor"] == actor

    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"description": "x"}, headers={"X-Actor": "bob"}))
    revision = await newest_revision(client, agent["id"])
    assert (revision["action"], revision["actor"]) == ("update", "bob")

    variant = await create_variant(client, agent["id"])
    await ok(client.post(variant_url(agent, variant) + "/activate", headers={"X-Actor": "carol"}))
    revision = await newest_revision(client, agent["id"])
    assert (revision["action"], revision["target_id"], revision["actor"]) == ("activate", variant["id"], "carol")

    undone = await ok(client.post(f"/v1/agents/{agent['id']}/undo", headers={"X-Actor": "dave"}))
    assert undone["revision"]["actor"] == "dave"
    assert (await newest_revision(client, agent["id"]))["actor"] == "dave"

    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"description": "y"}))
    revision = await newest_revision(client, agent["id"])
    # No X-Actor: the key that made the change is the actor; the key is always recorded.
    assert (revision["actor"], revision["api_key"]) == (TEST_KEY_NAME, TEST_KEY_NAME)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
async def test_a_non_ascii_x_actor_is_recorded_as_sent(client, encoding):
    agent = await create_agent(client)

    await ok(
        client.patch(
            f"/v1/agents/{agent['id']}", json={"description": "x"}, headers={"X-Actor": "José Müller".encode(encoding)}
        )
    )

    assert (await newest_revision(client, agent["id"]))["actor"] == "José Müller"


async def test_x_actor_of_256_chars_is_accepted(client):
    agent = await create_agent(client)
    actor = "a" * 256

    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"description": "x"}, headers={"X-Actor": actor}))

    assert (await newest_revision(client, agent["id"]))["actor"] == actor


@pytest.mark.parametrize("write", ["create_agent", "patch_agent", "activate", "undo"])
async def test_x_actor_over_256_chars_is_422_and_changes_nothing(client, write):
    agent = await agent_moved(client)
    variant = await create_variant(client, agent["id"])
    before = await snapshot(client, agent["id"])
    headers = {"X-Actor": "a" * 257}
    request = {
        "create_agent": lambda: client.post(
            "/v1/agents",
            json={"name": "Long actor", "config": {"model_provider": "openai", "model_name": "gpt-4o"}},
            headers=headers,
        ),
        "patch_agent": lambda: client.patch(f"/v1/agents/{agent['id']}", json={"description": "x"}, headers=headers),
        "activate": lambda: client.post(variant_url(agent, variant) + "/activate", headers=headers),
        "undo": lambda: client.post(f"/v1/agents/{agent['id']}/undo", headers=headers),
    }[write]

    response = await request()

    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"X-Actor"}
    assert await snapshot(client, agent["id"]) == before
    assert (await client.get("/v1/agents/long-actor")).status_code == 404
