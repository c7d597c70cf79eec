"""GET /v1/agents/{agent}/bundle: the plain resolution and the running experiment's arms,
one consistent state, with a content-hash ETag."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.shared.assignment import assign
from tests.helpers import assert_problem, config, create_agent, create_variant

ETAG = re.compile(r"^[0-9a-f]{24}$")


async def bundle_of(client: httpx.AsyncClient, agent: str, **headers: str) -> httpx.Response:
    return await client.get(f"/v1/agents/{agent}/bundle", headers=headers)


async def resolved(client: httpx.AsyncClient, agent: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent}/resolved", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_without_an_experiment_the_bundle_is_the_resolution(client) -> None:
    agent = await create_agent(client, config=config(temperature=0.4))
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.1})
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")).status_code == 200

    for ref in (agent["id"], agent["slug"]):
        response = await bundle_of(client, ref)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {
            "object",
            "agent_id",
            "agent_slug",
            "environment",
            "etag",
            "resolved",
            "rules",
            "experiment",
        }
        assert (body["environment"], body["rules"]) == ("production", [])
        assert (body["object"], body["agent_id"], body["agent_slug"]) == (
            "resolution_bundle",
            agent["id"],
            agent["slug"],
        )
        assert ETAG.match(body["etag"]) and response.headers["etag"] == f'"{body["etag"]}"'
        assert body["experiment"] is None
        # The same object /resolved gives, with provenance, so a client can explain too.
        assert body["resolved"] == await resolved(client, agent["id"], explain="true")
        assert body["resolved"]["temperature"] == 0.1 and body["resolved"]["provenance"]["temperature"] == "variant"


async def test_the_etag_answers_304_and_changes_with_the_state(client) -> None:
    agent = await create_agent(client)
    first = await bundle_of(client, agent["id"])
    etag = first.headers["etag"]
    assert (await bundle_of(client, agent["slug"])).headers["etag"] == etag  # id or slug: same state
    not_modified = await bundle_of(client, agent["id"], **{"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.headers["etag"] == etag and not_modified.content == b""

    patched = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"temperature": 0.9}})
    assert patched.status_code == 200, patched.text
    changed = await bundle_of(client, agent["id"], **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["resolved"]["temperature"] == 0.9
    # A change that does not touch resolution (the description) keeps the bundle as it was.
    await client.patch(f"/v1/agents/{agent['id']}", json={"description": "notes"})
    assert (await bundle_of(client, agent["id"])).headers["etag"] == changed.headers["etag"]


async def test_an_unknown_agent_is_404(client) -> None:
    assert_problem(await bundle_of(client, "no-such-agent"), 404, "resource_missing")
    assert_problem(await bundle_of(client, "agt_01J0000000000000000000000Z"), 404, "resource_missing")


async def start_experiment(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    agent = await create_agent(client, config=config(system_prompt="base"))
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "A"})
    b = await create_variant(client, agent["id"], overrides={"system_prompt": "B"})
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{a['id']}/activate")).status_code == 200
    experiment = (
        await client.post(
            f"/v1/agents/{agent['id']}/experiments",
            json={
                "name": "prompts",
                "arms": [{"variant": "base", "weight": 2}, {"variant": b["id"], "weight": 3}],
            },
        )
    ).json()
    started = await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/start")
    assert started.status_code == 200, started.text
    return agent, b, started.json()


async def test_a_running_experiment_brings_every_arm(client) -> None:
    agent, b, experiment = await start_experiment(client)
    body = (await bundle_of(client, agent["id"])).json()
    # No subject: the active variant, as /resolved without a subject says.
    assert body["resolved"] == await resolved(client, agent["id"], explain="true")
    assert body["resolved"]["system_prompt"] == "A"
    shown = body["experiment"]
    assert (shown["id"], shown["salt"]) == (experiment["id"], experiment["salt"])
    assert [(arm["arm"], arm["weight"], arm["variant_id"]) for arm in shown["arms"]] == [(0, 2, None), (1, 3, b["id"])]
    assert [arm["resolved"]["system_prompt"] for arm in shown["arms"]] == ["base", "B"]
    for arm in shown["arms"]:
        assert (arm["resolved"]["source"], arm["resolved"]["experiment_id"], arm["resolved"]["arm"]) == (
            "experiment",
            experiment["id"],
            arm["arm"],
        )

    stopped = await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/stop")
    assert stopped.status_code == 200
    assert (await bundle_of(client, agent["id"])).json()["experiment"] is None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subjects=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5))
async def test_what_a_client_computes_from_the_bundle_is_what_the_server_answers(client, subjects) -> None:
    """Local resolution from the bundle (the contract's assignment over its arms) equals
    the server's `?subject=` answer, provenance aside."""
    agent, _, _ = await start_experiment(client)
    shown = (await bundle_of(client, agent["id"])).json()["experiment"]
    weights = [arm["weight"] for arm in shown["arms"]]
    for subject in subjects:
        local = shown["arms"][assign(shown["salt"], subject, weights)]["resolved"]
        server = await resolved(client, agent["id"], subject=subject, explain="true")
        assert local == server


@pytest.mark.live
async def test_bundles_read_through_a_real_pool_while_activations_race_are_whole(live_client) -> None:
    """Through a real pool (a read-only REPEATABLE READ snapshot): while activations flip
    the agent's active variant, every bundle is whole: the running experiment, its arms as
    started, and a plain resolution naming one of the agent's variants."""
    agent, b, experiment = await start_experiment(live_client)
    variants = (await live_client.get(f"/v1/agents/{agent['id']}/variants")).json()["data"]
    others = [v for v in variants if v["id"] != b["id"]]

    async def flip() -> None:
        for n in range(20):
            target = others[n % len(others)] if others else b
            await live_client.post(f"/v1/agents/{agent['id']}/variants/{target['id']}/activate")

    async def read() -> list[dict[str, Any]]:
        return [(await bundle_of(live_client, agent["id"])).json() for _ in range(20)]

    try:
        _, bundles = await asyncio.gather(flip(), read())
        for body in bundles:
            assert body["experiment"]["id"] == experiment["id"]
            assert body["resolved"]["variant_id"] in {v["id"] for v in variants}
            assert [arm["resolved"]["system_prompt"] for arm in body["experiment"]["arms"]] == ["base", "B"]
    finally:
        await live_client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/stop")
        await live_client.delete(f"/v1/agents/{agent['id']}")
