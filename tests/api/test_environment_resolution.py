"""Resolution per environment (issue 18), where it is easy to get wrong: the resolve cache
keyed by environment, `?at=` with an environment (rules as of then), `undo?environment=`,
one running experiment per agent and environment, `attr.*` validation, and an unknown
`environment` on every per-environment route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import (
    admin_key,
    assert_problem,
    bearer,
    config,
    create_agent,
    create_variant,
    problem_params,
    settings_for_tests,
    unique,
)

PLAIN_FIELDS = ("source", "variant_id", "rule_id", "experiment_id", "arm", "environment", "prompt_version")


@pytest.fixture
async def uncached(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The same database through an app without a cache: the truth to compare with."""
    app = create_app(settings_for_tests(resolve_cache_size=0), database=db)
    secret = await admin_key(db, "test-admin-uncached")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=bearer(secret)
    ) as http:
        yield http


async def environment(client: httpx.AsyncClient, name: str | None = None) -> dict[str, Any]:
    response = await client.post("/v1/environments", json={"name": name or unique("env")})
    assert response.status_code == 201, response.text
    return response.json()


async def ok(response: Any) -> dict[str, Any]:
    got = await response
    assert got.status_code in (200, 201), got.text
    return got.json()


def picked(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(body[name] for name in PLAIN_FIELDS)


async def resolved(client: httpx.AsyncClient, ref: str, environment: str | None = None, **params: Any) -> Any:
    if environment is not None:
        params["environment"] = environment
    response = await client.get(f"/v1/agents/{ref}/resolved", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def setup(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    agent = await create_agent(client, config=config(prompt_version="base"))
    a = await create_variant(client, agent["id"], overrides={"prompt_version": "a"})
    b = await create_variant(client, agent["id"], overrides={"prompt_version": "b"})
    staging = await environment(client)
    return agent, a, b, staging


# --- the resolve cache, per environment ----------------------------------------------------


async def test_a_change_in_one_environment_leaves_no_other_stale(client, uncached):
    agent, a, b, staging = await setup(client)
    refs = (agent["id"], agent["slug"])
    envs = ("production", staging["slug"], staging["id"], None)

    async def check(expected: dict[str | None, str]) -> None:
        for _ in range(2):  # the second round is served from the cache
            for ref in refs:
                for env in envs:
                    body = await resolved(client, ref, env)
                    name = "production" if env is None else env
                    want = expected["production" if name == "production" else "staging"]
                    assert body["prompt_version"] == want, (ref, env, body)
                    assert body["environment"] == ("production" if name == "production" else staging["slug"])
                    truth = await resolved(uncached, ref, env)
                    assert body == truth
                    with_subject = await resolved(client, ref, env, subject="u1")
                    assert with_subject == await resolved(uncached, ref, env, subject="u1")

    await check({"production": "base", "staging": "base"})
    path = f"/v1/agents/{agent['id']}/variants"
    await ok(client.post(f"{path}/{a['id']}/activate"))
    await check({"production": "a", "staging": "base"})
    await ok(client.post(f"{path}/{b['id']}/activate", params={"environment": staging["slug"]}))
    await check({"production": "a", "staging": "b"})
    await ok(client.post(f"{path}/{a['id']}/deactivate"))
    await check({"production": "base", "staging": "b"})
    rule = {"name": "everyone", "when": [{"attribute": "plan", "op": "not_exists"}], "serve": {"variant": a["id"]}}
    await ok(
        client.put(f"/v1/agents/{agent['id']}/rules", params={"environment": staging["id"]}, json={"rules": [rule]})
    )
    await check({"production": "base", "staging": "a"})
    await ok(client.put(f"/v1/agents/{agent['id']}/rules", json={"rules": [rule]}))
    await check({"production": "a", "staging": "a"})
    await ok(client.put(f"/v1/agents/{agent['id']}/rules", params={"environment": staging["id"]}, json={"rules": []}))
    await check({"production": "a", "staging": "b"})
    await ok(client.patch(f"{path}/{b['id']}", json={"overrides": {"prompt_version": "b2"}}))  # shared
    await check({"production": "a", "staging": "b2"})
    await ok(client.post(f"/v1/agents/{agent['id']}/undo", params={"environment": staging["slug"]}))
    await check({"production": "a", "staging": "b"})


async def test_the_same_agent_by_slug_gives_each_environment_its_own_answer(client):
    agent, a, b, staging = await setup(client)
    path = f"/v1/agents/{agent['slug']}/variants"
    await ok(client.post(f"{path}/{a['slug']}/activate"))
    await ok(client.post(f"{path}/{b['slug']}/activate", params={"environment": staging["slug"]}))
    for _ in range(3):
        production = await resolved(client, agent["slug"])
        other = await resolved(client, agent["slug"], staging["slug"])
        assert (production["variant_id"], production["environment"]) == (a["id"], "production")
        assert (other["variant_id"], other["environment"]) == (b["id"], staging["slug"])


async def test_a_deleted_environment_is_404_even_after_it_was_cached(client):
    agent, _, _, staging = await setup(client)
    for ref in (staging["slug"], staging["id"]):
        await resolved(client, agent["slug"], ref)
        await resolved(client, agent["slug"], ref)  # now cached
        await resolved(client, agent["slug"], ref, subject="u")
    response = await client.delete(f"/v1/environments/{staging['id']}")
    assert response.status_code == 204, response.text
    for ref in (staging["slug"], staging["id"]):
        for params in ({}, {"subject": "u"}):
            response = await client.get(f"/v1/agents/{agent['slug']}/resolved", params={"environment": ref, **params})
            assert problem_params(response) == {"environment"}
            assert_problem(response, 404, "resource_missing")


async def test_an_environment_in_which_a_variant_is_active_or_an_experiment_runs_is_in_use(client):
    agent, a, _, staging = await setup(client)
    path = f"/v1/agents/{agent['id']}"
    await ok(client.post(f"{path}/variants/{a['id']}/activate", params={"environment": staging["slug"]}))
    assert_problem(await client.delete(f"/v1/environments/{staging['slug']}"), 409, "environment_in_use")
    await ok(client.post(f"{path}/variants/{a['id']}/deactivate", params={"environment": staging["slug"]}))
    arms = [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}]
    experiment = await ok(
        client.post(f"{path}/experiments", json={"name": "e", "arms": arms, "environment": staging["slug"]})
    )
    await ok(client.post(f"{path}/experiments/{experiment['id']}/start", params={"environment": staging["slug"]}))
    assert_problem(await client.delete(f"/v1/environments/{staging['slug']}"), 409, "environment_in_use")
    await ok(client.post(f"{path}/experiments/{experiment['id']}/stop", params={"environment": staging["slug"]}))
    response = await client.delete(f"/v1/environments/{staging['slug']}")
    assert response.status_code == 204, response.text


# --- time travel with an environment --------------------------------------------------------


async def test_at_with_an_environment_answers_with_its_rules_as_of_then(client):
    agent, a, b, staging = await setup(client)
    rules = f"/v1/agents/{agent['id']}/rules"
    path = f"/v1/agents/{agent['id']}/variants"
    marks: list[datetime] = []

    async def mark() -> None:
        await asyncio.sleep(0.002)
        marks.append(datetime.now(UTC))
        await asyncio.sleep(0.002)

    def rule(name: str, variant: str, op: str = "not_exists") -> dict[str, Any]:
        return {"name": name, "when": [{"attribute": "plan", "op": op}], "serve": {"variant": variant}}

    await mark()  # 0: nothing
    await ok(client.post(f"{path}/{b['id']}/activate", params={"environment": staging["id"]}))
    await mark()  # 1: b active in staging
    first = await ok(client.put(rules, params={"environment": staging["slug"]}, json={"rules": [rule("r", a["id"])]}))
    await mark()  # 2: staging's rule serves a
    await ok(client.put(rules, json={"rules": [rule("p", b["id"])]}))
    await mark()  # 3: production's rule serves b
    second = await ok(
        client.put(rules, params={"environment": staging["slug"]}, json={"rules": [rule("r", a["id"], "exists")]})
    )
    await mark()  # 4: staging's rule no longer holds on the empty context
    await ok(client.put(rules, params={"environment": staging["slug"]}, json={"rules": [rule("s", "base")]}))
    await mark()  # 5: staging's rule serves the base config
    r1, r2 = first["rules"][0]["id"], second["rules"][0]["id"]
    assert r1 == r2  # kept by name

    expected_staging = [
        ("agent", None, None),
        ("variant", b["id"], None),
        ("rule", a["id"], r1),
        ("rule", a["id"], r1),
        ("variant", b["id"], None),
        ("rule", None, "s"),
    ]
    expected_production = [
        ("agent", None, None),
        ("agent", None, None),
        ("agent", None, None),
        ("rule", b["id"], "p"),
        ("rule", b["id"], "p"),
        ("rule", b["id"], "p"),
    ]
    production_rule = (await ok(client.get(rules)))["rules"][0]["id"]
    staging_rule = (await ok(client.get(rules, params={"environment": staging["id"]})))["rules"][0]["id"]
    for index, at in enumerate(marks):
        for env, expected in ((staging["slug"], expected_staging), ("production", expected_production)):
            body = await resolved(client, agent["slug"], env, at=at.isoformat())
            source, variant, rule_id = expected[index]
            rule_id = {"p": production_rule, "s": staging_rule}.get(rule_id, rule_id)  # type: ignore[arg-type]
            assert (body["source"], body["variant_id"], body["rule_id"]) == (source, variant, rule_id), (index, env)
            assert body["environment"] == env
            assert body["prompt_version"] == {None: "base", a["id"]: "a", b["id"]: "b"}[variant]
    now = await resolved(client, agent["slug"], staging["slug"])
    assert (now["source"], now["rule_id"]) == ("rule", staging_rule)


# --- undo?environment= ----------------------------------------------------------------------


async def test_undo_with_an_environment_reverts_only_its_own_and_shared_changes(client):
    agent, a, b, staging = await setup(client)
    base = f"/v1/agents/{agent['id']}"
    s = {"environment": staging["slug"]}
    await ok(client.post(f"{base}/variants/{a['id']}/activate"))  # production
    await ok(client.post(f"{base}/variants/{b['id']}/activate", params=s))  # staging
    await ok(client.patch(f"{base}/variants/{a['id']}", json={"description": "shared"}))  # shared
    rule = {"name": "r", "when": [{"attribute": "x", "op": "exists"}], "serve": {"variant": "base"}}
    await ok(client.put(f"{base}/rules", json={"rules": [rule]}))  # production's rules

    revisions = (await ok(client.get(f"{base}/revisions")))["data"]
    # Newest first: production's rules, the shared update, staging's activation, production's.
    rules_p, update_shared, activate_s, activate_p = (r["id"] for r in revisions[:4])
    assert [r["action"] for r in revisions[:4]] == ["rules", "update", "activate", "activate"]

    first = await ok(client.post(f"{base}/undo", params=s))
    assert first["reverted_revision_id"] == update_shared  # shared, and newer than staging's own
    second = await ok(client.post(f"{base}/undo", params=s))
    assert second["reverted_revision_id"] == activate_s
    assert (await resolved(client, agent["id"], staging["slug"]))["variant_id"] is None
    production = await resolved(client, agent["id"])
    assert (production["variant_id"], production["source"]) == (a["id"], "variant")  # untouched
    production = await resolved(client, agent["id"], None, **{"attr.x": "1"})
    assert (production["variant_id"], production["source"]) == (None, "rule")  # production's rule stands
    # What is left in staging's view: the variants' creations (shared), never production's changes.
    undone = await ok(client.post(f"{base}/undo", params=s))
    assert undone["reverted_revision_id"] == revisions[4]["id"]  # b's creation
    assert_problem(await client.post(f"{base}/undo", params=s), 409, "undo_conflict")  # a's: a is active
    assert (await ok(client.get(f"{base}/rules")))["rules"] != []
    undone = await ok(client.post(f"{base}/undo", params={"environment": "production"}))
    assert undone["reverted_revision_id"] == rules_p
    assert (await ok(client.get(f"{base}/rules")))["rules"] == []
    undone = await ok(client.post(f"{base}/undo", params={"environment": "production"}))
    assert undone["reverted_revision_id"] == activate_p


# --- experiments per environment ------------------------------------------------------------


async def test_experiments_run_per_environment(client):
    agent, a, _, staging = await setup(client)
    base = f"/v1/agents/{agent['id']}/experiments"
    arms = [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}]
    made = {}
    for name, env in (("p1", "production"), ("p2", "production"), ("s1", staging["slug"]), ("s2", staging["id"])):
        made[name] = await ok(client.post(base, json={"name": name, "arms": arms, "environment": env}))
        assert made[name]["environment"] == ("production" if env == "production" else staging["slug"])
    sp = {"environment": staging["slug"]}
    await ok(client.post(f"{base}/{made['s1']['id']}/start", params=sp))
    await ok(client.post(f"{base}/{made['p1']['id']}/start"))  # another environment: fine
    assert_problem(await client.post(f"{base}/{made['p2']['id']}/start"), 409, "experiment_running")
    assert_problem(await client.post(f"{base}/{made['s2']['id']}/start", params=sp), 409, "experiment_running")
    # Each environment serves its own.
    body = await resolved(client, agent["id"], staging["slug"], subject="u1")
    assert (body["source"], body["experiment_id"]) == ("experiment", made["s1"]["id"])
    body = await resolved(client, agent["id"], "production", subject="u1")
    assert (body["source"], body["experiment_id"]) == ("experiment", made["p1"]["id"])
    listed = await ok(client.get(base, params={**sp, "status": "running"}))
    assert [e["id"] for e in listed["data"]] == [made["s1"]["id"]]
    await ok(client.post(f"{base}/{made['s1']['id']}/stop", params=sp))
    await ok(client.post(f"{base}/{made['s2']['id']}/start", params=sp))
    body = await resolved(client, agent["id"], staging["slug"], subject="u1")
    assert body["experiment_id"] == made["s2"]["id"]


# --- attr.* and attributes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("attr.subject=x", "attr.subject"),
        ("attr.a%20b=x", "attr.a b"),
        ("attr.a%2Fb=x", "attr.a/b"),
        ("attr.=x", "attr."),
        (f"attr.{'a' * 65}=x", f"attr.{'a' * 65}"),
        ("attr.plan=a&attr.plan=b", "attr.plan"),
        (f"attr.plan={'v' * 1025}", "attr.plan"),
    ],
)
async def test_a_bad_attribute_parameter_is_422_naming_it(client, query, param):
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved?{query}")
    assert_problem(response, 422, "validation_error")
    assert param in problem_params(response), response.text


