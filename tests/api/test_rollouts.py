"""Rollouts (contract 1.1, "Splits: experiments and rollouts") through the real app: their
shape and checks, serving by step (sticky), the scheduler's transitions (advance, complete,
roll back on a breached guardrail, pause on a changed config), pause and resume, and what a
live rollout forbids. The scheduler is driven here by calling its tick, as every replica's
loop does; tests/system/test_rollout_replicas.py runs it in real server processes."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from agent_variants.assignment import assign, bucket, rollout_arm
from agent_variants.bundles import Split

from services.api.db import Database
from services.api.experiments.service import at_percent
from services.api.scheduler import rollouts as scheduler
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params, unique

STEPS = [{"percent": 5, "hold_seconds": 0}, {"percent": 50, "hold_seconds": 0}, {"percent": 100, "hold_seconds": 0}]


async def ok(response: Any, status: int = 200) -> Any:
    got = await response
    assert got.status_code == status, got.text
    return got.json()


async def setup(client: httpx.AsyncClient, **rollout: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An agent with an active variant `current`, a variant `candidate`, and a started rollout of it."""
    agent = await create_agent(client, config=config(system_prompt="base"))
    current = await create_variant(client, agent["id"], variant_name="current", overrides={"system_prompt": "v1"})
    candidate = await create_variant(client, agent["id"], variant_name="candidate", overrides={"system_prompt": "v2"})
    await ok(client.post(f"/v1/agents/{agent['id']}/variants/{current['id']}/activate"))
    body = {"kind": "rollout", "name": "ship v2", "variant": candidate["slug"], "steps": STEPS, **rollout}
    created = await ok(client.post(f"/v1/agents/{agent['id']}/experiments", json=body), 201)
    assert created["kind"] == "rollout" and created["status"] == "draft" and created["progress"] is None
    assert [arm["variant"] for arm in created["arms"]] == ["live", candidate["id"]]
    started = await ok(client.post(f"/v1/agents/{agent['id']}/experiments/{created['id']}/start"))
    assert [arm["variant_id"] for arm in started["arms"]] == [current["id"], candidate["id"]]
    return agent, candidate, started


