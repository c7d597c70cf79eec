"""Contract 1.1: a key bound to an environment "may change shared definitions only when the
change alters nothing another environment serves now (else 403 `environment_forbidden`)".
The base config and the variants are shared; an environment serves its active variant (the
base config when none), and the variants (or base) its rules name.

In-process on the rolled-back database; `client` is an unbound admin key.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.test_bound_keys import as_key, create_environment, create_key
from tests.helpers import assert_problem, config, create_agent, create_variant


async def bound_writer(client: httpx.AsyncClient, environment: str) -> httpx.AsyncClient:
    return as_key(client, await create_key(client, "write", environment=environment))


async def activate(client: httpx.AsyncClient, agent: dict[str, Any], variant: dict[str, Any], env: str) -> None:
    path = f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate"
    response = await client.post(path, params={"environment": env})
    assert response.status_code == 200, response.text


async def test_a_base_field_served_elsewhere_is_forbidden_one_overridden_everywhere_is_not(
    client: httpx.AsyncClient,
) -> None:
    await create_environment(client, "staging")
    agent = await create_agent(client, config=config(temperature=0.5, max_tokens=100))
    # Production serves a variant that overrides temperature, not max_tokens.
    warm = await create_variant(client, agent["id"], overrides={"temperature": 0.9})
    await activate(client, agent, warm, "production")
    staging = await bound_writer(client, "staging")
    async with staging:
        path = f"/v1/agents/{agent['id']}"
        refused = await staging.patch(path, json={"config": {"max_tokens": 200}})
        body = assert_problem(refused, 403, "environment_forbidden")
        assert "'production'" in body["detail"]
        # Overridden by what production serves: altering the base's temperature changes nothing there.
        allowed = await staging.patch(path, json={"config": {"temperature": 0.1}})
        assert allowed.status_code == 200, allowed.text
        # Name and description are nobody's config.
        assert (await staging.patch(path, json={"description": "by staging"})).status_code == 200
        # The slug is in every resolution.
        assert_problem(await staging.patch(path, json={"slug": "renamed-by-staging"}), 403, "environment_forbidden")
    resolved = (await client.get(f"/v1/agents/{agent['id']}/resolved")).json()
    assert (resolved["temperature"], resolved["max_tokens"]) == (0.9, 100)  # production untouched


async def test_a_variant_served_elsewhere_cannot_be_changed_by_a_bound_key(client: httpx.AsyncClient) -> None:
    await create_environment(client, "staging")
    agent = await create_agent(client)
    served = await create_variant(client, agent["id"], overrides={"temperature": 0.3})
    ruled = await create_variant(client, agent["id"], overrides={"temperature": 0.4})
    free = await create_variant(client, agent["id"], overrides={"temperature": 0.5})
    await activate(client, agent, served, "production")
    rules = {
        "rules": [
            {
                "name": "beta",
                "when": [{"attribute": "beta", "op": "eq", "value": True}],
                "serve": {"variant": ruled["id"]},
            }
        ]
    }
    assert (await client.put(f"/v1/agents/{agent['id']}/rules", json=rules)).status_code == 200
    staging = await bound_writer(client, "staging")
    async with staging:
        for variant in (served, ruled):
            path = f"/v1/agents/{agent['id']}/variants/{variant['id']}"
            assert_problem(
                await staging.patch(path, json={"overrides": {"temperature": 0.9}}), 403, "environment_forbidden"
            )
            assert_problem(await staging.patch(path, json={"slug": "moved"}), 403, "environment_forbidden")
            # Its name is nobody's config.
            assert (await staging.patch(path, json={"variant_name": "Renamed"})).status_code == 200
        # A variant no other environment serves is the bound key's to change; its own
        # environment's activation does not count.
        await activate(staging, agent, free, "staging")
        changed = await staging.patch(
            f"/v1/agents/{agent['id']}/variants/{free['id']}", json={"overrides": {"temperature": 0.6}}
        )
        assert changed.status_code == 200, changed.text
    # An unbound key may change them all.
    path = f"/v1/agents/{agent['id']}/variants/{served['id']}"
    assert (await client.patch(path, json={"overrides": {"temperature": 0.35}})).status_code == 200


async def test_an_undo_by_a_bound_key_follows_the_same_rule(client: httpx.AsyncClient) -> None:
    await create_environment(client, "staging")
    agent = await create_agent(client, config=config(temperature=0.5))
    staging = await bound_writer(client, "staging")
    async with staging:
        # Production serves the base config (no variant is active there).
        refused = await staging.patch(f"/v1/agents/{agent['id']}", json={"config": {"temperature": 0.2}})
        assert_problem(refused, 403, "environment_forbidden")
        # An unbound key's change of the base, then the bound key's undo of it: refused too.
        assert (
            await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"temperature": 0.2}})
        ).status_code == 200
        assert_problem(await staging.post(f"/v1/agents/{agent['id']}/undo"), 403, "environment_forbidden")
    assert (await client.get(f"/v1/agents/{agent['id']}/resolved")).json()["temperature"] == 0.2


async def test_an_environment_with_an_activation_or_a_running_experiment_is_in_use(client: httpx.AsyncClient) -> None:
    """Contract 1.1: an environment in which anything is active or running cannot be deleted."""
    review = await create_environment(client, "review")
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    await activate(client, agent, variant, "review")
    body = assert_problem(await client.delete("/v1/environments/review"), 409, "environment_in_use")
    assert "active" in body["detail"]
    path = f"/v1/agents/{agent['id']}/variants/{variant['id']}/deactivate"
    assert (await client.post(path, params={"environment": "review"})).status_code == 200
    arms = [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]
    created = await client.post(
        f"/v1/agents/{agent['id']}/experiments", json={"name": "E", "arms": arms, "environment": "review"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["environment"] == "review"
    experiment = f"/v1/agents/{agent['id']}/experiments/{created.json()['id']}"
    assert (await client.post(f"{experiment}/start", params={"environment": "review"})).status_code == 200
    body = assert_problem(await client.delete("/v1/environments/review"), 409, "environment_in_use")
    assert "running" in body["detail"]
    assert (await client.post(f"{experiment}/stop", params={"environment": "review"})).status_code == 200
    assert (await client.delete("/v1/environments/review")).status_code == 204
    assert (await client.get(f"/v1/environments/{review['id']}")).status_code == 404