async def test_more_than_50_attributes_is_422(client):
    agent = await create_agent(client)
    query = "&".join(f"attr.a{n}=x" for n in range(51))
    response = await client.get(f"/v1/agents/{agent['id']}/resolved?{query}")
    assert_problem(response, 422, "validation_error")
    fifty = "&".join(f"attr.a{n}=x" for n in range(50))
    assert (await client.get(f"/v1/agents/{agent['id']}/resolved?{fifty}")).status_code == 200


@pytest.mark.parametrize(
    ("attributes", "param"),
    [
        ({"subject": "x"}, "attributes.subject"),
        ({"a b": "x"}, "attributes.a b"),
        ({"plan": "v" * 1025}, "attributes.plan"),
        ({"plan": None}, "attributes.plan"),
        ({"plan": [1]}, "attributes.plan"),
    ],
)
async def test_a_bad_attribute_in_a_body_is_422_naming_it(client, attributes, param):
    agent = await create_agent(client)
    response = await client.post(f"/v1/agents/{agent['id']}/resolve", json={"attributes": attributes})
    assert_problem(response, 422, "validation_error")
    assert any(p == param or p.startswith(param) for p in problem_params(response)), response.text


@pytest.mark.parametrize("other", ["variant=base", "at=2026-01-01T00:00:00Z"])
async def test_attributes_do_not_combine_with_a_preview_or_time_travel(client, other):
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved?attr.plan=pro&{other}")
    assert_problem(response, 422, "validation_error")
    assert "attr.*" in problem_params(response) or any(p.startswith("attr") for p in problem_params(response))