async def report(
    client: httpx.AsyncClient, agent: dict[str, Any], rollout: dict[str, Any], outcomes: list[dict]
) -> None:
    for start in range(0, len(outcomes), 1000):
        batch = [
            {"experiment_id": rollout["id"], "input_tokens": 1, "output_tokens": 1, "latency_ms": 100, **o}
            for o in outcomes[start : start + 1000]
        ]
        await ok(client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": batch}), 202)


async def test_a_rollout_is_checked_field_by_field(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    path = f"/v1/agents/{agent['id']}/experiments"
    bad = await client.post(
        path,
        json={
            "kind": "rollout",
            "name": "r",
            "arms": [{"variant": "base", "weight": 1}, {"variant": "live", "weight": 1}],
            "steps": [{"percent": 50, "hold_seconds": 0}, {"percent": 40, "hold_seconds": 0}],
            "guardrails": [
                {"metric": "success_rate", "max_degradation": 0.02},
                {"metric": "success_rate", "max_degradation": 0.05},
            ],
        },
    )
    assert_problem(bad, 422, "validation_error")
    assert problem_params(bad) == {"arms", "variant", "steps[1].percent", "guardrails[1].metric"}
    experiment = await client.post(path, json={"name": "e", "steps": STEPS, "arms": None})
    assert_problem(experiment, 422, "validation_error")
    assert problem_params(experiment) == {"arms", "steps"}
    missing = await client.post(path, json={"kind": "rollout", "name": "r", "variant": "nope", "steps": STEPS})
    assert_problem(missing, 404, "resource_missing")
    assert missing.json()["errors"][0]["param"] == "variant"


async def test_a_rollout_serves_its_step_and_a_subject_never_moves_back(client: httpx.AsyncClient) -> None:
    agent, candidate, rollout = await setup(client)
    served = {}
    for n in range(200):
        body = await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": f"u{n}"}))
        assert body["source"] == "rollout" and body["experiment_id"] == rollout["id"]
        served[f"u{n}"] = body["arm"]
        expected = rollout_arm(rollout["salt"], f"u{n}", 5)
        assert body["arm"] == expected
        assert body["variant_id"] == (candidate["id"] if expected else rollout["arms"][0]["variant_id"])
    bundle = await ok(client.get(f"/v1/agents/{agent['id']}/bundle"))
    assert bundle["experiment"]["kind"] == "rollout" and bundle["experiment"]["status"] == "running"
    assert [arm["weight"] for arm in bundle["experiment"]["arms"]] == [9500, 500]
    assert rollout["progress"]["step"] == 0 and rollout["progress"]["percent"] == 5


def test_over_100000_subjects_a_subject_on_the_variant_stays_there_as_percents_rise() -> None:
    salt = "exp_sticky"
    percents = [1, 5, 10, 25, 50, 75, 99, 100]
    generator = random.Random(7)
    for subject in (f"user-{generator.getrandbits(64)}" for _ in range(100_000)):
        arms = [assign(salt, subject, [arm["weight"] for arm in at_percent(ARMS, p)]) for p in percents]
        assert arms == sorted(arms), (subject, arms)  # 0 ... 0 1 ... 1: never back
        # The weights the service stores serve exactly the contract's layout.
        cut = next((p for p, arm in zip(percents, arms, strict=True) if arm), None)
        if cut is not None:
            assert bucket(salt, subject) >= 10_000 - 100 * cut
        assert arms[-1] == 1 and arms == [rollout_arm(salt, subject, p) for p in percents]


ARMS = [{"arm": 0, "variant_id": None, "weight": 0, "live": True}, {"arm": 1, "variant_id": "var_x", "weight": 0}]


async def test_the_scheduler_advances_each_step_then_completes_activating_the_variant(
    client: httpx.AsyncClient, db: Database
) -> None:
    agent, candidate, rollout = await setup(client)
    path = f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"
    assert await scheduler.tick(db) == ["advance"]
    shown = await ok(client.get(path))
    assert shown["progress"]["step"] == 1 and shown["progress"]["percent"] == 50
    assert [arm["weight"] for arm in shown["arms"]] == [5000, 5000]
    assert await scheduler.tick(db) == ["advance"]
    assert await scheduler.tick(db) == ["complete"]
    assert await scheduler.tick(db) == []  # nothing live is left
    done = await ok(client.get(path))
    assert done["status"] == "completed" and done["stopped_at"] is not None
    after = await ok(client.get(f"/v1/agents/{agent['id']}"))
    assert after["active_variant_id"] == candidate["id"]
    plain = await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": "u1"}))
    assert plain["source"] == "variant" and plain["variant_id"] == candidate["id"]
    revisions = (await ok(client.get(f"/v1/agents/{agent['id']}/revisions", params={"limit": 5})))["data"]
    assert [(r["action"], r["target"]) for r in revisions[:4]] == [
        ("complete", "experiment"),
        ("activate", "variant"),
        ("advance", "experiment"),
        ("advance", "experiment"),
    ]
    assert {r["actor"] for r in revisions[:4]} == {f"rollout:{rollout['id']}"}
    assert revisions[0]["api_key"] == "test-admin"  # the key that started it


async def test_a_breached_guardrail_rolls_the_rollout_back(client: httpx.AsyncClient, db: Database) -> None:
    guardrails = [{"metric": "success_rate", "max_degradation": 0.02}]
    agent, candidate, rollout = await setup(client, guardrails=guardrails, min_outcomes=50)
    live = rollout["arms"][0]["variant_id"]
    # Not enough outcomes yet: the step waits for them.
    shown = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"))
    assert shown["progress"]["waiting_for"] == "outcomes"
    assert await scheduler.tick(db) == []
    outcomes = [{"variant_id": live, "success": True} for _ in range(400)]
    outcomes += [{"variant_id": candidate["id"], "success": n % 2 == 0} for n in range(400)]
    await report(client, agent, rollout, outcomes)
    shown = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"))
    figures = shown["progress"]["guardrails"][0]
    assert figures["n"] == [400, 400] and figures["breached"] is True
    assert figures["estimate"] == pytest.approx(-0.5)
    assert await scheduler.tick(db) == ["roll_back"]
    done = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"))
    assert done["status"] == "rolled_back" and "success_rate" in done["status_reason"]
    body = await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": "u1"}))
    assert body["source"] == "variant" and body["variant_id"] == live  # all traffic to arm 0
    history = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}/guardrail_history"))
    assert history["data"][0]["guardrails"][0]["breached"] is True
    latest = (await ok(client.get(f"/v1/agents/{agent['id']}/revisions", params={"limit": 1})))["data"][0]
    assert latest["action"] == "roll_back"


async def test_a_paused_rollout_serves_and_guards_but_does_not_advance(client: httpx.AsyncClient, db: Database) -> None:
    agent, _, rollout = await setup(client)
    path = f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"
    paused = await ok(client.post(f"{path}/pause"))
    assert paused["status"] == "paused" and paused["progress"]["waiting_for"] is None
    assert await scheduler.tick(db) == []
    body = await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": "u1"}))
    assert body["source"] == "rollout"
    assert (await ok(client.post(f"{path}/resume")))["status"] == "running"
    assert await scheduler.tick(db) == ["advance"]
    stopped = await ok(client.post(f"{path}/stop"))
    assert stopped["status"] == "stopped"
    assert_problem(await client.post(f"{path}/resume"), 409, "invalid_status")
    experiment = await ok(
        client.post(
            f"/v1/agents/{agent['id']}/experiments",
            json={"name": "ab", "arms": [{"variant": "base", "weight": 1}, {"variant": "live", "weight": 1}]},
        ),
        201,
    )
    assert_problem(
        await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/pause"), 409, "invalid_status"
    )


async def test_a_live_rollout_freezes_its_variant_and_its_environment(client: httpx.AsyncClient) -> None:
    agent, candidate, rollout = await setup(client)
    variant_path = f"/v1/agents/{agent['id']}/variants/{candidate['id']}"
    patched = await client.patch(variant_path, json={"overrides": {"temperature": 0.1}})
    assert_problem(patched, 409, "variant_in_experiment")
    renamed = await client.patch(variant_path, json={"description": "renaming serves nothing new"})
    assert renamed.status_code == 200, renamed.text
    assert_problem(await client.delete(variant_path), 409, "variant_in_experiment")
    assert_problem(await client.post(f"{variant_path}/activate"), 409, "experiment_running")
    other = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"kind": "rollout", "name": "other", "variant": candidate["id"], "steps": STEPS},
    )
    started = await client.post(f"/v1/agents/{agent['id']}/experiments/{other.json()['id']}/start")
    assert_problem(started, 409, "experiment_running")
    await ok(client.post(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}/stop"))
    assert (await client.patch(variant_path, json={"overrides": {"temperature": 0.1}})).status_code == 200


async def test_a_config_changed_since_the_start_pauses_the_rollout_at_completion(
    client: httpx.AsyncClient, db: Database
) -> None:
    agent, _, rollout = await setup(client, steps=[{"percent": 100, "hold_seconds": 0}])
    # The base config is not frozen: the variant inherits this change.
    await ok(client.patch(f"/v1/agents/{agent['id']}", json={"config": {"temperature": 0.3}}))
    assert await scheduler.tick(db) == ["pause"]
    shown = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"))
    assert shown["status"] == "paused" and shown["status_reason"] == "config_changed"


async def test_the_hold_is_waited_for(client: httpx.AsyncClient, db: Database) -> None:
    agent, _, rollout = await setup(
        client, steps=[{"percent": 10, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 0}]
    )
    shown = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"))
    assert shown["progress"]["waiting_for"] == "hold" and shown["progress"]["next_step_at"] > shown["started_at"]
    assert await scheduler.tick(db) == []


async def test_an_outcome_s_arm_wins_over_its_variant_id(client: httpx.AsyncClient) -> None:
    guardrails = [{"metric": "latency_ms_mean", "max_degradation": 250}]
    agent, candidate, rollout = await setup(client, guardrails=guardrails, min_outcomes=1)
    # Reported with a wrong variant_id (or none) but the arm that served it: it counts for the arm.
    await report(client, agent, rollout, [{"variant_id": None, "arm": 1, "latency_ms": 500} for _ in range(3)])
    shown = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}"))
    assert shown["progress"]["guardrails"][0]["n"] == [0, 3]
    usage = await ok(client.get(f"/v1/agents/{agent['id']}/usage"))
    assert {entry["variant_id"]: entry["outcomes"] for entry in usage["by_variant"]}.get(candidate["id"]) == 3
    bad = await client.post(
        f"/v1/agents/{agent['id']}/outcomes",
        json={
            "data": [
                {
                    "variant_id": None,
                    "arm": 2,
                    "experiment_id": rollout["id"],
                    "input_tokens": 1,
                    "output_tokens": 1,
                    "latency_ms": 1,
                },
                {"variant_id": None, "arm": 0, "input_tokens": 1, "output_tokens": 1, "latency_ms": 1},
            ]
        },
    )
    assert_problem(bad, 422, "validation_error")
    assert problem_params(bad) == {"data[1].arm"}  # checked first: the shape; then the arm itself
    only = await client.post(
        f"/v1/agents/{agent['id']}/outcomes",
        json={
            "variant_id": None,
            "arm": 2,
            "experiment_id": rollout["id"],
            "input_tokens": 1,
            "output_tokens": 1,
            "latency_ms": 1,
        },
    )
    assert_problem(only, 422, "validation_error")
    assert problem_params(only) == {"arm"}


