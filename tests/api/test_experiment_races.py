"""Experiments under concurrency and against an offline computation of the arm.

- Concurrent starts on the live database (`live_client`, real commits): at most one running
  experiment per agent, whoever wins the race.
- The server's arm for a subject equals `assign(salt, subject, weights)` computed here, and a
  subject keeps its arm across repeated resolutions and a rename of the experiment.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from services.shared.assignment import assign
from tests.helpers import assert_problem, config, create_agent, create_variant, unique

RACERS = 8
ROUNDS = 4

RUNNING = text("SELECT id FROM experiments WHERE agent_id = :agent AND status = 'running'")


@asynccontextmanager
async def own_connection(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection outside the app's pool, in autocommit: each query sees the latest commits."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def new_experiment(
    client: httpx.AsyncClient, agent_id: str, arms: list[dict[str, Any]], **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/agents/{agent_id}/experiments", json={"name": unique("experiment"), "arms": arms, **body}
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "draft"
    return response.json()


# ---------------------------------------------------------------------------- concurrent starts


@pytest.mark.live
async def test_concurrent_starts_leave_exactly_one_running(live_client: httpx.AsyncClient, live_url: str) -> None:
    agent = await create_agent(live_client, config=config(system_prompt="base"))
    base = f"/v1/agents/{agent['id']}/experiments"
    try:
        a = await create_variant(live_client, agent["id"], overrides={"system_prompt": "A"})
        b = await create_variant(live_client, agent["id"], overrides={"system_prompt": "B"})
        arm_sets = [
            [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}],
            [{"variant": a["slug"], "weight": 3}, {"variant": b["id"], "weight": 7}],
            [{"variant": "base", "weight": 5}, {"variant": a["id"], "weight": 3}, {"variant": b["slug"], "weight": 2}],
        ]
        winners: Counter[int] = Counter()
        for round_ in range(ROUNDS):
            drafts = [
                await new_experiment(live_client, agent["id"], arm_sets[n % len(arm_sets)]) for n in range(RACERS)
            ]
            order = drafts if round_ % 2 == 0 else drafts[::-1]
            responses = await asyncio.gather(*(live_client.post(f"{base}/{d['id']}/start") for d in order))

            codes = Counter(r.status_code for r in responses)
            assert codes == {200: 1, 409: RACERS - 1}, [r.text for r in responses]
            for response in responses:
                if response.status_code == 409:
                    assert_problem(response, 409, "experiment_running")
            winner = next((d, r.json()) for d, r in zip(order, responses, strict=True) if r.status_code == 200)
            assert winner[1]["id"] == winner[0]["id"] and winner[1]["status"] == "running"
            winners[drafts.index(winner[0])] += 1

            async with own_connection(live_url) as conn:
                running = list(await conn.scalars(RUNNING, {"agent": agent["id"]}))
                drafts_left = await conn.scalar(
                    text("SELECT count(*) FROM experiments WHERE agent_id = :agent AND status = 'draft'"),
                    {"agent": agent["id"]},
                )
            assert running == [winner[0]["id"]]
            assert drafts_left == RACERS - 1  # the losers were left untouched
            listed = (await live_client.get(base, params={"status": "running"})).json()
            assert [e["id"] for e in listed["data"]] == running
            resolved = (await live_client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": "u"})).json()
            assert resolved["source"] == "experiment" and resolved["experiment_id"] == running[0]

            # Next round: stop the winner, throw the losing drafts away.
            stopped = await live_client.post(f"{base}/{winner[0]['id']}/stop")
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
            for draft in drafts:
                if draft["id"] != winner[0]["id"]:
                    assert (await live_client.delete(f"{base}/{draft['id']}")).status_code == 204
            async with own_connection(live_url) as conn:
                assert list(await conn.scalars(RUNNING, {"agent": agent["id"]})) == []
        assert sum(winners.values()) == ROUNDS
    finally:
        running = (await live_client.get(base, params={"status": "running"})).json().get("data", [])
        for experiment in running:
            await live_client.post(f"{base}/{experiment['id']}/stop")
        response = await live_client.delete(f"/v1/agents/{agent['id']}")
        assert response.status_code in (204, 404), response.text


@pytest.mark.live
async def test_database_itself_refuses_a_second_running_experiment(
    live_client: httpx.AsyncClient, live_url: str
) -> None:
    """The partial unique index, not only the service's lock, enforces the rule."""
    agent = await create_agent(live_client)
    base = f"/v1/agents/{agent['id']}/experiments"
    try:
        a = await create_variant(live_client, agent["id"])
        arms = [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}]
        one = await new_experiment(live_client, agent["id"], arms)
        two = await new_experiment(live_client, agent["id"], arms)
        assert (await live_client.post(f"{base}/{one['id']}/start")).status_code == 200
        async with own_connection(live_url) as conn:
            with pytest.raises(IntegrityError) as raised:
                await conn.execute(text("UPDATE experiments SET status = 'running' WHERE id = :id"), {"id": two["id"]})
            assert "uq_experiments_one_running_per_agent" in str(raised.value)
            assert list(await conn.scalars(RUNNING, {"agent": agent["id"]})) == [one["id"]]
    finally:
        for experiment in (await live_client.get(base, params={"status": "running"})).json().get("data", []):
            await live_client.post(f"{base}/{experiment['id']}/stop")
        response = await live_client.delete(f"/v1/agents/{agent['id']}")
        assert response.status_code in (204, 404), response.text


