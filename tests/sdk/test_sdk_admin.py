"""The SDK's admin namespaces (`agents`, `variants`, `experiments`, `keys`), sync and async,
against a real server: they mirror the HTTP API, raise typed errors from problem+json, and
every POST carries an `Idempotency-Key`."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_variants import (
    AgentVariants,
    AsyncAgentVariants,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    ValidationFailed,
)

from tests.helpers import config, unique
from tests.system.test_replicas import Replicas, replicas

pytestmark = pytest.mark.live
__all__ = ["replicas"]

Client = AgentVariants | AsyncAgentVariants


async def done(value: Any) -> Any:
    """A sync client's answer as is, an async one's awaited."""
    return await value if inspect.isawaitable(value) else value


def secret(replicas: Replicas) -> str:
    return replicas.http.headers["Authorization"].removeprefix("Bearer ")


def make(kind: str, url: str, key: str | None) -> Client:
    return AgentVariants(url, key) if kind == "sync" else AsyncAgentVariants(url, key)


@pytest.fixture(params=["sync", "async"])
async def sdk(request: pytest.FixtureRequest, replicas: Replicas) -> AsyncIterator[Client]:
    client = make(request.param, replicas.a.url, secret(replicas))
    yield client
    await done(client.close())


async def test_the_main_flow_through_the_namespaces(sdk: Client, replicas: Replicas) -> None:
    agent = await done(sdk.agents.create(unique("SDK flow"), config(temperature=0.5), description="made by the SDK"))
    assert agent["object"] == "agent" and agent["config"]["temperature"] == 0.5
    assert (await done(sdk.agents.get(agent["slug"])))["id"] == agent["id"]

    draft = await done(sdk.variants.create(agent["slug"], "Concise", clone_from="base", overrides={"temperature": 0.2}))
    assert draft["overrides"]["temperature"] == 0.2 and draft["cloned_from"]["source"] == "base"
    patched = await done(
        sdk.variants.update(agent["slug"], draft["slug"], {"description": "short answers"}, if_match=draft["version"])
    )
    assert patched["version"] == draft["version"] + 1
    active = await done(sdk.variants.activate(agent["slug"], draft["slug"], if_match=patched["version"]))
    assert active["is_active"] is True
    resolved = await done(sdk.agents.resolved(agent["slug"], explain=True))
    assert resolved["variant_id"] == draft["id"] and resolved["provenance"]["temperature"] == "variant"
    assert (await done(sdk.variants.list(agent["slug"], is_active=True)))["data"][0]["id"] == draft["id"]
    diff = await done(sdk.variants.diff(agent["slug"], draft["slug"]))
    assert {"field": "temperature", "from": 0.5, "to": 0.2} in diff["changes"]

    # History: the activation is the newest revision, and undo reverts it.
    revisions = await done(sdk.agents.revisions(agent["slug"], limit=2))
    assert revisions["data"][0]["action"] == "activate"
    assert (await done(sdk.agents.revision(agent["slug"], revisions["data"][0]["id"])))["target_id"] == draft["id"]
    undone = await done(sdk.agents.undo(agent["slug"]))
    assert undone["reverted_revision_id"] == revisions["data"][0]["id"]
    assert (await done(sdk.agents.get(agent["id"])))["active_variant_id"] is None

    # An experiment, start to results.
    test = await done(
        sdk.experiments.create(
            agent["slug"],
            "concise vs base",
            [{"variant": "base", "weight": 1}, {"variant": draft["slug"], "weight": 1}],
        )
    )
    assert test["status"] == "draft"
    assert (await done(sdk.experiments.start(agent["slug"], test["id"])))["status"] == "running"
    results = await done(sdk.experiments.results(agent["slug"], test["id"]))
    assert [arm["arm"] for arm in results["arms"]] == [0, 1]
    assert (await done(sdk.experiments.list(agent["slug"], status="running")))["data"][0]["id"] == test["id"]
    assert (await done(sdk.experiments.stop(agent["slug"], test["id"])))["status"] == "stopped"

    assert await done(sdk.variants.deactivate(agent["slug"], draft["slug"]))
    assert await done(sdk.agents.usage(agent["slug"])) == {
        "object": "usage",
        "environment": None,  # every environment's (contract 1.1)
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "outcomes": 0,
        "cost_usd": 0.0,
        "estimated_cost_usd": 0.0,
        "by_variant": [],
    }
    assert await done(sdk.agents.delete(agent["slug"])) is None
    with pytest.raises(NotFound) as missing:
        await done(sdk.agents.get(agent["id"]))
    assert missing.value.status == 404 and missing.value.problem["status"] == 404


async def test_errors_are_typed_and_keep_the_problem(sdk: Client) -> None:
    with pytest.raises(ValidationFailed) as invalid:
        await done(sdk.agents.create("", {"model_provider": "", "temperature": 9}))
    params = {error["param"] for error in invalid.value.errors}
    assert {"name", "config.model_provider", "config.temperature", "config.model_name"} <= params
    assert invalid.value.code == "validation_error" and invalid.value.status == 422

    agent = await done(sdk.agents.create(unique("SDK errors"), config()))
    with pytest.raises(Conflict) as taken:
        await done(sdk.agents.create("again", config(), slug=agent["slug"]))
    assert taken.value.code == "slug_taken"
    with pytest.raises(PreconditionFailed) as stale:
        await done(sdk.agents.update(agent["id"], {"description": "late"}, if_match=agent["version"] + 7))
    assert stale.value.code == "precondition_failed"
    # `*` matches any version; a version number becomes the strong ETag.
    assert (await done(sdk.agents.update(agent["id"], {"description": "any"}, if_match="*")))["description"] == "any"
    with pytest.raises(NotFound) as missing:
        await done(sdk.variants.get(agent["id"], "no-such-variant"))
    assert "not found" in str(missing.value)


async def test_an_idempotency_key_makes_a_repeated_create_one_object(sdk: Client) -> None:
    name = unique("SDK idempotent")
    first = await done(sdk.agents.create(name, config(), idempotency_key=f"k-{name}"))
    again = await done(sdk.agents.create(name, config(), idempotency_key=f"k-{name}"))
    assert again == first  # the first response, replayed: same id, same created_at
    # Without one given, the SDK sends a fresh key per call (never none): two calls, two objects.
    variants = [
        await done(sdk.variants.create(first["id"], "twin")),
        await done(sdk.variants.create(first["id"], "twin", slug="twin-2")),
    ]
    assert variants[0]["id"] != variants[1]["id"]
    with pytest.raises(Conflict) as reused:
        await done(sdk.agents.create(name + " other", config(), idempotency_key=f"k-{name}"))
    assert reused.value.code == "idempotency_key_reused"


async def test_keys_and_scopes(sdk: Client, replicas: Replicas) -> None:
    name = unique("sdk-key").lower().replace("_", "-").replace(" ", "-")
    key = await done(sdk.keys.create(name, "read"))
    assert key["secret"].startswith("avk_") and key["scope"] == "read"
    assert (await done(sdk.keys.get(name)))["secret"] is None
    assert name in [k["name"] for k in (await done(sdk.keys.list(limit=100)))["data"]]

    reader = make("sync" if isinstance(sdk, AgentVariants) else "async", replicas.a.url, key["secret"])
    try:
        assert (await done(reader.agents.list(limit=1)))["object"] == "list"
        with pytest.raises(Forbidden) as forbidden:
            await done(reader.agents.create(unique("nope"), config()))
        assert forbidden.value.code == "insufficient_scope"
        assert await done(sdk.keys.revoke(name)) is None
        with pytest.raises(Unauthorized):
            await done(reader.agents.list())
    finally:
        await done(reader.close())
    bound = await done(sdk.keys.create(name + "-prod", "read", environment="production"))
    assert (
        bound["environment"] == "production" and (await done(sdk.keys.get(bound["id"])))["environment"] == "production"
    )
    assert await done(sdk.keys.revoke(bound["id"])) is None


async def test_a_post_whose_answer_was_lost_is_retried_under_its_key_and_acts_once(replicas: Replicas) -> None:
    from tests.sdk.faulty_proxy import FaultyProxy

    proxy = FaultyProxy(replicas.a.url, mode="lose_posts")  # every POST's first answer is lost
    proxy.start()
    try:
        for kind in ("sync", "async"):
            client = make(kind, proxy.url, secret(replicas))
            try:
                name = unique(f"SDK lost {kind}")
                agent = await done(client.agents.create(name, config()))
                variant = await done(client.variants.create(agent["id"], "only"))
                await done(client.variants.activate(agent["id"], variant["id"]))
            finally:
                await done(client.close())
            # Each POST reached the server twice under one key: acted once, then replayed.
            listed = (await replicas.http.get(f"{replicas.a.url}/v1/agents", params={"limit": 100})).json()
            agents = [a for a in listed["data"] if a["name"] == name]
            assert len(agents) == 1 and agents[0]["variant_count"] == 1
            assert agents[0]["active_variant_id"] == variant["id"]
            revisions = (await replicas.http.get(f"{replicas.a.url}/v1/agents/{agent['id']}/revisions")).json()
            assert [r["action"] for r in revisions["data"]] == ["activate", "create", "create"]
    finally:
        proxy.stop()
    assert len(proxy.faults) == 6 and {kind for kind, _ in proxy.faults} == {"lost"}


async def test_a_rollout_through_the_namespace(sdk: Client) -> None:
    agent = await done(sdk.agents.create(unique("SDK rollout"), config()))
    terse = await done(sdk.variants.create(agent["slug"], "Terse", overrides={"max_tokens": 128}))
    steps = [{"percent": 10, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 0}]
    guardrails = [{"metric": "success_rate", "max_degradation": 0.05}]
    rollout = await done(
        sdk.experiments.create(
            agent["slug"],
            "ship terse",
            kind="rollout",
            variant=terse["slug"],
            steps=steps,
            guardrails=guardrails,
            min_outcomes=20,
        )
    )
    assert (rollout["kind"], rollout["status"], rollout["steps"], rollout["min_outcomes"]) == (
        "rollout",
        "draft",
        steps,
        20,
    )
    started = await done(sdk.experiments.start(agent["slug"], rollout["id"]))
    assert started["status"] == "running" and started["progress"]["percent"] == 10
    paused = await done(sdk.experiments.pause(agent["slug"], rollout["id"], if_match=started["version"]))
    assert paused["status"] == "paused"
    with pytest.raises(PreconditionFailed):
        await done(sdk.experiments.resume(agent["slug"], rollout["id"], if_match=started["version"]))
    assert (await done(sdk.experiments.resume(agent["slug"], rollout["id"])))["status"] == "running"
    history = await done(sdk.experiments.guardrail_history(agent["slug"], rollout["id"], limit=5))
    assert history["object"] == "list" and isinstance(history["data"], list)
    # Arms belong to experiments: a rollout given arms is refused, naming the field.
    with pytest.raises(ValidationFailed) as refused:
        await done(
            sdk.experiments.create(
                agent["slug"], "both", [{"variant": "base", "weight": 1}], kind="rollout", variant="terse", steps=steps
            )
        )
    assert "arms" in {error["param"] for error in refused.value.errors}
    assert (await done(sdk.experiments.stop(agent["slug"], rollout["id"])))["status"] == "stopped"


async def test_archive_unarchive_and_purge(sdk: Client) -> None:
    agent = await done(sdk.agents.create(unique("SDK archive"), config()))
    assert await done(sdk.agents.delete(agent["slug"])) is None
    with pytest.raises(NotFound):
        await done(sdk.agents.get(agent["id"]))
    archived = await done(sdk.agents.list(archived=True, limit=100))
    assert agent["id"] in {a["id"] for a in archived["data"]}
    assert agent["id"] not in {a["id"] for a in (await done(sdk.agents.list(limit=100)))["data"]}
    back = await done(sdk.agents.unarchive(agent["slug"]))
    assert back["id"] == agent["id"] and (await done(sdk.agents.get(agent["slug"])))["id"] == agent["id"]
    with pytest.raises(Conflict) as live:
        await done(sdk.agents.delete(agent["slug"], purge=True))
    assert live.value.code == "agent_not_archived"
    await done(sdk.agents.delete(agent["slug"]))
    assert await done(sdk.agents.delete(agent["slug"], purge=True)) is None
    with pytest.raises(NotFound):
        await done(sdk.agents.unarchive(agent["slug"]))


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_actor_is_recorded_on_the_revisions_its_writes_make(kind: str, replicas: Replicas) -> None:
    kind_of = AgentVariants if kind == "sync" else AsyncAgentVariants
    client: Client = kind_of(replicas.a.url, secret(replicas), actor="ana@example.com")
    try:
        agent = await done(client.agents.create(unique("SDK actor"), config()))
        revisions = await done(client.agents.revisions(agent["slug"]))
        assert [revision["actor"] for revision in revisions["data"]] == ["ana@example.com"]
    finally:
        await done(client.close())
