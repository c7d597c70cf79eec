"""Rule sets (contract 1.1, "Targeting rules and context"; issue 18's routes slice):
`GET`/`PUT /v1/agents/{agent}/rules?environment=`: stored, validated and revisioned, per
environment; ids kept by name; variants by id; If-Match; the write-time checks; a variant
a rule serves cannot be deleted; an environment with rules is in use. Resolution does not
read rules yet (a later slice)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, is_id
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params, unique

BASE = config(max_tokens=500, context_window=8000, input_token_limit=4000)
FIELDS = {"object", "agent_id", "environment", "rules", "version", "updated_at"}


def rules_path(agent: dict[str, Any]) -> str:
    return f"/v1/agents/{agent['id']}/rules"


def rule(name: str, serve: str = "base", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "when": [{"attribute": "plan", "op": "eq", "value": "pro"}],
        "serve": {"variant": serve},
        **fields,
    }


async def put(
    client: httpx.AsyncClient, agent: dict[str, Any], rules: list[dict[str, Any]], **kwargs: Any
) -> httpx.Response:
    return await client.put(rules_path(agent), json={"rules": rules}, **kwargs)


async def environment(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("/v1/environments", json={"name": unique("env")})
    assert response.status_code == 201, response.text
    return response.json()


async def revisions(client: httpx.AsyncClient, agent: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/agents/{agent['id']}/revisions", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_a_set_never_written_is_version_0_without_rules(client):
    agent = await create_agent(client, config=BASE)
    for params in ({}, {"environment": "production"}, {"environment": PRODUCTION_ENVIRONMENT_ID}):
        response = await client.get(rules_path(agent), params=params)
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"0"'
        assert response.json() == {
            "object": "rule_set",
            "agent_id": agent["id"],
            "environment": "production",
            "rules": [],
            "version": 0,
            "updated_at": None,
        }
    assert (await client.get(f"/v1/agents/{agent['slug']}/rules")).json()["agent_id"] == agent["id"]


async def test_put_then_get_round_trip_with_ids_and_variant_ids(client):
    agent = await create_agent(client, config=BASE)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.1})
    sent = [
        rule("pro", serve=variant["slug"]),
        {
            "name": "big",
            "when": [{"attribute": "seats", "op": "gte", "value": 40}, {"attribute": "beta", "op": "exists"}],
            "serve": {"variant": "base"},
        },
        {
            "name": "listed",
            "when": [{"attribute": "region", "op": "in", "values": ["eu", "us", 3, True]}],
            "serve": {"variant": variant["id"]},
        },
    ]
    response = await put(client, agent, sent)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == FIELDS and body["version"] == 1 and response.headers["etag"] == '"1"'
    assert body["updated_at"] is not None and body["environment"] == "production"
    assert [r["name"] for r in body["rules"]] == ["pro", "big", "listed"]
    assert all(is_id("rule", r["id"]) for r in body["rules"])
    assert len({r["id"] for r in body["rules"]}) == 3
    assert [r["serve"]["variant"] for r in body["rules"]] == [variant["id"], "base", variant["id"]]
    assert body["rules"][1]["when"] == sent[1]["when"] and body["rules"][2]["when"] == sent[2]["when"]
    got = await client.get(rules_path(agent))
    assert got.json() == body and got.headers["etag"] == '"1"'
    assert (await client.get(rules_path(agent), headers={"If-None-Match": '"1"'})).status_code == 304


async def test_a_rule_without_id_keeps_the_id_of_the_rule_with_its_name(client):
    agent = await create_agent(client, config=BASE)
    first = (await put(client, agent, [rule("a"), rule("b")])).json()
    ids = {r["name"]: r["id"] for r in first["rules"]}
    again = (
        await put(client, agent, [rule("b", serve="base", when=[{"attribute": "x", "op": "exists"}]), rule("c")])
    ).json()
    assert again["version"] == 2
    assert again["rules"][0]["id"] == ids["b"]
    assert again["rules"][1]["id"] not in ids.values()
    # An explicit id is kept as sent, and one another rule sends is not taken by name.
    explicit = (await put(client, agent, [rule("c", id=ids["b"]), rule("b")])).json()
    assert explicit["rules"][0]["id"] == ids["b"]
    assert explicit["rules"][1]["id"] not in (ids["b"], again["rules"][1]["id"])


async def test_an_identical_set_is_a_no_op(client):
    agent = await create_agent(client, config=BASE)
    variant = await create_variant(client, agent["id"])
    first = (await put(client, agent, [rule("a", serve=variant["slug"])])).json()
    count = len(await revisions(client, agent))
    # The same rules, without ids and naming the variant by id this time.
    response = await put(client, agent, [rule("a", serve=variant["id"])])
    assert response.status_code == 200 and response.json() == first and response.headers["etag"] == '"1"'
    assert len(await revisions(client, agent)) == count


async def test_if_match(client):
    agent = await create_agent(client, config=BASE)
    assert_problem(await put(client, agent, [rule("a")], headers={"If-Match": '"1"'}), 412, "precondition_failed")
    assert (await put(client, agent, [rule("a")], headers={"If-Match": '"0"'})).json()["version"] == 1
    assert_problem(await put(client, agent, [], headers={"If-Match": '"0"'}), 412, "precondition_failed")
    response = await put(client, agent, [], headers={"If-Match": '"1"'})
    assert response.status_code == 200 and response.json()["version"] == 2 and response.json()["rules"] == []


async def test_a_change_writes_a_revision_and_leaves_the_agent_version(client):
    agent = await create_agent(client, config=BASE)
    before = (await client.get(f"/v1/agents/{agent['id']}")).json()
    after = (await put(client, agent, [rule("a")], headers={"X-Actor": "ann"})).json()
    newest = (await revisions(client, agent))[0]
    assert newest["target"] == "rule_set" and newest["action"] == "rules"
    assert newest["target_id"] == PRODUCTION_ENVIRONMENT_ID and newest["actor"] == "ann"
    assert newest["before"]["version"] == 0 and newest["before"]["rules"] == []
    assert newest["after"] == after
    agent_now = (await client.get(f"/v1/agents/{agent['id']}")).json()
    assert agent_now["version"] == before["version"]
    filtered = await client.get(f"/v1/agents/{agent['id']}/revisions", params={"target_id": PRODUCTION_ENVIRONMENT_ID})
    assert [r["id"] for r in filtered.json()["data"]] == [newest["id"]]


async def test_undo_puts_the_set_back(client):
    agent = await create_agent(client, config=BASE)
    first = (await put(client, agent, [rule("a")])).json()
    await put(client, agent, [rule("b")])
    response = await client.post(f"/v1/agents/{agent['id']}/undo")
    assert response.status_code == 200, response.text
    now = (await client.get(rules_path(agent))).json()
    assert now["rules"] == first["rules"] and now["version"] == 3


async def test_a_served_config_breaking_the_token_rule_is_422_naming_the_rule(client):
    agent = await create_agent(client, config=BASE)
    fine = await create_variant(client, agent["id"], overrides={"max_tokens": 1000})
    # A base config change that an inactive variant's overrides then break (the agent checks its
    # active variant only), so the variant cannot be served.
    big = await create_variant(client, agent["id"], overrides={"max_tokens": 3500})
    patched = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"input_token_limit": 5000}})
    assert patched.status_code == 200, patched.text
    response = await put(client, agent, [rule("fine", serve=fine["slug"]), rule("big", serve=big["slug"])])
    body = assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {"rules[1].serve"}
    assert "rules[1].serve" in body["detail"]
    assert (await client.get(rules_path(agent))).json()["version"] == 0


async def test_an_unknown_variant_is_404_naming_it(client):
    agent = await create_agent(client, config=BASE)
    other = await create_agent(client, config=BASE)
    theirs = await create_variant(client, other["id"])
    for ref in ("nope", "var_01JDQ3W5A7C9E1G3J5K7M9P1R3", theirs["id"]):
        response = await put(client, agent, [rule("a"), rule("b", serve=ref)])
        assert_problem(response, 404, "resource_missing")
        assert problem_params(response) == {"rules[1].serve.variant"}


async def test_a_variant_a_rule_serves_cannot_be_deleted(client):
    agent = await create_agent(client, config=BASE)
    variant = await create_variant(client, agent["id"])
    staging = await environment(client)
    ruled = await client.put(
        rules_path(agent), params={"environment": staging["slug"]}, json={"rules": [rule("a", serve=variant["slug"])]}
    )
    assert ruled.status_code == 200, ruled.text
    body = assert_problem(
        await client.delete(f"/v1/agents/{agent['id']}/variants/{variant['id']}"), 409, "variant_in_rule"
    )
    assert staging["slug"] in body["detail"]
    assert (
        await client.put(rules_path(agent), params={"environment": staging["id"]}, json={"rules": [rule("a")]})
    ).status_code == 200
    assert (await client.delete(f"/v1/agents/{agent['id']}/variants/{variant['id']}")).status_code == 204


async def test_an_environment_with_rules_is_in_use(client):
    agent = await create_agent(client, config=BASE)
    staging = await environment(client)
    params = {"environment": staging["slug"]}
    assert (await client.put(rules_path(agent), params=params, json={"rules": [rule("a")]})).status_code == 200
    body = assert_problem(await client.delete(f"/v1/environments/{staging['id']}"), 409, "environment_in_use")
    assert "rules" in body["detail"]
    assert (await client.put(rules_path(agent), params=params, json={"rules": []})).status_code == 200
    assert (await client.delete(f"/v1/environments/{staging['id']}")).status_code == 204
    assert_problem(await client.get(rules_path(agent), params=params), 404, "resource_missing")


async def test_an_unknown_environment_is_404_naming_the_param(client):
    agent = await create_agent(client, config=BASE)
    for ref in ("nowhere", "env_01JDQ3W5A7C9E1G3J5K7M9P1R3", "Not A Slug"):
        for response in (
            await client.get(rules_path(agent), params={"environment": ref}),
            await client.put(rules_path(agent), params={"environment": ref}, json={"rules": [rule("a")]}),
        ):
            assert_problem(response, 404, "resource_missing")
            assert problem_params(response) == {"environment"}
    assert_problem(await client.get("/v1/agents/nobody/rules"), 404, "resource_missing")


async def test_sets_are_per_environment(client):
    agent = await create_agent(client, config=BASE)
    staging = await environment(client)
    production = (await put(client, agent, [rule("prod")])).json()
    staged = (
        await client.put(
            rules_path(agent), params={"environment": staging["slug"]}, json={"rules": [rule("stage"), rule("two")]}
        )
    ).json()
    assert staged["environment"] == staging["slug"] and staged["version"] == 1 and len(staged["rules"]) == 2
    assert (await client.get(rules_path(agent))).json() == production
    assert (await client.get(rules_path(agent), params={"environment": staging["id"]})).json() == staged
    newest = (await revisions(client, agent))[0]
    assert newest["target_id"] == staging["id"]


async def test_purge_removes_the_sets_and_archive_keeps_them(client, conn: AsyncConnection):
    agent = await create_agent(client, config=BASE)
    await put(client, agent, [rule("a")])
    count = text("SELECT count(*) FROM rule_sets WHERE agent_id = :agent")
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204  # archived
    assert await conn.scalar(count, {"agent": agent["id"]}) == 1
    assert (await client.post(f"/v1/agents/{agent['id']}/unarchive")).status_code == 200
    assert len((await client.get(rules_path(agent))).json()["rules"]) == 1
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    assert (await client.delete(f"/v1/agents/{agent['id']}", params={"purge": "true"})).status_code == 204
    assert await conn.scalar(count, {"agent": agent["id"]}) == 0


async def test_a_rule_keeps_serving_a_variant_whose_slug_changes(client):
    agent = await create_agent(client, config=BASE)
    variant = await create_variant(client, agent["id"])
    first = (await put(client, agent, [rule("a", serve=variant["slug"])])).json()
    renamed = await client.patch(f"/v1/agents/{agent['id']}/variants/{variant['id']}", json={"slug": "renamed-one"})
    assert renamed.status_code == 200, renamed.text
    assert (await client.get(rules_path(agent))).json() == first
    assert (await put(client, agent, [rule("a", serve="renamed-one")])).json() == first  # the same set


async def test_a_base_config_change_breaking_a_served_variant_is_refused(client):
    agent = await create_agent(client, config=BASE)
    big = await create_variant(client, agent["id"], overrides={"max_tokens": 3500})
    staging = await environment(client)
    ruled = await client.put(
        rules_path(agent), params={"environment": staging["slug"]}, json={"rules": [rule("a", serve=big["id"])]}
    )
    assert ruled.status_code == 200, ruled.text
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"input_token_limit": 5000}})
    body = assert_problem(response, 422, "inconsistent_config")
    assert big["slug"] in body["detail"] and "overrides.max_tokens" in problem_params(response)
    await client.put(rules_path(agent), params={"environment": staging["slug"]}, json={"rules": []})
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"input_token_limit": 5000}})
    assert response.status_code == 200, response.text
