"""The SDK's `environments` and `rules` namespaces and the `environment=` of the agent
routes (contract 1.1), sync and async, against a real server: they mirror the HTTP API and
raise typed errors, and what they write is what `resolve()` then answers."""

from __future__ import annotations

from typing import Any

import pytest
from agent_variants import Conflict, NotFound, PreconditionFailed

from tests.helpers import config, unique
from tests.sdk.test_sdk_admin import Client, done, sdk
from tests.system.test_replicas import replicas

pytestmark = pytest.mark.live
__all__ = ["replicas", "sdk"]


def pro_rule(variant: str) -> dict[str, Any]:
    return {"name": "pro", "when": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": {"variant": variant}}


async def test_environments_create_list_get_update_delete(sdk: Client) -> None:
    name = unique("SDK env")
    created = await done(sdk.environments.create(name, description="before", idempotency_key=f"k-{name}"))
    assert created["object"] == "environment" and created["id"].startswith("env_")
    assert created["slug"] == name.lower().replace(" ", "-") and created["description"] == "before"
    # The same key and body: the first answer again, one environment.
    again = await done(sdk.environments.create(name, description="before", idempotency_key=f"k-{name}"))
    assert again == created
    assert await done(sdk.environments.get(created["slug"])) == created
    assert (await done(sdk.environments.get(created["id"])))["slug"] == created["slug"]
    page = await done(sdk.environments.list(limit=100))
    assert page["object"] == "list" and created["id"] in [env["id"] for env in page["data"]]
    assert "production" in [env["slug"] for env in page["data"]]
    first = await done(sdk.environments.list(limit=1))
    assert len(first["data"]) == 1 and first["has_more"] is True
    after = await done(sdk.environments.list(limit=1, after=first["last_id"]))
    assert after["data"][0]["id"] != first["data"][0]["id"]

    renamed = await done(sdk.environments.update(created["slug"], {"name": name + " EU"}, if_match=created["version"]))
    assert renamed["name"] == name + " EU" and renamed["slug"] == created["slug"]
    assert renamed["version"] == created["version"] + 1
    with pytest.raises(PreconditionFailed) as stale:
        await done(sdk.environments.update(created["slug"], {"description": "late"}, if_match=created["version"]))
    assert stale.value.code == "precondition_failed"
    with pytest.raises(PreconditionFailed):
        await done(sdk.environments.delete(created["slug"], if_match=created["version"]))

    assert await done(sdk.environments.delete(created["slug"], if_match=renamed["version"])) is None
    with pytest.raises(NotFound):
        await done(sdk.environments.get(created["id"]))


async def test_production_cannot_be_deleted(sdk: Client) -> None:
    with pytest.raises(Conflict) as protected:
        await done(sdk.environments.delete("production"))
    assert protected.value.code == "environment_protected" and protected.value.status == 409
    assert "production" in str(protected.value)
    assert (await done(sdk.environments.get("production")))["slug"] == "production"


async def test_rules_get_replace_and_resolve_in_an_environment(sdk: Client) -> None:
    agent = await done(sdk.agents.create(unique("SDK rules"), config(temperature=0.5)))
    terse = await done(sdk.variants.create(agent["slug"], "terse", overrides={"temperature": 0.1}))
    env = (await done(sdk.environments.create(unique("SDK rules env"))))["slug"]

    empty = await done(sdk.rules.get(agent["slug"], environment=env))
    assert empty["object"] == "rule_set" and empty["agent_id"] == agent["id"] and empty["environment"] == env
    assert empty["version"] == 0 and empty["rules"] == []

    rule_set = await done(sdk.rules.replace(agent["slug"], [pro_rule(terse["slug"])], environment=env, if_match=0))
    assert rule_set["version"] == 1 and rule_set["environment"] == env
    (rule,) = rule_set["rules"]
    assert rule["id"].startswith("rul_") and rule["serve"]["variant"] == terse["id"]  # stored by id
    assert await done(sdk.rules.get(agent["slug"], environment=env)) == rule_set
    # The same set again changes nothing; a rule sent without `id` keeps its name's.
    assert (await done(sdk.rules.replace(agent["id"], [pro_rule(terse["slug"])], environment=env)))["version"] == 1

    with pytest.raises(PreconditionFailed) as stale:
        await done(sdk.rules.replace(agent["slug"], [], environment=env, if_match=0))
    assert stale.value.code == "precondition_failed"
    with pytest.raises(NotFound) as unknown:
        await done(
            sdk.rules.replace(
                agent["slug"],
                [pro_rule("base"), {**pro_rule("no-such-variant"), "name": "ghost"}],
                environment=env,
                if_match=rule_set["version"],
            )
        )
    assert unknown.value.code == "resource_missing"
    assert [error["param"] for error in unknown.value.problem["errors"]] == ["rules[1].serve.variant"]
    # Production, the default, has rules of its own: none.
    assert (await done(sdk.rules.get(agent["slug"])))["environment"] == "production"
    assert (await done(sdk.rules.get(agent["slug"])))["version"] == 0

    # What the set serves: the SDK's local resolution and the service's own answer agree.
    pro = {"plan": "pro"}
    local = await done(sdk.resolve(agent["slug"], "user-1", attributes=pro, environment=env))
    assert (local.source, local.rule_id, local.variant_id) == ("rule", rule["id"], terse["id"])
    assert local.environment == env and local.temperature == 0.1
    served = await done(sdk.agents.resolved(agent["slug"], subject="user-1", attributes=pro, environment=env))
    assert (served["source"], served["rule_id"], served["environment"]) == ("rule", rule["id"], env)
    free = await done(sdk.agents.resolved(agent["slug"], attributes={"plan": "free"}, environment=env))
    assert (free["source"], free["rule_id"], free["temperature"]) == ("agent", None, 0.5)
    in_production = await done(sdk.resolve(agent["slug"], "user-1", attributes=pro))
    assert (in_production.source, in_production.environment) == ("agent", "production")

    # The set's revision: target `rule_set`, action `rules`, in that environment.
    newest = (await done(sdk.agents.revisions(agent["slug"], environment=env, limit=1)))["data"][0]
    assert (newest["target"], newest["action"], newest["environment"]) == ("rule_set", "rules", env)

    # A ruled environment is in use; cleared, it can go.
    with pytest.raises(Conflict) as in_use:
        await done(sdk.environments.delete(env))
    assert in_use.value.code == "environment_in_use"
    cleared = await done(sdk.rules.replace(agent["slug"], [], environment=env, if_match=rule_set["version"]))
    assert cleared["rules"] == [] and cleared["version"] == 2
    assert await done(sdk.environments.delete(env)) is None


async def test_agent_routes_take_an_environment(sdk: Client) -> None:
    agent = await done(sdk.agents.create(unique("SDK in env"), config()))
    slug = agent["slug"]
    terse = await done(sdk.variants.create(slug, "terse", overrides={"temperature": 0.1}))
    env = (await done(sdk.environments.create(unique("SDK staging"))))["slug"]

    active = await done(sdk.variants.activate(slug, "terse", environment=env, if_match=terse["version"]))
    assert active["is_active"] is True and active["active_in"] == [env]
    assert (await done(sdk.variants.get(slug, "terse")))["is_active"] is False  # production's view
    assert (await done(sdk.variants.get(slug, "terse", environment=env)))["is_active"] is True
    assert [v["id"] for v in (await done(sdk.variants.list(slug, is_active=True, environment=env)))["data"]] == [
        terse["id"]
    ]
    assert (await done(sdk.variants.list(slug, is_active=True)))["data"] == []
    assert (await done(sdk.agents.get(slug, environment=env)))["active_variant_id"] == terse["id"]
    assert (await done(sdk.agents.get(slug)))["active_variant_id"] is None
    assert (await done(sdk.agents.list(limit=1, environment=env)))["data"][0]["active_variant_id"] == terse["id"]
    resolved = await done(sdk.agents.resolved(slug, environment=env))
    assert (resolved["variant_id"], resolved["environment"]) == (terse["id"], env)
    assert (await done(sdk.agents.resolved(slug)))["variant_id"] is None
    bundle = await done(sdk.agents.bundle(slug, environment=env))
    assert bundle["environment"] == env and bundle["resolved"]["variant_id"] == terse["id"]
    assert (await done(sdk.agents.bundle(slug)))["environment"] == "production"
    assert (await done(sdk.variants.diff(slug, "terse", environment=env)))["changes"]
    patched = await done(sdk.variants.update(slug, "terse", {"description": "short"}, environment=env))
    assert patched["is_active"] is True  # described in the request's environment

    # An experiment runs where its create said (the body's `environment`).
    test = await done(
        sdk.experiments.create(
            slug,
            "terse vs base",
            [{"variant": "base", "weight": 1}, {"variant": "terse", "weight": 1}],
            environment=env,
        )
    )
    assert test["environment"] == env
    assert [e["id"] for e in (await done(sdk.experiments.list(slug, environment=env)))["data"]] == [test["id"]]
    assert (await done(sdk.experiments.list(slug)))["data"] == []
    assert (await done(sdk.experiments.get(slug, test["id"], environment=env)))["status"] == "draft"
    renamed = await done(sdk.experiments.update(slug, test["id"], {"name": "v2"}, environment=env))
    assert renamed["name"] == "v2"
    assert (await done(sdk.experiments.start(slug, test["id"], environment=env)))["status"] == "running"
    assert (await done(sdk.experiments.results(slug, test["id"], environment=env)))["status"] == "running"
    assert (await done(sdk.experiments.stop(slug, test["id"], environment=env)))["status"] == "stopped"
    draft = await done(
        sdk.experiments.create(slug, "spare", [{"variant": "base", "weight": 1}, {"variant": "terse", "weight": 1}])
    )
    assert draft["environment"] == "production"
    assert await done(sdk.experiments.delete(slug, draft["id"])) is None

    # Undo in the environment reverts the change made there (experiment revisions are skipped).
    revisions = await done(sdk.agents.revisions(slug, environment=env, target_id=terse["id"]))
    activation = next(r for r in revisions["data"] if r["action"] == "activate")
    assert activation["environment"] == env
    assert (await done(sdk.agents.revision(slug, activation["id"], environment=env)))["environment"] == env
    undone = await done(sdk.agents.undo(slug, environment=env))  # the description first
    assert undone["revision"]["action"] == "undo"
    undone = await done(sdk.agents.undo(slug, environment=env))
    assert undone["reverted_revision_id"] == activation["id"]
    assert (await done(sdk.agents.get(slug, environment=env)))["active_variant_id"] is None
    again = await done(sdk.variants.activate(slug, "terse", environment=env))
    deactivated = await done(sdk.variants.deactivate(slug, "terse", environment=env, if_match=again["version"]))
    assert deactivated["is_active"] is False and deactivated["active_in"] == []
    restored = await done(sdk.variants.restore(slug, "terse", activation["id"], environment=env))
    assert restored["description"] == ""  # as it was right after the activation
    assert (await done(sdk.agents.usage(slug, environment=env)))["environment"] == env

    # An unknown environment is a 404 naming the parameter.
    with pytest.raises(NotFound) as unknown:
        await done(sdk.agents.get(slug, environment="nowhere"))
    assert unknown.value.code == "resource_missing"
    assert [error["param"] for error in unknown.value.problem["errors"]] == ["environment"]

    assert await done(sdk.variants.delete(slug, "terse", environment=env)) is None
    assert await done(sdk.agents.update(slug, {"description": "done"}, environment=env))
    assert await done(sdk.agents.delete(slug, environment=env)) is None
