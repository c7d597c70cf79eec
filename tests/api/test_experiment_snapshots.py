"""A running experiment serves the configs its arms resolved to at start (contract 1.1):
later writes to the base config or to the variants change nothing it serves, so no such
write can make an arm break the token rule, and its results compare what it started with.
A `live` arm serves the variant active at start."""

from __future__ import annotations

from typing import Any

import httpx

from services.shared.assignment import assign
from tests.helpers import assert_problem, config, create_agent, create_variant

SUBJECTS = [f"user-{n}" for n in range(80)]


async def start(client: httpx.AsyncClient, agent: dict[str, Any], arms: list[dict[str, Any]]) -> dict[str, Any]:
    created = await client.post(
        f"/v1/agents/{agent['id']}/experiments", json={"name": "Snapshot test", "arms": arms, "salt": "snap"}
    )
    assert created.status_code == 201, created.text
    started = await client.post(f"/v1/agents/{agent['id']}/experiments/{created.json()['id']}/start")
    assert started.status_code == 200, started.text
    return started.json()


async def served(client: httpx.AsyncClient, agent: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """What each arm serves now, through `/resolved?subject=` and through the bundle."""
    by_arm: dict[int, dict[str, Any]] = {}
    for subject in SUBJECTS:
        body = (await client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": subject})).json()
        assert body["source"] == "experiment"
        by_arm.setdefault(body["arm"], body)
        assert body == by_arm[body["arm"]]  # every subject of an arm gets the same config
    bundle = (await client.get(f"/v1/agents/{agent['id']}/bundle")).json()
    for arm in bundle["experiment"]["arms"]:
        fields = {k: v for k, v in arm["resolved"].items() if k != "provenance"}
        assert fields == by_arm[arm["arm"]], "the bundle serves what /resolved serves"
    return by_arm


def rule_holds(body: dict[str, Any]) -> bool:
    return body["input_token_limit"] + body["max_tokens"] <= body["context_window"]


async def test_a_base_change_cannot_make_a_running_arm_break_the_token_rule(client):
    agent = await create_agent(
        client, config=config(context_window=8000, input_token_limit=4000, max_tokens=1000, system_prompt="base")
    )
    big = await create_variant(client, agent["id"], overrides={"max_tokens": 3000})  # 4000 + 3000 <= 8000
    await start(client, agent, [{"variant": "base", "weight": 1}, {"variant": big["id"], "weight": 1}])
    before = await served(client, agent)
    assert set(before) == {0, 1} and before[1]["max_tokens"] == 3000

    # Fine for the base config alone (6000 + 1000 <= 8000), and no variant is active, so the
    # write is accepted; arm 1 would serve 6000 + 3000 > 8000 if it resolved live.
    patched = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"input_token_limit": 6000}})
    assert patched.status_code == 200, patched.text

    after = await served(client, agent)
    assert after == before, "a running experiment serves the configs of its start"
    assert all(rule_holds(body) for body in after.values())
    # Without a subject, resolution is live: the new base config.
    assert (await client.get(f"/v1/agents/{agent['id']}/resolved")).json()["input_token_limit"] == 6000


async def test_variant_changes_after_start_do_not_reach_the_arms(client):
    agent = await create_agent(client, config=config(system_prompt="base prompt"))
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A", "temperature": 0.3})
    experiment = await start(client, agent, [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}])
    assert [arm["variant_id"] for arm in experiment["arms"]] == [None, a["id"]]
    before = await served(client, agent)

    edit = await client.patch(
        f"/v1/agents/{agent['id']}/variants/{a['id']}", json={"overrides": {"system_prompt": "prompt A, edited"}}
    )
    assert edit.status_code == 200
    base = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": "base, edited"}})
    assert base.status_code == 200

    after = await served(client, agent)
    assert after == before
    assert after[0]["system_prompt"] == "base prompt" and after[1]["system_prompt"] == "prompt A"
    explained = (
        await client.get(
            f"/v1/agents/{agent['id']}/resolved",
            params={"subject": next(s for s in SUBJECTS if assign("snap", s, [1, 1]) == 1), "explain": True},
        )
    ).json()
    # Provenance as at start: the fields the variant set come from the experiment.
    assert explained["provenance"]["system_prompt"] == "experiment"
    assert explained["provenance"]["temperature"] == "experiment"
    assert explained["provenance"]["model_name"] == "agent"