async def test_the_sdk_serves_a_rollout_from_its_bundle_as_the_service_does(
    client: httpx.AsyncClient, db: Database
) -> None:
    agent, _, rollout = await setup(client)
    for _ in range(2):  # at 5%, then at 50% (the scheduler's first advance)
        bundle = await ok(client.get(f"/v1/agents/{agent['id']}/bundle"))
        split = Split.of(bundle["experiment"], bundle["environment"])
        assert split is not None
        for n in range(300):
            served = await ok(client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": f"s{n}"}))
            local = split.arm(f"s{n}")
            assert (local.source, local.arm, local.variant_id) == ("rollout", served["arm"], served["variant_id"])
        assert await scheduler.tick(db) == ["advance"]


async def test_a_draft_rollout_s_steps_and_guardrails_are_patched_until_it_starts(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.4})
    path = f"/v1/agents/{agent['id']}/experiments"
    draft = await ok(
        client.post(path, json={"kind": "rollout", "name": "r", "variant": variant["id"], "steps": STEPS}), 201
    )
    patched = await ok(
        client.patch(
            f"{path}/{draft['id']}",
            json={
                "steps": [{"percent": 20, "hold_seconds": 60}, {"percent": 100, "hold_seconds": 0}],
                "guardrails": [{"metric": "score_mean", "max_degradation": 0.1}],
                "min_outcomes": 30,
            },
        )
    )
    assert [arm["weight"] for arm in patched["arms"]] == [8000, 2000]
    assert patched["min_outcomes"] == 30 and patched["guardrails"][0]["metric"] == "score_mean"
    falling = await client.patch(f"{path}/{draft['id']}", json={"steps": [{"percent": 50, "hold_seconds": 0}]})
    assert_problem(falling, 422, "validation_error")
    assert problem_params(falling) == {"steps[0].percent"}
    experiment = await ok(
        client.post(
            path,
            json={"name": "e", "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]},
        ),
        201,
    )
    not_rollout = await client.patch(f"{path}/{experiment['id']}", json={"min_outcomes": 5})
    assert_problem(not_rollout, 422, "validation_error")
    assert problem_params(not_rollout) == {"min_outcomes"}
    await ok(client.post(f"{path}/{draft['id']}/start"))
    late = await client.patch(f"{path}/{draft['id']}", json={"min_outcomes": 5})
    assert_problem(late, 409, "experiment_not_draft")


async def test_a_rollout_its_checks_refuse_now_pauses_and_holds_up_no_other(
    client: httpx.AsyncClient, db: Database
) -> None:
    last = [{"percent": 100, "hold_seconds": 0}]
    blocked = await create_agent(client)
    candidate = await create_variant(client, blocked["id"], overrides={"params": {"seed": 1}})
    path = f"/v1/agents/{blocked['id']}/experiments"
    body = {"kind": "rollout", "name": "r", "variant": candidate["id"], "steps": last}
    first = await ok(client.post(path, json=body), 201)
    await ok(client.post(f"{path}/{first['id']}/start"))
    other, _, second = await setup(client, steps=last)
    # The agent's new schema refuses the variant's params; what the variant resolves to is
    # unchanged (no `config_changed`), and the base config passes it.
    await ok(
        client.patch(f"/v1/agents/{blocked['id']}", json={"params_schema": {"properties": {"seed": {"maximum": 0}}}})
    )
    assert sorted(await scheduler.tick(db)) == ["complete", "pause"]
    paused = await ok(client.get(f"{path}/{first['id']}"))
    assert paused["status"] == "paused" and paused["status_reason"].startswith("cannot_activate")
    done = await ok(client.get(f"/v1/agents/{other['id']}/experiments/{second['id']}"))
    assert done["status"] == "completed"


async def test_an_environment_serving_a_paused_rollout_is_in_use(client: httpx.AsyncClient) -> None:
    staging = await ok(client.post("/v1/environments", json={"name": unique("staging")}), 201)
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.3})
    path = f"/v1/agents/{agent['id']}/experiments"
    body = {"kind": "rollout", "name": "r", "variant": variant["id"], "steps": STEPS, "environment": staging["slug"]}
    rollout = await ok(client.post(path, json=body), 201)
    query = {"environment": staging["slug"]}
    await ok(client.post(f"{path}/{rollout['id']}/start", params=query))
    await ok(client.post(f"{path}/{rollout['id']}/pause", params=query))
    assert_problem(await client.delete(f"/v1/environments/{staging['id']}"), 409, "environment_in_use")


async def test_results_of_a_rolled_back_rollout_are_read(client: httpx.AsyncClient, db: Database) -> None:
    guardrails = [{"metric": "success_rate", "max_degradation": 0.0}]
    agent, candidate, rollout = await setup(client, guardrails=guardrails, min_outcomes=5)
    live = rollout["arms"][0]["variant_id"]
    outcomes = [{"variant_id": live, "success": True} for _ in range(50)]
    outcomes += [{"variant_id": candidate["id"], "success": False} for _ in range(50)]
    await report(client, agent, rollout, outcomes)
    assert await scheduler.tick(db) == ["roll_back"]
    results = await ok(client.get(f"/v1/agents/{agent['id']}/experiments/{rollout['id']}/results"))
    assert results["status"] == "rolled_back" and sum(arm["outcomes"] for arm in results["arms"]) == 100
