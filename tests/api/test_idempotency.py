"""Idempotency-Key on POST: replays, conflicts, in-flight claims, expiry and the fingerprint.

Most tests run on `client` (rolled back). The ones that need real commits seen by other
connections (concurrent retries, purge, abandoned claims) run on the live database with
keys and agents of their own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import text

from services.api import idempotency
from services.api.db import Database
from services.api.idempotency import fingerprint, storage_key
from services.api.keys.tokens import digest
from tests.helpers import (
    assert_problem,
    config,
    create_agent,
    create_variant,
    problem_params,
    settings_for_tests,
    unique,
)

JSON = "application/json"


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


def keyed(key: str, **headers: str) -> dict[str, str]:
    return {"Idempotency-Key": key, **headers}


def agent_body(**fields: Any) -> dict[str, Any]:
    return {"name": unique(), "config": config(), **fields}


async def agents_named(client: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    """Every agent with this name (the rolled-back database holds only this test's)."""
    found, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"after": after} if after else {})
        page = (await client.get("/v1/agents", params=params)).json()
        found += [agent for agent in page["data"] if agent["name"] == name]
        if not page["has_more"]:
            return found
        after = page["last_id"]


async def variant_ids(client: httpx.AsyncClient, agent_id: str) -> list[str]:
    response = await client.get(f"/v1/agents/{agent_id}/variants", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [variant["id"] for variant in response.json()["data"]]


async def revision_ids(client: httpx.AsyncClient, agent_id: str) -> list[str]:
    response = await client.get(f"/v1/agents/{agent_id}/revisions", params={"limit": 100})
    assert response.status_code == 200, response.text
    return [revision["id"] for revision in response.json()["data"]]


def assert_replay_of(first: httpx.Response, again: httpx.Response) -> None:
    """`again` is `first` replayed: same status, body and replayable headers, flagged."""
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("idempotent-replayed") == "true", again.text
    assert again.status_code == first.status_code
    assert again.content == first.content
    for name in ("content-type", "location", "etag"):
        assert again.headers.get(name) == first.headers.get(name), name


# --- replay ------------------------------------------------------------------------------


async def test_same_key_same_request_returns_the_first_response(client):
    key, body = new_key(), agent_body()
    first = await client.post("/v1/agents", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"/v1/agents/{first.json()['id']}"
    assert first.headers["etag"] == '"1"'

    again = await client.post("/v1/agents", json=body, headers=keyed(key))

    assert_replay_of(first, again)
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["created_at"] == first.json()["created_at"]
    assert again.headers["location"] == first.headers["location"]
    assert [agent["id"] for agent in await agents_named(client, body["name"])] == [first.json()["id"]]


async def test_replayed_variant_create_makes_one_variant(client):
    agent = await create_agent(client)
    key, body = new_key(), {"variant_name": "Cold", "overrides": {"temperature": 0.1}}
    url = f"/v1/agents/{agent['id']}/variants"

    responses = [await client.post(url, json=body, headers=keyed(key)) for _ in range(3)]

    assert responses[0].status_code == 201, responses[0].text
    for again in responses[1:]:
        assert_replay_of(responses[0], again)
    assert await variant_ids(client, agent["id"]) == [responses[0].json()["id"]]
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["variant_count"] == 1


async def test_key_order_and_whitespace_do_not_make_another_request(client):
    key, name = new_key(), unique()
    compact = json.dumps(
        {"name": name, "config": {"model_provider": "openai", "model_name": "gpt-4o"}}, separators=(",", ":")
    )
    reordered = (
        '{\n  "config" : { "model_name" : "gpt-4o",\t"model_provider": "openai" },\n'
        f'  "name": {json.dumps(name)}\n}}\n'
    )

    first = await client.post("/v1/agents", content=compact, headers=keyed(key, **{"Content-Type": JSON}))
    again = await client.post("/v1/agents", content=reordered, headers=keyed(key, **{"Content-Type": JSON}))

    assert first.status_code == 201, first.text
    assert_replay_of(first, again)
    assert len(await agents_named(client, name)) == 1


async def test_escaped_and_literal_unicode_are_the_same_body(client):
    key, name = new_key(), unique("Ünïcödé")
    body = {"name": name, "config": config()}
    literal = json.dumps(body, ensure_ascii=False).encode()
    escaped = json.dumps(body, ensure_ascii=True).encode()
    assert literal != escaped

    first = await client.post("/v1/agents", content=literal, headers=keyed(key, **{"Content-Type": JSON}))
    again = await client.post("/v1/agents", content=escaped, headers=keyed(key, **{"Content-Type": JSON}))

    assert first.status_code == 201, first.text
    assert_replay_of(first, again)


async def test_null_and_empty_object_are_different_bodies(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    url = f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate"
    key = new_key()

    first = await client.post(url, content=b"{}", headers=keyed(key, **{"Content-Type": JSON}))
    assert first.status_code == 200, first.text
    other = await client.post(url, content=b"null", headers=keyed(key, **{"Content-Type": JSON}))

    assert_problem(other, 409, "idempotency_key_reused")
    assert "idempotent-replayed" not in other.headers

    # On a create, too: `{}` is a 422 that is stored; `null` is not that request.
    key = new_key()
    empty = await client.post("/v1/agents", content=b"{}", headers=keyed(key, **{"Content-Type": JSON}))
    assert_problem(empty, 422, "validation_error")
    null = await client.post("/v1/agents", content=b"null", headers=keyed(key, **{"Content-Type": JSON}))
    assert_problem(null, 409, "idempotency_key_reused")


async def test_same_key_with_another_body_is_409_naming_the_key(client):
    key, body = new_key(), agent_body()
    first = await client.post("/v1/agents", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    changed = {**body, "description": "something else"}

    response = await client.post("/v1/agents", json=changed, headers=keyed(key))

    problem = assert_problem(response, 409, "idempotency_key_reused")
    assert problem["detail"] == f"Idempotency key '{key}' was previously used with different parameters"
    assert "idempotent-replayed" not in response.headers
    assert [agent["id"] for agent in await agents_named(client, body["name"])] == [first.json()["id"]]
    # The key still answers its first request.
    assert_replay_of(first, await client.post("/v1/agents", json=body, headers=keyed(key)))


async def test_same_key_on_another_path_is_reused(client):
    agent = await create_agent(client)
    key = new_key()
    first = await client.post(f"/v1/agents/{agent['id']}/variants", json={"variant_name": "A"}, headers=keyed(key))
    assert first.status_code == 201, first.text
    other_agent = await create_agent(client)

    response = await client.post(
        f"/v1/agents/{other_agent['id']}/variants", json={"variant_name": "A"}, headers=keyed(key)
    )

    problem = assert_problem(response, 409, "idempotency_key_reused")
    assert problem["detail"] == f"Idempotency key '{key}' was previously used with different parameters"
    assert await variant_ids(client, other_agent["id"]) == []


async def test_same_key_with_same_body_on_another_path_is_reused(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    base = f"/v1/agents/{agent['id']}/variants/{variant['id']}"
    key = new_key()
    assert (await client.post(f"{base}/activate", headers=keyed(key))).status_code == 200

    response = await client.post(f"{base}/deactivate", headers=keyed(key))

    assert_problem(response, 409, "idempotency_key_reused")
    assert (await client.get(base)).json()["is_active"] is True


async def test_without_a_key_every_create_makes_a_new_object(client):
    body = agent_body()
    first = await client.post("/v1/agents", json=body)
    second = await client.post("/v1/agents", json=body)

    assert first.status_code == second.status_code == 201, second.text
    assert first.json()["id"] != second.json()["id"]
    assert second.json()["slug"] == first.json()["slug"] + "-2"
    assert "idempotent-replayed" not in second.headers
    assert len(await agents_named(client, body["name"])) == 2

    url = f"/v1/agents/{first.json()['id']}/variants"
    ids = {(await client.post(url, json={"variant_name": "Same"})).json()["id"] for _ in range(2)}
    assert len(ids) == 2
    assert set(await variant_ids(client, first.json()["id"])) == ids


async def test_distinct_keys_are_distinct_requests(client):
    body = agent_body()
    first = await client.post("/v1/agents", json=body, headers=keyed(new_key()))
    second = await client.post("/v1/agents", json=body, headers=keyed(new_key()))

    assert first.status_code == second.status_code == 201, second.text
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


# --- the key itself ----------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 256, 1000])
async def test_a_key_outside_1_to_255_chars_is_422(client, length):
    body = agent_body()
    response = await client.post("/v1/agents", json=body, headers=keyed("k" * length))

    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"Idempotency-Key"}
    assert await agents_named(client, body["name"]) == []


@pytest.mark.parametrize("length", [1, 255])
async def test_a_key_of_1_to_255_chars_is_used(client, length):
    key, body = "k" * length, agent_body()
    first = await client.post("/v1/agents", json=body, headers=keyed(key))
    again = await client.post("/v1/agents", json=body, headers=keyed(key))

    assert first.status_code == 201, first.text
    assert_replay_of(first, again)
    assert len(await agents_named(client, body["name"])) == 1


# --- actions -----------------------------------------------------------------------------


async def two_variants(client: httpx.AsyncClient) -> tuple[dict[str, Any], str, str]:
    agent = await create_agent(client)
    first = await create_variant(client, agent["id"])
    second = await create_variant(client, agent["id"])
    base = f"/v1/agents/{agent['id']}/variants"
    return agent, f"{base}/{first['id']}", f"{base}/{second['id']}"


async def test_replayed_activate_writes_no_second_revision(client):
    agent, first_url, second_url = await two_variants(client)
    key = new_key()
    activated = await client.post(f"{first_url}/activate", headers=keyed(key))
    assert activated.status_code == 200, activated.text
    assert activated.json()["is_active"] is True
    # Another variant becomes active, so running the activation again would change state.
    assert (await client.post(f"{second_url}/activate")).status_code == 200
    history = await revision_ids(client, agent["id"])

    again = await client.post(f"{first_url}/activate", headers=keyed(key))

    assert_replay_of(activated, again)
    assert await revision_ids(client, agent["id"]) == history
    assert (await client.get(first_url)).json()["is_active"] is False
    assert (await client.get(second_url)).json()["is_active"] is True


async def test_replayed_deactivate_writes_no_second_revision(client):
    agent, url, _ = await two_variants(client)
    assert (await client.post(f"{url}/activate")).status_code == 200
    key = new_key()
    deactivated = await client.post(f"{url}/deactivate", headers=keyed(key))
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["is_active"] is False
    assert (await client.post(f"{url}/activate")).status_code == 200
    history = await revision_ids(client, agent["id"])

    again = await client.post(f"{url}/deactivate", headers=keyed(key))

    assert_replay_of(deactivated, again)
    assert await revision_ids(client, agent["id"]) == history
    assert (await client.get(url)).json()["is_active"] is True


async def test_replayed_undo_reverts_only_once(client):
    agent = await create_agent(client, description="zero")
    url = f"/v1/agents/{agent['id']}"
    for description in ("one", "two"):
        assert (await client.patch(url, json={"description": description})).status_code == 200
    key = new_key()
    undone = await client.post(f"{url}/undo", headers=keyed(key))
    assert undone.status_code == 200, undone.text
    assert (await client.get(url)).json()["description"] == "one"
    history = await revision_ids(client, agent["id"])

    again = await client.post(f"{url}/undo", headers=keyed(key))

    assert_replay_of(undone, again)
    assert again.json()["revision"]["id"] == undone.json()["revision"]["id"]
    assert await revision_ids(client, agent["id"]) == history
    assert (await client.get(url)).json()["description"] == "one"


async def test_replayed_restore_writes_no_second_revision(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.5})
    url = f"/v1/agents/{agent['id']}/variants/{variant['id']}"
    created = (await revision_ids(client, agent["id"]))[0]
    assert (await client.patch(url, json={"overrides": {"temperature": 0.7}})).status_code == 200
    key = new_key()
    restored = await client.post(f"{url}/restore", json={"revision_id": created}, headers=keyed(key))
    assert restored.status_code == 200, restored.text
    assert restored.json()["overrides"] == {"temperature": 0.5}
    assert (await client.patch(url, json={"overrides": {"temperature": 0.9}})).status_code == 200
    history = await revision_ids(client, agent["id"])

    again = await client.post(f"{url}/restore", json={"revision_id": created}, headers=keyed(key))

    assert_replay_of(restored, again)
    assert await revision_ids(client, agent["id"]) == history
    assert (await client.get(url)).json()["overrides"] == {"temperature": 0.9}


# --- errors are answers too --------------------------------------------------------------


async def test_a_422_is_replayed_as_stored(client):
    key, body = new_key(), {"name": unique(), "config": {"model_provider": "openai", "max_tokens": True}}
    first = await client.post("/v1/agents", json=body, headers=keyed(key))
    assert_problem(first, 422, "validation_error")

    again = await client.post("/v1/agents", json=body, headers=keyed(key))

    assert_replay_of(first, again)
    assert_problem(again, 422, "validation_error")
    assert problem_params(again) == problem_params(first) == {"config.model_name", "config.max_tokens"}


async def test_a_409_is_replayed_as_stored_even_once_the_conflict_is_gone(client):
    holder = await create_agent(client)
    key, body = new_key(), agent_body(slug=holder["slug"])
    first = await client.post("/v1/agents", json=body, headers=keyed(key))
    assert_problem(first, 409, "slug_taken")
    assert (await client.delete(f"/v1/agents/{holder['id']}")).status_code == 204

    again = await client.post("/v1/agents", json=body, headers=keyed(key))

    assert_replay_of(first, again)
    assert_problem(again, 409, "slug_taken")
    assert (await client.get(f"/v1/agents/{holder['slug']}")).status_code == 404
    assert await agents_named(client, body["name"]) == []


async def test_a_415_is_not_stored_so_a_retry_with_the_right_content_type_runs(client):
    """The fingerprint covers the body, not the Content-Type: a stored 415 would answer the
    corrected retry of the same bytes for 24 hours (review finding of issue 16)."""
    key, body = new_key(), json.dumps(agent_body()).encode()
    first = await client.post("/v1/agents", content=body, headers=keyed(key, **{"Content-Type": "text/plain"}))
    assert_problem(first, 415, "unsupported_media_type")

    fixed = await client.post("/v1/agents", content=body, headers=keyed(key, **{"Content-Type": JSON}))

    assert fixed.status_code == 201, fixed.text
    assert "idempotent-replayed" not in fixed.headers
    again = await client.post("/v1/agents", content=body, headers=keyed(key, **{"Content-Type": JSON}))
    assert_replay_of(fixed, again)


async def test_a_body_nested_too_deep_to_parse_is_a_400_not_a_500(client):
    key, deep = new_key(), b"[" * 100_000

    first = await client.post("/v1/agents", content=deep, headers=keyed(key, **{"Content-Type": JSON}))
    again = await client.post("/v1/agents", content=deep, headers=keyed(key, **{"Content-Type": JSON}))

    assert_problem(first, 400, "malformed_json")
    assert_replay_of(first, again)


# --- in flight, on the live database -----------------------------------------------------


async def count_agents(db: Database, name: str) -> int:
    async with db.read() as conn:
        return await conn.scalar(text("SELECT count(*) FROM agents WHERE name = :name"), {"name": name})


async def stored(db: Database, client: httpx.AsyncClient, key: str) -> str:
    """The row key the client's Idempotency-Key is stored under (namespaced by its API key)."""
    secret = client.headers["authorization"].removeprefix("Bearer ")
    async with db.read() as conn:
        key_id = await conn.scalar(text("SELECT id FROM api_keys WHERE secret_hash = :h"), {"h": digest(secret)})
    assert key_id is not None
    return storage_key(key_id, key)


async def key_row(db: Database, client: httpx.AsyncClient, key: str) -> dict[str, Any] | None:
    key = await stored(db, client, key)
    async with db.read() as conn:
        row = (await conn.execute(text("SELECT * FROM idempotency_keys WHERE key = :key"), {"key": key})).mappings()
        found = row.one_or_none()
        return dict(found) if found is not None else None


async def delete_agents(client: httpx.AsyncClient, ids: set[str]) -> None:
    for agent_id in ids:
        assert (await client.delete(f"/v1/agents/{agent_id}")).status_code in (204, 404)


@pytest.mark.live
async def test_concurrent_retries_under_one_key_create_exactly_one_agent(live_client, live_db):
    key, body = new_key(), agent_body()

    responses = await asyncio.gather(
        *(live_client.post("/v1/agents", json=body, headers=keyed(key)) for _ in range(10))
    )

    try:
        originals = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
        assert len(originals) == 1, [(r.status_code, r.text) for r in responses]
        created = originals[0]
        for response in responses:
            if response is created:
                continue
            if response.status_code == 409:
                problem = assert_problem(response, 409, "idempotency_key_in_use")
                assert key in problem["detail"]
            else:
                assert_replay_of(created, response)
        assert await count_agents(live_db, body["name"]) == 1

        # Once the first has finished, a retry replays it.
        again = await live_client.post("/v1/agents", json=body, headers=keyed(key))
        assert_replay_of(created, again)
        assert await count_agents(live_db, body["name"]) == 1
    finally:
        await delete_agents(live_client, {r.json()["id"] for r in responses if r.status_code == 201})


@pytest.mark.live
async def test_concurrent_retries_of_one_activation_write_one_revision(live_client):
    agent = await create_agent(live_client)
    try:
        variant = await create_variant(live_client, agent["id"])
        url = f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate"
        key = new_key()

        responses = await asyncio.gather(*(live_client.post(url, headers=keyed(key)) for _ in range(10)))

        assert sorted({r.status_code for r in responses}) in ([200], [200, 409])
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "idempotency_key_in_use")
        originals = [r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers]
        assert len(originals) == 1
        activations = await live_client.get(
            f"/v1/agents/{agent['id']}/revisions", params={"target_id": variant["id"], "limit": 100}
        )
        assert [r["action"] for r in activations.json()["data"]] == ["activate", "create"]
    finally:
        await delete_agents(live_client, {agent["id"]})


@pytest.mark.live
async def test_a_request_in_flight_under_the_key_is_409_in_use(live_client, live_db):
    key, body = new_key(), agent_body()
    raw = json.dumps(body).encode()
    async with live_db.engine.begin() as conn:  # a claim held by a request still running
        await conn.execute(
            text(
                "INSERT INTO idempotency_keys (key, fingerprint, state, owner, locked_until, created_at, expires_at)"
                " VALUES (:key, :print, 'in_flight', 'running', now() + interval '1 minute', now(),"
                "         now() + interval '1 day')"
            ),
            {"key": await stored(live_db, live_client, key), "print": fingerprint("POST", "/v1/agents", raw)},
        )

    response = await live_client.post("/v1/agents", content=raw, headers=keyed(key, **{"Content-Type": JSON}))

    problem = assert_problem(response, 409, "idempotency_key_in_use")
    assert key in problem["detail"]
    assert await count_agents(live_db, body["name"]) == 0
    assert (await key_row(live_db, live_client, key))["state"] == "in_flight"


async def age(db: Database, key: str, column: str) -> None:
    async with db.engine.begin() as conn:
        result = await conn.execute(
            text(f"UPDATE idempotency_keys SET {column} = now() - interval '1 second' WHERE key = :key"),
            {"key": key},
        )
        assert result.rowcount == 1


@pytest.mark.live
async def test_purge_deletes_expired_keys_and_frees_them(live_client, live_db):
    key, kept, body, kept_body = new_key(), new_key(), agent_body(), agent_body()
    first = await live_client.post("/v1/agents", json=body, headers=keyed(key))
    other = await live_client.post("/v1/agents", json=kept_body, headers=keyed(kept))
    created = {first.json()["id"], other.json()["id"]}
    try:
        assert first.status_code == other.status_code == 201
        row = await key_row(live_db, live_client, key)
        assert row is not None and row["state"] == "done"
        ttl = row["expires_at"] - row["created_at"]
        assert ttl.total_seconds() == 24 * 3600
        await age(live_db, await stored(live_db, live_client, key), "expires_at")

        assert await idempotency.purge_expired(live_db) >= 1

        assert await key_row(live_db, live_client, key) is None
        assert await key_row(live_db, live_client, kept) is not None  # not yet expired: kept
        fresh = await live_client.post("/v1/agents", json=agent_body(), headers=keyed(key))
        assert fresh.status_code == 201, fresh.text
        assert "idempotent-replayed" not in fresh.headers
        created.add(fresh.json()["id"])
        assert fresh.json()["id"] != first.json()["id"]
        assert_replay_of(other, await live_client.post("/v1/agents", json=kept_body, headers=keyed(kept)))
    finally:
        await delete_agents(live_client, created)


@pytest.mark.live
@pytest.mark.parametrize("same_body", [True, False], ids=["same body", "new body"])
async def test_an_expired_key_not_yet_purged_is_free(live_client, live_db, same_body):
    key, body = new_key(), agent_body()
    first = await live_client.post("/v1/agents", json=body, headers=keyed(key))
    created = {first.json()["id"]}
    try:
        assert first.status_code == 201, first.text
        await age(live_db, await stored(live_db, live_client, key), "expires_at")
        second_body = body if same_body else agent_body()

        again = await live_client.post("/v1/agents", json=second_body, headers=keyed(key))

        assert again.status_code == 201, again.text
        assert "idempotent-replayed" not in again.headers
        created.add(again.json()["id"])
        assert again.json()["id"] != first.json()["id"]
        assert again.json()["name"] == second_body["name"]
        # The new answer is the one the key replays now, for another 24 hours.
        assert_replay_of(again, await live_client.post("/v1/agents", json=second_body, headers=keyed(key)))
        assert_problem(
            await live_client.post("/v1/agents", json=agent_body(), headers=keyed(key)), 409, "idempotency_key_reused"
        )
        row = await key_row(live_db, live_client, key)
        assert (row["expires_at"] - row["created_at"]).total_seconds() == 24 * 3600
    finally:
        await delete_agents(live_client, created)


async def insert_claim(db: Database, key: str, print_: str) -> None:
    """An in-flight claim whose lease ran out: the process that held it died."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO idempotency_keys (key, fingerprint, state, owner, locked_until, created_at, expires_at)"
                " VALUES (:key, :print, 'in_flight', 'dead-process', now() - interval '1 second',"
                "         now() - interval '2 minutes',"
                "         now() + interval '1 day')"
            ),
            {"key": key, "print": print_},
        )


@pytest.mark.live
async def test_an_abandoned_claim_is_taken_over_by_a_retry(live_client, live_db):
    key, body = new_key(), agent_body()
    raw = json.dumps(body).encode()
    await insert_claim(live_db, await stored(live_db, live_client, key), fingerprint("POST", "/v1/agents", raw))

    response = await live_client.post("/v1/agents", content=raw, headers=keyed(key, **{"Content-Type": JSON}))

    try:
        assert response.status_code == 201, response.text
        assert "idempotent-replayed" not in response.headers
        assert (await key_row(live_db, live_client, key))["state"] == "done"
        assert await count_agents(live_db, body["name"]) == 1
        assert_replay_of(
            response, await live_client.post("/v1/agents", content=raw, headers=keyed(key, **{"Content-Type": JSON}))
        )
    finally:
        if response.status_code == 201:
            await delete_agents(live_client, {response.json()["id"]})


@pytest.mark.live
async def test_an_abandoned_claim_of_another_request_is_not_taken_over(live_client, live_db):
    key, body = new_key(), agent_body()
    another = fingerprint("POST", "/v1/agents", b'{"name": "another request"}')
    await insert_claim(live_db, await stored(live_db, live_client, key), another)

    response = await live_client.post("/v1/agents", json=body, headers=keyed(key))

    assert_problem(response, 409, "idempotency_key_reused")
    assert await count_agents(live_db, body["name"]) == 0


# --- the fingerprint ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=6)
paths = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-/", min_size=1, max_size=30).map(lambda p: "/v1/" + p)
methods = st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"])


@given(body=json_objects, data=st.data(), path=paths)
def test_fingerprint_ignores_key_order_and_spacing(body, data, path):
    shuffled = dict(data.draw(st.permutations(list(body.items()))))
    spaced = json.dumps(
        shuffled, indent=data.draw(st.sampled_from([None, 0, 2])), ensure_ascii=data.draw(st.booleans())
    ).encode()
    compact = json.dumps(body, separators=(",", ":")).encode()

    assert fingerprint("POST", path, spaced) == fingerprint("POST", path, compact)


@given(first=json_values, second=json_values, path=paths)
def test_fingerprint_tells_different_bodies_apart(first, second, path):
    # Different as JSON documents (Python's `True == 1` and `0.0 == -0.0` are not JSON's).
    assume(json.dumps(first, sort_keys=True) != json.dumps(second, sort_keys=True))

    assert fingerprint("POST", path, json.dumps(first).encode()) != fingerprint(
        "POST", path, json.dumps(second).encode()
    )


@given(body=json_objects, first=paths, second=paths, method=methods)
def test_fingerprint_tells_different_paths_apart(body, first, second, method):
    assume(first != second)
    raw = json.dumps(body).encode()

    assert fingerprint(method, first, raw) != fingerprint(method, second, raw)


@given(body=json_objects, path=paths, first=methods, second=methods)
def test_fingerprint_tells_different_methods_apart(body, path, first, second):
    assume(first != second)
    raw = json.dumps(body).encode()

    assert fingerprint(first, path, raw) != fingerprint(second, path, raw)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


raw_bodies = st.binary(max_size=20).filter(lambda raw: not _is_json(raw))


@given(parts=st.tuples(methods, paths, raw_bodies), others=st.tuples(methods, paths, raw_bodies))
def test_fingerprint_never_confuses_where_one_part_ends(parts, others):
    # Non-JSON bodies hash their bytes: moving bytes between path and body must matter.
    assume(parts != others)

    assert fingerprint(*parts) != fingerprint(*others)


def test_fingerprint_keeps_bytes_on_their_side_of_a_boundary():
    assert fingerprint("POST", "/v1/ab", b"c") != fingerprint("POST", "/v1/a", b"bc")
    assert fingerprint("POST", "/v1/a", b"") != fingerprint("POS", "T/v1/a", b"")


def test_fingerprint_of_a_body_nested_too_deep_is_that_of_its_bytes():
    deep = b"[" * 100_000 + b"]" * 100_000
    assert fingerprint("POST", "/v1/agents", deep) == fingerprint("POST", "/v1/agents", deep)
    assert fingerprint("POST", "/v1/agents", deep) != fingerprint("POST", "/v1/agents", deep[1:-1])


def test_fingerprint_distinguishes_null_empty_object_and_no_body():
    prints = {fingerprint("POST", "/v1/agents", body) for body in (b"null", b"{}", b"", b"[]", b'""')}
    assert len(prints) == 5
    assert fingerprint("POST", "/v1/agents", b'{"a": 1, "b": 2}') == fingerprint("POST", "/v1/agents", b'{"b":2,"a":1}')


async def test_a_client_that_leaves_mid_body_claims_nothing(db, conn):
    """A body cut short by a disconnect is not a request: the key stays free for the retry."""
    from services.api.app import create_app

    # Auth off: the key is stored as sent (with auth, under the API key's id).
    app = create_app(settings_for_tests(auth_disabled=True), database=db)
    key = new_key()
    messages = iter(
        [
            {"type": "http.request", "body": b'{"name": "half', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/agents",
        "raw_path": b"/v1/agents",
        "query_string": b"",
        "root_path": "",
        "server": ("test", 80),
        "client": ("test", 1),
        "headers": [(b"content-type", b"application/json"), (b"idempotency-key", key.encode())],
    }
    await app(scope, receive, send)
    assert sent == []  # nobody to answer
    rows = await conn.scalar(text("SELECT count(*) FROM idempotency_keys WHERE key = :key"), {"key": key})
    assert rows == 0


async def test_a_retry_with_other_meaningful_headers_is_not_a_replay(client):
    """If-Match and X-Actor are part of the request: changing them under one key is a
    different request (409), never a replay of the first answer (schemathesis found a
    replayed 201 for a retry whose X-Actor was invalid)."""
    key, body = new_key(), agent_body()
    first = await client.post("/v1/agents", json=body, headers=keyed(key, **{"X-Actor": "alice"}))
    assert first.status_code == 201
    for headers in ({"X-Actor": ""}, {"X-Actor": "bob"}, {"X-Actor": "alice", "If-Match": "*"}):
        response = await client.post("/v1/agents", json=body, headers=keyed(key, **headers))
        assert_problem(response, 409, "idempotency_key_reused")
    again = await client.post("/v1/agents", json=body, headers=keyed(key, **{"X-Actor": "alice"}))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