# ---------------------------------------------------------------------------- server arm == offline arm

WEIGHTS = [2, 5, 3]
SALT = "races-salt"
# Set up once per test run (not per hypothesis example): the client fixture is shared by the examples.
_running: dict[str, Any] = {}


async def running_experiment(client: httpx.AsyncClient) -> dict[str, Any]:
    if _running.get("client") is not client:
        agent = await create_agent(client, config=config(system_prompt="base prompt"))
        a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A"})
        b = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt B"})
        experiment = await new_experiment(
            client,
            agent["id"],
            [
                {"variant": "base", "weight": WEIGHTS[0]},
                {"variant": a["slug"], "weight": WEIGHTS[1]},
                {"variant": b["id"], "weight": WEIGHTS[2]},
            ],
            salt=SALT,
        )
        started = await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment['id']}/start")
        assert started.status_code == 200, started.text
        _running.clear()
        _running.update(
            client=client,
            agent=agent,
            experiment=started.json(),
            variant_ids=[None, a["id"], b["id"]],
            prompts=["base prompt", "prompt A", "prompt B"],
        )
    return _running


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=st.text(min_size=1, max_size=64))
@example(subject="\x00")
@example(subject=" ")
@example(subject="a&b=c?d#e/%2F+")
@example(subject="\r\n\t")
@example(subject="\U0001f600\u00e9")
async def test_server_arm_equals_the_offline_assignment(client: httpx.AsyncClient, subject: str) -> None:
    state = await running_experiment(client)
    experiment = state["experiment"]
    assert experiment["salt"] == SALT and [arm["weight"] for arm in experiment["arms"]] == WEIGHTS
    response = await client.get(f"/v1/agents/{state['agent']['id']}/resolved", params={"subject": subject})
    assert response.status_code == 200, response.text
    body = response.json()
    arm = assign(SALT, subject, WEIGHTS)
    assert (body["source"], body["experiment_id"], body["arm"]) == ("experiment", experiment["id"], arm), subject
    assert body["variant_id"] == state["variant_ids"][arm] == experiment["arms"][arm]["variant_id"]
    assert body["system_prompt"] == state["prompts"][arm]


async def test_a_subject_keeps_its_arm_across_repeats_and_a_rename(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(system_prompt="base prompt"))
    a = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt A"})
    b = await create_variant(client, agent["id"], overrides={"system_prompt": "prompt B"})
    weights = [1, 1, 1]
    experiment = await new_experiment(
        client,
        agent["id"],
        [{"variant": "base", "weight": 1}, {"variant": a["id"], "weight": 1}, {"variant": b["id"], "weight": 1}],
    )
    path = f"/v1/agents/{agent['id']}/experiments/{experiment['id']}"
    assert (await client.post(f"{path}/start")).status_code == 200
    url = f"/v1/agents/{agent['slug']}/resolved"
    subjects = ["user-42", "ümlaut subject", "a:b:c", " padded ", "x" * 256]
    expected = {s: assign(experiment["id"], s, weights) for s in subjects}  # the salt defaults to the id
    assert len(set(expected.values())) > 1  # the subjects cover more than one arm

    async def arms_of(subject: str, times: int) -> set[int]:
        seen = set()
        for _ in range(times):
            body = (await client.get(url, params={"subject": subject})).json()
            assert body["experiment_id"] == experiment["id"], body
            seen.add(body["arm"])
        return seen

    for subject in subjects:
        assert await arms_of(subject, 20) == {expected[subject]}, subject
    for n in range(2):
        renamed = await client.patch(path, json={"name": f"Renamed {n}", "description": "after a rename"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == f"Renamed {n}" and renamed.json()["status"] == "running"
        assert renamed.json()["salt"] == experiment["id"]
        for subject in subjects:
            assert await arms_of(subject, 20) == {expected[subject]}, subject
    too_long = await client.get(url, params={"subject": "x" * 257})
    assert_problem(too_long, 422, "validation_error")
