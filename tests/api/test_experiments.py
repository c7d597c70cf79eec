"""Experiments: lifecycle, status rules, arms, assignment through `/resolved?subject=`."""

from __future__ import annotations

from typing import Any

import httpx

from services.shared.assignment import assign
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params


async def setup(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    agent = await create_agent(client, config=config(system_prompt="base prompt", temperature=0.5))
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A"})
    b = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt B", "temperature": 0.9})
    return agent, a, b


async def create(client: httpx.AsyncClient, agent: dict[str, Any], arms: list[dict[str, Any]], **body: Any):
    body = {"name": "Prompt test", "arms": arms, **body}
    return await client.post(f"/v1/agents/{agent['id']}/experiments", json=body)


async def test_create_get_list_and_the_object(client):
    agent, a, b = await setup(client)
    response = await create(client, agent, [{"variant": "base", "weight": 1}, {"variant": a["slug"], "weight": 3}])
    assert response.status_code == 201, response.text
    experiment = response.json()
    assert experiment["object"] == "experiment" and experiment["id"].startswith("exp_")
    assert experiment["status"] == "draft" and experiment["salt"] == experiment["id"]
    assert experiment["arms"] == [
        {"arm": 0, "weight": 1, "variant": "base", "variant_id": None},
        {"arm": 1, "weight": 3, "variant": a["id"], "variant_id": a["id"]},
    ]
    assert experiment["started_at"] is None and experiment["stopped_at"] is None and experiment["version"] == 1
    assert response.headers["location"].endswith(f"/experiments/{experiment['id']}")
    for ref in (experiment["id"], experiment["slug"]):
        got = await client.get(f"/v1/agents/{agent['slug']}/experiments/{ref}")
        assert got.status_code == 200 and got.json() == experiment
    listed = (await client.get(f"/v1/agents/{agent['id']}/experiments", params={"status": "draft"})).json()
    assert [e["id"] for e in listed["data"]] == [experiment["id"]]
    assert (await client.get(f"/v1/agents/{agent['id']}/experiments", params={"status": "running"})).json()[
        "data"
    ] == []


async def test_bad_arms_are_named(client):
    agent, a, _ = await setup(client)
    response = await create(client, agent, [{"variant": "base", "weight": 0}, {"variant": "x", "weight": 10001}])
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"arms[0].weight", "arms[1].weight"}
    response = await create(client, agent, [{"variant": "base", "weight": 1}])
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"arms"}
    response = await create(client, agent, [{"variant": f"v{n}", "weight": 1} for n in range(11)])
    assert problem_params(response) == {"arms"}
    response = await create(client, agent, [{"variant": "base", "weight": 1}, {"variant": "nope", "weight": 1}])
    assert_problem(response, 404, "resource_missing")
    assert problem_params(response) == {"arms[1].variant"}
    response = await create(client, agent, [{"variant": a["id"], "weight": 1}, {"variant": a["slug"], "weight": 1}])
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"arms[1].variant"}
    response = await create(client, agent, [{"variant": "base", "weight": 1}] * 2)
    assert_problem(response, 422, "validation_error")