async def test_a_live_arm_serves_the_variant_active_at_start(client):
    agent = await create_agent(client, config=config(system_prompt="base prompt"))
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A"})
    b = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt B"})
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/activate")).status_code == 200

    created = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "Live", "arms": [{"variant": "live", "weight": 1}, {"variant": b["slug"], "weight": 1}]},
    )
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["arms"][0] == {"arm": 0, "weight": 1, "variant": "live", "variant_id": None}

    started = (await client.post(f"/v1/agents/{agent['id']}/experiments/{draft['id']}/start")).json()
    assert started["arms"][0] == {"arm": 0, "weight": 1, "variant": "live", "variant_id": a["id"]}
    before = await served(client, agent)
    assert before[0]["system_prompt"] == "prompt A" and before[0]["variant_id"] == a["id"]

    # Activating another variant changes live resolution, not the live arm.
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{b['id']}/activate")).status_code == 200
    assert (await served(client, agent)) == before
    # The variant the live arm resolved to is an arm now: it cannot be deleted while it runs.
    await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/deactivate")
    refused = await client.delete(f"/v1/agents/{agent['id']}/variants/{a['id']}")
    assert_problem(refused, 409, "variant_in_experiment")


async def test_a_live_arm_serving_the_same_config_as_another_is_409_duplicate_arm(client):
    agent = await create_agent(client)
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A"})
    # No variant active: live resolves to the base config, which arm 1 serves too.
    created = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "Dup", "arms": [{"variant": "base", "weight": 1}, {"variant": "live", "weight": 1}]},
    )
    assert created.status_code == 201
    path = f"/v1/agents/{agent['id']}/experiments/{created.json()['id']}"
    refused = await client.post(f"{path}/start")
    assert_problem(refused, 409, "duplicate_arm")
    assert [e["param"] for e in refused.json()["errors"]] == ["arms[1].variant"]
    assert (await client.get(path)).json()["status"] == "draft"  # nothing changed
    # With a variant active, live is that variant: the arms differ and it starts.
    await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/activate")
    assert (await client.post(f"{path}/start")).status_code == 200


async def test_live_is_reserved_like_base(client):
    agent = await create_agent(client)
    refused = await client.post(f"/v1/agents/{agent['id']}/variants", json={"variant_name": "Live", "slug": "live"})
    assert_problem(refused, 422, "slug_reserved")
    derived = await client.post(f"/v1/agents/{agent['id']}/variants", json={"variant_name": "Live"})
    assert derived.status_code == 201 and derived.json()["slug"] == "live-2"
    twice = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "Twice", "arms": [{"variant": "live", "weight": 1}, {"variant": "live", "weight": 1}]},
    )
    assert_problem(twice, 422, "validation_error")
    assert [e["param"] for e in twice.json()["errors"]] == ["arms[1].variant"]


async def test_a_patch_repeating_a_started_experiments_arms_changes_only_what_differs(client):
    agent = await create_agent(client)
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A"})
    await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/activate")
    arms = [{"variant": "live", "weight": 1}, {"variant": "base", "weight": 1}]
    experiment = await start(client, agent, arms)
    path = f"/v1/agents/{agent['id']}/experiments/{experiment['id']}"
    renamed = await client.patch(path, json={"name": "Renamed", "arms": arms})
    assert renamed.status_code == 200, renamed.text  # the same arms: only the name changes
    assert renamed.json()["name"] == "Renamed" and renamed.json()["arms"] == experiment["arms"]
    changed = await client.patch(
        path, json={"arms": [{"variant": "live", "weight": 2}, {"variant": "base", "weight": 1}]}
    )
    assert_problem(changed, 409, "experiment_not_draft")
