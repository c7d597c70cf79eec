"""Archive (contract 1.1): `DELETE` of an agent archives it. Every route answers 404 for it
but its revisions, `?at=` before the archive, `/usage`, experiment results and `unarchive`;
its watches end; its slug stays taken; lists leave it out unless `?archived=true`.
`unarchive` brings it back as it was; `?purge=true` (admin, archived only) erases it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from tests.helpers import assert_problem, config, create_agent, create_variant


async def archived_agent(client: httpx.AsyncClient) -> tuple[dict, dict, dict]:
    """An agent with an active variant and an experiment with an outcome, archived."""
    agent = await create_agent(client, config=config(system_prompt="kept"))
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.25})
    await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    experiment = (
        await client.post(
            f"/v1/agents/{agent['id']}/experiments",
            json={"name": "E", "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]},
        )
    ).json()
    outcome = {
        "variant_id": variant["id"],
        "experiment_id": experiment["id"],
        "input_tokens": 10,
        "output_tokens": 5,
        "latency_ms": 100,
    }
    assert (await client.post(f"/v1/agents/{agent['id']}/outcomes", json=outcome)).status_code == 202
    assert (await client.delete(f"/v1/agents/{agent['slug']}")).status_code == 204
    return agent, variant, experiment


async def test_an_archived_agent_is_gone_for_every_route_but_its_history(client):
    agent, variant, experiment = await archived_agent(client)
    a = agent["id"]
    for method, path in [
        ("GET", f"/v1/agents/{a}"),
        ("GET", f"/v1/agents/{agent['slug']}"),
        ("PATCH", f"/v1/agents/{a}"),
        ("DELETE", f"/v1/agents/{a}"),
        ("GET", f"/v1/agents/{a}/resolved"),
        ("GET", f"/v1/agents/{a}/resolved?subject=u1"),
        ("GET", f"/v1/agents/{a}/bundle"),
        ("GET", f"/v1/agents/{a}/variants"),
        ("GET", f"/v1/agents/{a}/variants/{variant['id']}"),
        ("POST", f"/v1/agents/{a}/variants/{variant['id']}/deactivate"),
        ("GET", f"/v1/agents/{a}/experiments"),
        ("POST", f"/v1/agents/{a}/undo"),
        ("POST", f"/v1/agents/{a}/outcomes"),
    ]:
        body = (
            {"name": "x"}
            if method == "PATCH"
            else (
                {"variant_id": None, "input_tokens": 1, "output_tokens": 1, "latency_ms": 1}
                if "outcomes" in path
                else None
            )
        )
        response = await client.request(method, path, json=body)
        assert_problem(response, 404, "resource_missing"), (method, path)

    # What stays readable: its history, time travel before the archive, usage and results.
    revisions = (await client.get(f"/v1/agents/{a}/revisions")).json()["data"]
    assert revisions[0]["action"] == "archive" and revisions[0]["target"] == "agent"
    assert revisions[0]["after"]["archived_at"] is not None and revisions[0]["before"]["archived_at"] is None
    assert (await client.get(f"/v1/agents/{a}/revisions/{revisions[0]['id']}")).status_code == 200
    then = (await client.get(f"/v1/agents/{a}/resolved", params={"at": revisions[1]["created_at"]})).json()
    assert then["variant_id"] == variant["id"] and then["temperature"] == 0.25 and then["system_prompt"] == "kept"
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert_problem(
        await client.get(f"/v1/agents/{a}/resolved", params={"at": later.isoformat()}), 404, "resource_missing"
    )
    assert (await client.get(f"/v1/agents/{a}/usage")).json()["outcomes"] == 1
    results = await client.get(f"/v1/agents/{a}/experiments/{experiment['id']}/results")
    assert results.status_code == 200 and results.json()["arms"][1]["outcomes"] == 1


async def test_lists_leave_archived_agents_out_unless_asked(client):
    kept = await create_agent(client)
    agent, *_ = await archived_agent(client)
    listed = [x["id"] for x in (await client.get("/v1/agents", params={"limit": 100})).json()["data"]]
    assert kept["id"] in listed and agent["id"] not in listed
    everything = (await client.get("/v1/agents", params={"limit": 100, "archived": "true"})).json()["data"]
    archived = next(x for x in everything if x["id"] == agent["id"])
    assert archived["archived_at"] is not None
    assert next(x for x in everything if x["id"] == kept["id"])["archived_at"] is None


async def test_unarchive_brings_it_back_as_it_was(client):
    agent, variant, experiment = await archived_agent(client)
    response = await client.post(f"/v1/agents/{agent['slug']}/unarchive")
    assert response.status_code == 200, response.text
    back = response.json()
    assert back["archived_at"] is None and back["active_variant_id"] == variant["id"]
    assert back["version"] == agent["version"] + 2  # archive and unarchive are changes
    resolved = (await client.get(f"/v1/agents/{agent['id']}/resolved")).json()
    assert resolved["variant_id"] == variant["id"] and resolved["temperature"] == 0.25
    again = await client.post(f"/v1/agents/{agent['id']}/unarchive")  # not archived: a no-op
    assert again.status_code == 200 and again.json()["version"] == back["version"]
    actions = [r["action"] for r in (await client.get(f"/v1/agents/{agent['id']}/revisions")).json()["data"]]
    assert actions[:2] == ["unarchive", "archive"]
    # Undo skips archive and unarchive (they undo each other): it reverts the activation.
    undone = (await client.post(f"/v1/agents/{agent['id']}/undo")).json()
    assert undone["revision"]["action"] == "undo" and undone["revision"]["target_id"] == variant["id"]


async def test_the_slug_stays_taken_and_purge_erases_everything(client, conn: AsyncConnection, db):
    agent, variant, experiment = await archived_agent(client)
    refused = await client.post("/v1/agents", json={"name": "Again", "slug": agent["slug"], "config": config()})
    assert_problem(refused, 409, "slug_taken")
    derived = await client.post("/v1/agents", json={"name": agent["name"], "config": config()})
    assert derived.json()["slug"] != agent["slug"]

    live = await create_agent(client)
    assert_problem(await client.delete(f"/v1/agents/{live['id']}", params={"purge": "true"}), 409, "agent_not_archived")
    # A write key archives but may not purge.
    writer = await keys_service.create_key(db, KeyCreate(name="archive-writer", scope="write"))
    as_writer = {"Authorization": f"Bearer {writer['secret']}"}
    denied = await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"}, headers=as_writer)
    assert_problem(denied, 403, "insufficient_scope")

    # Stored idempotent responses naming the purged agent go with it; others stay.
    doomed = await create_agent(client)
    for who, key in ((doomed, "purge-me"), (live, "keep-me")):
        response = await client.post(
            f"/v1/agents/{who['id']}/variants", json={"variant_name": "v"}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 201
    naming = text("SELECT count(*) FROM idempotency_keys WHERE position(convert_to(:a, 'UTF8') IN response_body) > 0")
    assert await conn.scalar(naming, {"a": doomed["id"]}) == 1
    assert (await client.delete(f"/v1/agents/{doomed['id']}")).status_code == 204
    assert (await client.delete(f"/v1/agents/{doomed['id']}", params={"purge": "true"})).status_code == 204
    assert await conn.scalar(naming, {"a": doomed["id"]}) == 0
    assert await conn.scalar(naming, {"a": live["id"]}) == 1

    assert (await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})).status_code == 204
    for table in ("agents", "variants", "experiments", "outcomes", "revisions", "usage_totals"):
        column = "id" if table == "agents" else "agent_id"
        assert await conn.scalar(text(f"SELECT count(*) FROM {table} WHERE {column} = :a"), {"a": agent["id"]}) == 0
    assert_problem(await client.get(f"/v1/agents/{agent['id']}/revisions"), 404, "resource_missing")
    again = await client.post("/v1/agents", json={"name": "Again", "slug": agent["slug"], "config": config()})
    assert again.status_code == 201


async def test_purge_forgets_a_crashed_requests_saved_result_too(client, conn: AsyncConnection):
    agent = await create_agent(client)
    # What a request that died after its change committed leaves: a claim with its effect.
    await conn.execute(
        text(
            "INSERT INTO idempotency_keys (key, fingerprint, state, owner, locked_until, expires_at, effects)"
            " VALUES ('crashed', 'f', 'in_flight', 'o', now(), now() + interval '1 day',"
            " jsonb_build_array(jsonb_build_object('id', CAST(:a AS text))))"
        ),
        {"a": agent["id"]},
    )
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    assert (await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})).status_code == 204
    assert await conn.scalar(text("SELECT count(*) FROM idempotency_keys WHERE key = 'crashed'")) == 0


async def test_time_travel_into_an_archived_period_is_404_after_unarchive_too(client):
    """Resolution answered 404 while the agent was archived; `?at=` an instant of that period
    says so even once the agent is back (follow-up from issue 16's review: it answered 200)."""
    agent, variant, _ = await archived_agent(client)
    assert (await client.post(f"/v1/agents/{agent['id']}/unarchive")).status_code == 200
    revisions = (await client.get(f"/v1/agents/{agent['id']}/revisions")).json()["data"]
    unarchived, archived, before = revisions[0], revisions[1], revisions[2]
    assert (unarchived["action"], archived["action"]) == ("unarchive", "archive")

    def at(revision: dict, micro: int = 0) -> dict:
        instant = datetime.fromisoformat(revision["created_at"].replace("Z", "+00:00")) + timedelta(microseconds=micro)
        return {"at": instant.isoformat()}

    path = f"/v1/agents/{agent['id']}/resolved"
    during = await client.get(path, params=at(archived))
    assert_problem(during, 404, "resource_missing")
    assert "was archived at" in during.json()["detail"]
    assert_problem(await client.get(path, params=at(unarchived, -1)), 404, "resource_missing")
    assert (await client.get(path, params=at(before))).json()["variant_id"] == variant["id"]
    assert (await client.get(path, params=at(unarchived))).json()["variant_id"] == variant["id"]