async def test_status_rules(client):
    agent, a, b = await setup(client)
    first = (await create(client, agent, [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}])).json()
    second = (
        await create(client, agent, [{"variant": a["id"], "weight": 1}, {"variant": b["id"], "weight": 1}])
    ).json()
    base = f"/v1/agents/{agent['id']}/experiments"
    assert_problem(await client.post(f"{base}/{first['id']}/stop"), 409, "invalid_status")
    started = await client.post(f"{base}/{first['id']}/start")
    assert started.status_code == 200 and started.json()["status"] == "running" and started.json()["started_at"]
    assert (await client.post(f"{base}/{first['id']}/start")).status_code == 200  # a no-op
    assert_problem(await client.post(f"{base}/{second['id']}/start"), 409, "experiment_running")
    assert_problem(await client.patch(f"{base}/{first['id']}", json={"salt": "x"}), 409, "experiment_not_draft")
    assert_problem(
        await client.patch(
            f"{base}/{first['id']}",
            json={"arms": [{"variant": "base", "weight": 2}, {"variant": a["id"], "weight": 1}]},
        ),
        409,
        "experiment_not_draft",
    )
    renamed = await client.patch(f"{base}/{first['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
    assert_problem(await client.delete(f"{base}/{first['id']}"), 409, "experiment_not_draft")
    assert_problem(await client.delete(f"/v1/agents/{agent['id']}/variants/{a['id']}"), 409, "variant_in_experiment")
    assert_problem(await client.delete(f"/v1/agents/{agent['id']}"), 409, "experiment_running")
    stopped = await client.post(f"{base}/{first['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped" and stopped.json()["stopped_at"]
    assert_problem(await client.post(f"{base}/{first['id']}/start"), 409, "invalid_status")
    # The second is a draft naming a and b: still refused; once deleted, a can go.
    assert_problem(await client.delete(f"/v1/agents/{agent['id']}/variants/{a['id']}"), 409, "variant_in_experiment")
    assert (await client.delete(f"{base}/{second['id']}")).status_code == 204
    assert (await client.delete(f"/v1/agents/{agent['id']}/variants/{a['id']}")).status_code == 204


async def test_subject_gets_its_arm_and_normal_resolution_otherwise(client):
    agent, a, b = await setup(client)
    weights = [1, 2, 3]
    experiment = (
        await create(
            client,
            agent,
            [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 2}, {"variant": b["id"], "weight": 3}],
            salt="s1",
        )
    ).json()
    url = f"/v1/agents/{agent['slug']}/resolved"
    plain = (await client.get(url, params={"subject": "user-1"})).json()
    assert plain["source"] == "agent" and plain["experiment_id"] is None  # a draft assigns nothing
    await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/start")
    prompts = ["base prompt", "prompt A", "prompt B"]
    for n in range(60):
        subject = f"user-{n}"
        arm = assign("s1", subject, weights)
        for explain in (False, True):
            body = (await client.get(url, params={"subject": subject, "explain": explain})).json()
            assert (body["source"], body["experiment_id"], body["arm"]) == ("experiment", experiment["id"], arm)
            assert body["system_prompt"] == prompts[arm]
            assert body["variant_id"] == [None, a["id"], b["id"]][arm]
            if explain:
                assert body["provenance"]["system_prompt"] == ("agent" if arm == 0 else "experiment")
    assert (await client.get(url)).json()["source"] == "agent"  # no subject: normal resolution
    await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/stop")
    after = (await client.get(url, params={"subject": "user-1"})).json()
    assert after["source"] == "agent" and after["arm"] is None


async def test_experiment_changes_are_revisions(client):
    agent, a, _ = await setup(client)
    experiment = (
        await create(client, agent, [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}])
    ).json()
    base = f"/v1/agents/{agent['id']}/experiments/{experiment['id']}"
    await client.post(f"{base}/start")
    await client.post(f"{base}/stop")
    revisions = (
        await client.get(f"/v1/agents/{agent['id']}/revisions", params={"target_id": experiment["id"]})
    ).json()["data"]
    assert [r["action"] for r in revisions] == ["stop", "start", "create"]
    assert revisions[0]["before"]["status"] == "running" and revisions[0]["after"]["status"] == "stopped"
    # Experiment revisions are never undone: undo skips them.
    undo = await client.post(f"/v1/agents/{agent['id']}/undo")
    assert undo.status_code == 200 and undo.json()["revision"]["target"] != "experiment"


async def test_undo_that_would_delete_a_variant_an_arm_names_is_an_undo_conflict(client):
    agent = await create_agent(client)
    fresh = await create_variant(client, agent["id"], overrides={"temperature": 0.3})
    await create(client, agent, [{"variant": "base", "weight": 1}, {"variant": fresh["id"], "weight": 1}])
    # The newest undoable change is the variant's creation (experiment revisions are skipped);
    # undoing it would delete a variant a draft's arm names.
    response = await client.post(f"/v1/agents/{agent['id']}/undo")
    assert_problem(response, 409, "undo_conflict")
    assert (await client.get(f"/v1/agents/{agent['id']}/variants/{fresh['id']}")).status_code == 200