# --- an unknown environment on every per-environment route -----------------------------------


async def test_an_unknown_environment_is_404_naming_it_on_every_route(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    arms = [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]
    experiment = await ok(client.post(f"/v1/agents/{agent['id']}/experiments", json={"name": "e", "arms": arms}))
    revision = (await ok(client.get(f"/v1/agents/{agent['id']}/revisions")))["data"][0]["id"]
    spec = (await client.get("/openapi.json")).json()
    bodies: dict[tuple[str, str], Any] = {
        ("post", "/v1/agents"): {"name": unique(), "config": config()},
        ("post", "/v1/agents/{agent}/resolve"): {"subject": "u"},
        ("post", "/v1/agents/{agent}/render"): {"subject": "u"},
        ("patch", "/v1/agents/{agent}"): {"description": "x"},
        ("post", "/v1/agents/{agent}/variants"): {"variant_name": unique("v")},
        ("patch", "/v1/agents/{agent}/variants/{variant}"): {"description": "x"},
        ("post", "/v1/agents/{agent}/variants/{variant}/restore"): {"revision_id": revision},
        ("put", "/v1/agents/{agent}/rules"): {"rules": []},
        ("post", "/v1/agents/{agent}/experiments"): {"name": "e2", "arms": arms},
        ("patch", "/v1/agents/{agent}/experiments/{experiment}"): {"description": "x"},
        ("post", "/ofrep/v1/evaluate/flags/{agent}"): {"context": {}},
        ("post", "/ofrep/v1/evaluate/flags"): {"context": {}},
        ("post", "/v1/agents/{agent}/outcomes"): {
            "variant_id": None,
            "input_tokens": 1,
            "output_tokens": 1,
            "latency_ms": 1,
        },
    }
    extra: dict[str, dict[str, str]] = {"/v1/agents/{agent}/variants/{variant}/diff": {"against": "base"}}
    checked = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            if "environment" not in names or path.endswith("/watch"):
                continue
            url = path.format(agent=agent["id"], variant=variant["id"], experiment=experiment["id"], revision=revision)
            for ref in ("nowhere", "env_01ARZ3NDEKTSV4RRFFQ69G5FAV"):
                params = {**extra.get(path, {}), "environment": ref}
                response = await client.request(method, url, params=params, json=bodies.get((method, path)))
                assert response.status_code == 404, (method, path, response.text)
                if path.startswith("/ofrep/"):  # OFREP's shape: no flag in an environment that is not there
                    assert f"Environment '{ref}' not found" in response.json()["errorDetails"], response.text
                    continue
                assert problem_params(response) == {"environment"}, (method, path, response.text)
            checked.append((method, path))
    assert len(checked) >= 25, checked
    response = await client.get(f"/v1/agents/{agent['id']}/bundle/watch", params={"environment": "nowhere"})
    assert response.status_code == 404 and problem_params(response) == {"environment"}
    body = {"environment": "nowhere"}
    response = await client.post(f"/v1/agents/{agent['id']}/resolve", json=body)
    assert response.status_code == 404 and problem_params(response) == {"environment"}, response.text
    response = await client.post(f"/v1/agents/{agent['id']}/experiments", json={"name": "e3", "arms": arms, **body})
    assert response.status_code == 404 and problem_params(response) == {"environment"}, response.text


# --- bundles with rules -----------------------------------------------------------------------


async def test_a_bundle_carries_each_rule_with_the_config_it_serves(client):
    agent, a, _, staging = await setup(client)
    rule = {"name": "pro", "when": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": a["slug"]}}
    stored = await ok(
        client.put(f"/v1/agents/{agent['id']}/rules", params={"environment": staging["slug"]}, json={"rules": [rule]})
    )
    bundle = await ok(client.get(f"/v1/agents/{agent['slug']}/bundle", params={"environment": staging["id"]}))
    assert bundle["environment"] == staging["slug"] and len(bundle["rules"]) == 1
    served = bundle["rules"][0]
    assert (served["id"], served["serve"], served["when"]) == (
        stored["rules"][0]["id"],
        {"variant": a["id"]},
        rule["when"],
    )
    resolved_by_rule = await ok(
        client.post(
            f"/v1/agents/{agent['id']}/resolve", json={"environment": staging["slug"], "attributes": {"plan": "pro"}}
        )
    )
    assert {k: v for k, v in served["resolved"].items() if k != "provenance"} == resolved_by_rule
    assert resolved_by_rule["source"] == "rule" and resolved_by_rule["rule_id"] == served["id"]
    production = await ok(client.get(f"/v1/agents/{agent['slug']}/bundle"))
    assert production["rules"] == [] and production["environment"] == "production"


# --- revisions name their environment ---------------------------------------------------------


async def test_a_revision_names_its_environment_and_every_active_variant(client):
    agent, a, b, staging = await setup(client)
    base = f"/v1/agents/{agent['id']}"
    await ok(client.post(f"{base}/variants/{a['id']}/activate"))
    await ok(client.post(f"{base}/variants/{b['id']}/activate", params={"environment": staging["slug"]}))
    await ok(client.patch(f"{base}/variants/{a['id']}", json={"description": "shared"}))
    update, activate_s, activate_p = (await ok(client.get(f"{base}/revisions")))["data"][:3]
    assert (activate_p["environment"], activate_s["environment"], update["environment"]) == (
        "production",
        staging["slug"],
        None,
    )
    both = {"production": a["id"], staging["slug"]: b["id"]}
    assert {k: v for k, v in update["active_variants"].items() if v is not None} == both


async def test_at_serves_a_rules_variant_as_it_was_then(client):
    agent, a, _, staging = await setup(client)
    rule = {"name": "all", "when": [{"attribute": "plan", "op": "not_exists"}], "serve": {"variant": a["id"]}}
    stored = await ok(
        client.put(f"/v1/agents/{agent['id']}/rules", params={"environment": staging["slug"]}, json={"rules": [rule]})
    )
    await asyncio.sleep(0.002)
    then = datetime.now(UTC)
    await asyncio.sleep(0.002)
    await ok(client.patch(f"/v1/agents/{agent['id']}/variants/{a['id']}", json={"overrides": {"prompt_version": "a2"}}))
    past = await resolved(client, agent["id"], staging["slug"], at=then.isoformat())
    assert (past["source"], past["rule_id"], past["prompt_version"]) == ("rule", stored["rules"][0]["id"], "a")
    now = await resolved(client, agent["id"], staging["slug"])
    assert (now["source"], now["prompt_version"]) == ("rule", "a2")
    assert (await resolved(client, agent["id"], at=then.isoformat()))["source"] == "agent"  # production: no rules


async def test_a_live_arm_serves_what_its_environment_served_at_start(client):
    agent, a, b, staging = await setup(client)
    base = f"/v1/agents/{agent['id']}"
    s = {"environment": staging["slug"]}
    await ok(client.post(f"{base}/variants/{a['id']}/activate"))  # production
    await ok(client.post(f"{base}/variants/{b['id']}/activate", params=s))  # staging
    arms = [{"variant": "live", "weight": 1}, {"variant": "base", "weight": 1}]
    experiment = await ok(client.post(f"{base}/experiments", json={"name": "e", "arms": arms, **s}))
    started = await ok(client.post(f"{base}/experiments/{experiment['id']}/start", params=s))
    assert started["arms"][0]["variant_id"] == b["id"]  # staging's, not production's
    await ok(client.post(f"{base}/variants/{b['id']}/deactivate", params=s))
    seen = set()
    for n in range(40):
        body = await resolved(client, agent["id"], staging["slug"], subject=f"u{n}")
        seen.add((body["arm"], body["variant_id"], body["prompt_version"]))
    assert seen == {(0, b["id"], "b"), (1, None, "base")}


async def test_reads_describe_the_requests_environment(client):
    agent, a, b, staging = await setup(client)
    base = f"/v1/agents/{agent['id']}"
    s = {"environment": staging["slug"]}
    await ok(client.post(f"{base}/variants/{a['id']}/activate"))
    await ok(client.post(f"{base}/variants/{b['id']}/activate", params=s))
    assert (await ok(client.get(base)))["active_variant_id"] == a["id"]
    seen = await ok(client.get(base, params=s))
    assert seen["active_variant_id"] == b["id"]
    assert {k: v for k, v in seen["active_variants"].items() if k in ("production", staging["slug"])} == {
        "production": a["id"],
        staging["slug"]: b["id"],
    }
    listed = await ok(client.get(f"{base}/variants", params={**s, "is_active": "true"}))
    assert [v["id"] for v in listed["data"]] == [b["id"]]
    variant = await ok(client.get(f"{base}/variants/{a['id']}", params=s))
    assert (variant["is_active"], variant["active_in"]) == (False, ["production"])
    arms = [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}]
    experiment = await ok(client.post(f"{base}/experiments", json={"name": "e", "arms": arms, **s}))
    await ok(client.post(f"{base}/experiments/{experiment['id']}/start", params=s))
    assert_problem(await client.delete(base), 409, "experiment_running")  # running in staging holds it too


@pytest.mark.parametrize("path", ["/resolved", "/bundle", "/rules", ""])
async def test_a_malformed_environment_is_404_not_a_server_error(client, path):
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}{path}", params={"environment": "pQj\x00vR"})
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"environment"}
