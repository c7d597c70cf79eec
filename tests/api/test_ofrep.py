"""OFREP (contract 1.1, "Interoperability") in-process: the protocol's shapes, reasons,
variants, metadata and error codes; the bulk form's `agents` filter and ETag; keys.

tests/system/test_ofrep_sdks.py drives the same routes with the real OpenFeature SDKs
(Python and Node) against a real server.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import assert_problem, config, create_agent, create_variant

SINGLE = "/ofrep/v1/evaluate/flags"


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    response = await response
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def world(client: httpx.AsyncClient) -> dict[str, Any]:
    """An agent with an active variant, a rule (plan pro), a running experiment (base
    against `b`), and a second agent with nothing active."""
    agent = await create_agent(client, config=config(system_prompt="base"))
    path = f"/v1/agents/{agent['id']}"
    active = await create_variant(client, agent["id"], overrides={"temperature": 0.2})
    pro = await create_variant(client, agent["id"], overrides={"system_prompt": "pro"})
    b = await create_variant(client, agent["id"], overrides={"system_prompt": "b"})
    await ok(client.post(f"{path}/variants/{active['id']}/activate"))
    rule = {"name": "pro", "when": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": pro["id"]}}
    rules = await ok(client.put(f"{path}/rules", json={"rules": [rule]}))
    arms = [{"variant": "base", "weight": 1}, {"variant": b["id"], "weight": 1}]
    experiment = await ok(client.post(f"{path}/experiments", json={"name": "e", "arms": arms}), 201)
    await ok(client.post(f"{path}/experiments/{experiment['id']}/start"))
    plain = await create_agent(client)
    return {
        "agent": agent,
        "active": active,
        "pro": pro,
        "b": b,
        "rule_id": rules["rules"][0]["id"],
        "experiment": experiment,
        "plain": plain,
    }


async def test_a_single_evaluation_is_the_resolution_with_the_protocols_names(client: httpx.AsyncClient) -> None:
    w = await world(client)
    slug = w["agent"]["slug"]
    cases = [  # (context, reason, variant)
        ({"targetingKey": "u1", "plan": "pro"}, "TARGETING_MATCH", w["pro"]["slug"]),
        ({"targetingKey": "u1", "plan": "free", "seats": 40, "beta": True}, "SPLIT", None),
        ({"plan": "free"}, "STATIC", w["active"]["slug"]),
    ]
    for context, reason, variant in cases:
        got = await ok(client.post(f"{SINGLE}/{slug}", json={"context": context}))
        attributes = {k: v for k, v in context.items() if k != "targetingKey"}
        body = {"subject": context.get("targetingKey"), "attributes": attributes}
        expected = await ok(client.post(f"/v1/agents/{slug}/resolve", json=body))
        assert got["key"] == slug
        assert got["value"] == expected, context
        assert got["reason"] == reason, context
        if variant is not None:
            assert got["variant"] == variant
        else:  # the arm: base or b
            assert got["variant"] in ("base", w["b"]["slug"])
            assert got["variant"] == (expected["variant_slug"] or "base")
        metadata = {"source": expected["source"], "environment": "production"}
        metadata |= {k: expected[k] for k in ("experiment_id", "arm", "rule_id") if expected[k] is not None}
        assert got["metadata"] == metadata
    assert (await ok(client.post(f"{SINGLE}/{slug}", json={"context": {"targetingKey": "u1", "plan": "pro"}})))[
        "metadata"
    ]["rule_id"] == w["rule_id"]
    # The base config: an agent with nothing active, by id.
    plain = w["plain"]
    got = await ok(client.post(f"{SINGLE}/{plain['id']}", json={"context": {}}))
    assert got == {
        "key": plain["id"],
        "value": await ok(client.get(f"/v1/agents/{plain['id']}/resolved")),
        "reason": "DEFAULT",
        "variant": "base",
        "metadata": {"source": "agent", "environment": "production"},
    }


async def test_unknown_and_archived_agents_are_flag_not_found(client: httpx.AsyncClient) -> None:
    archived = await create_agent(client)
    assert (await client.delete(f"/v1/agents/{archived['id']}")).status_code == 204
    for key in ("no-such-agent", archived["slug"], archived["id"], "agt_01JDQ3W5A9C1E3G5J7K9M1P3R5"):
        response = await client.post(f"{SINGLE}/{key}", json={"context": {"targetingKey": "u"}})
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "key": key,
            "errorCode": "FLAG_NOT_FOUND",
            "errorDetails": f"Agent '{key}' not found",
        }


async def test_bad_bodies_and_contexts_are_the_protocols_400s(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    url = f"{SINGLE}/{agent['slug']}"
    parse_errors = [
        {"content": b"{", "headers": {"content-type": "application/json"}},
        {"content": b"[]", "headers": {"content-type": "application/json"}},
        {"content": b'{"context": {}, "context": {}}', "headers": {"content-type": "application/json"}},
        {"content": b'{"context": {}}', "headers": {"content-type": "text/plain"}},
    ]
    for request in parse_errors:
        response = await client.post(url, **request)
        assert response.status_code == 400, response.text
        assert response.json()["errorCode"] == "PARSE_ERROR", response.text
        assert response.json()["key"] == agent["slug"]
    invalid = [
        {},
        {"context": None},
        {"context": []},
        {"context": {"targetingKey": 7}},
        {"context": {"targetingKey": ""}},
        {"context": {"targetingKey": "x" * 257}},
        {"context": {"subject": "u"}},
        {"context": {"plan": {"nested": 1}}},
        {"context": {"plan": None}},
        {"context": {"plan": ["a"]}},
        {"context": {"bad name": "x"}},
        {"context": {"plan": "x" * 1025}},
        {"context": {f"a{i}": i for i in range(51)}},
    ]
    for body in invalid:
        response = await client.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["errorCode"] == "INVALID_CONTEXT", (body, response.text)
        assert response.json()["key"] == agent["slug"]
    # `agents` is an attribute like any other in the single form (a string here).
    assert (await client.post(url, json={"context": {"agents": "x"}})).status_code == 200
    # The bulk form's whole-request failure has no key.
    response = await client.post(SINGLE, json={"context": {"agents": []}})
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_CONTEXT" and "key" not in response.json()


async def test_bulk_evaluates_the_agents_named_or_every_one_with_an_etag(client: httpx.AsyncClient) -> None:
    w = await world(client)
    slug, plain = w["agent"]["slug"], w["plain"]
    archived = await create_agent(client)
    assert (await client.delete(f"/v1/agents/{archived['id']}")).status_code == 204
    context = {"targetingKey": "u1", "plan": "pro", "agents": [slug, "no-such-agent", archived["slug"], plain["id"]]}
    response = await client.post(SINGLE, json={"context": context})
    assert response.status_code == 200, response.text
    flags = response.json()["flags"]
    assert [flag["key"] for flag in flags] == context["agents"]
    single = await ok(client.post(f"{SINGLE}/{slug}", json={"context": {"targetingKey": "u1", "plan": "pro"}}))
    assert flags[0] == single
    assert flags[1] == {
        "key": "no-such-agent",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "Agent 'no-such-agent' not found",
    }
    assert flags[2]["errorCode"] == "FLAG_NOT_FOUND"
    assert flags[3]["reason"] == "DEFAULT" and flags[3]["key"] == plain["id"]
    tag = response.headers["etag"]
    # The same question again: 304 for its ETag, with the ETag.
    again = await client.post(SINGLE, json={"context": context}, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.headers["etag"] == tag and not again.content
    # Another context, another answer.
    other = await client.post(SINGLE, json={"context": {**context, "plan": "free"}}, headers={"If-None-Match": tag})
    assert other.status_code == 200 and other.headers["etag"] != tag
    # A change to an agent changes the answer.
    await ok(client.post(f"/v1/agents/{plain['id']}/variants", json={"variant_name": "v"}), 201)
    variant = (await ok(client.get(f"/v1/agents/{plain['id']}/variants")))["data"][0]
    await ok(client.post(f"/v1/agents/{plain['id']}/variants/{variant['id']}/activate"))
    changed = await client.post(SINGLE, json={"context": context}, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["flags"][3]["reason"] == "STATIC"
    # Without `agents`: every agent not archived, by slug.
    every = await ok(client.post(SINGLE, json={"context": {"targetingKey": "u1"}}))
    keys = [flag["key"] for flag in every["flags"]]
    assert keys == sorted(keys) and slug in keys and plain["slug"] in keys and archived["slug"] not in keys
    assert all("value" in flag for flag in every["flags"])


async def test_keys_environments_and_refusals_in_the_protocols_shapes(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    url = f"{SINGLE}/{agent['slug']}"
    staging = await ok(client.post("/v1/environments", json={"name": "Staging"}), 201)
    # A key bound to staging resolves there; naming production is refused.
    bound = await ok(
        client.post("/v1/keys", json={"name": "ofrep-staging", "scope": "resolve", "environment": "staging"}), 201
    )
    resolve = await ok(client.post("/v1/keys", json={"name": "ofrep-resolve", "scope": "resolve"}), 201)
    as_bound = {"Authorization": f"Bearer {bound['secret']}"}
    got = await ok(client.post(url, json={"context": {}}, headers=as_bound))
    assert got["metadata"]["environment"] == staging["slug"] == got["value"]["environment"]
    refused = await client.post(url, params={"environment": "production"}, json={"context": {}}, headers=as_bound)
    assert refused.status_code == 403 and "bound to environment" in refused.json()["errorDetails"]
    # `?environment=` picks one; an unknown one is no flag there (bulk: a GENERAL 404).
    got = await ok(
        client.post(
            url,
            params={"environment": "staging"},
            json={"context": {}},
            headers={"Authorization": f"Bearer {resolve['secret']}"},
        )
    )
    assert got["metadata"]["environment"] == "staging"
    response = await client.post(url, params={"environment": "nowhere"}, json={"context": {}})
    assert response.status_code == 404 and response.json()["errorCode"] == "FLAG_NOT_FOUND"
    response = await client.post(SINGLE, params={"environment": "nowhere"}, json={"context": {}})
    assert response.status_code == 404 and response.json()["errorCode"] == "GENERAL" and "key" not in response.json()
    # No key, a bad key: 401 with a Bearer challenge and OFREP's general shape, not problem+json.
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer avk_nope"}):
        response = await client.post(url, json={"context": {}}, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert set(response.json()) == {"errorDetails"}
    # The /v1 routes keep problem+json.
    assert_problem(await client.get("/v1/agents", headers={"Authorization": ""}), 401, "unauthorized")


async def test_ofrep_requests_are_reads_idempotency_keys_aside(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    url = f"{SINGLE}/{agent['slug']}"
    first = await client.post(url, json={"context": {"plan": "a"}}, headers={"Idempotency-Key": "k1"})
    second = await client.post(url, json={"context": {"plan": "b"}}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 200
    assert "idempotent-replayed" not in second.headers


async def test_bulk_in_an_unknown_environment_is_404_whatever_the_agents(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    for agents in ([agent["slug"]], ["no-such-agent"], None):
        context: dict[str, Any] = {"agents": agents} if agents else {}
        response = await client.post(SINGLE, params={"environment": "nowhere"}, json={"context": context})
        assert response.status_code == 404, (agents, response.text)
        assert response.json() == {"errorCode": "GENERAL", "errorDetails": "Environment 'nowhere' not found"}
