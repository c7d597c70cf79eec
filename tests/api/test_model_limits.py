"""A config over its catalogued model's limits (contract 1.1, "Models"): `max_tokens` above
the model's `max_output_tokens` is 422 `model_limit` naming the field, and with the config's
`context_window` 0 the token rule uses the catalog's. Every write that can change what is
served checks it and writes nothing when it fails; unknown models pass unchecked."""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import assert_problem, create_agent, create_variant, problem_params, unique

M = "/v1/models"


async def catalogued(client: httpx.AsyncClient, **limits: Any) -> dict[str, str]:
    """A model of a provider of its own in the catalog, and a config naming it."""
    provider = unique("limits").replace(" ", "-")
    response = await client.put(f"{M}/{provider}/org/model-1", json=limits)
    assert response.status_code == 201, response.text
    return {"model_provider": provider, "model_name": "org/model-1"}


async def state(client: httpx.AsyncClient, agent: str) -> tuple[Any, ...]:
    """What a refused write must leave as it was: the agent, its variants, its history."""
    got = (await client.get(f"/v1/agents/{agent}")).json()
    variants = (await client.get(f"/v1/agents/{agent}/variants")).json()["data"]
    revisions = (await client.get(f"/v1/agents/{agent}/revisions")).json()["data"]
    return got, variants, [revision["id"] for revision in revisions]


async def test_a_config_over_its_models_output_limit_is_refused_on_agent_create(client: httpx.AsyncClient):
    model = await catalogued(client, max_output_tokens=4096)
    name = unique()
    response = await client.post("/v1/agents", json={"name": name, "config": {**model, "max_tokens": 4097}})
    body = assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"config.max_tokens"}
    assert "4096" in body["detail"] and f"{model['model_provider']}/org/model-1" in body["detail"]
    listed = (await client.get("/v1/agents", params={"limit": 100})).json()["data"]
    assert name not in {agent["name"] for agent in listed}
    assert (
        await client.post("/v1/agents", json={"name": name, "config": {**model, "max_tokens": 4096}})
    ).status_code == 201


async def test_a_config_over_its_models_output_limit_is_refused_on_agent_patch(client: httpx.AsyncClient):
    model = await catalogued(client, max_output_tokens=4096)
    agent = await create_agent(client, config={**model, "max_tokens": 1000})
    before = await state(client, agent["id"])
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_tokens": 5000}})
    assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"config.max_tokens"}
    # Switching to the model is checked as well: another model, then this one with too many tokens.
    other = await create_agent(client, config={"model_provider": "nobody", "model_name": "free", "max_tokens": 9000})
    other_before = await state(client, other["id"])
    response = await client.patch(f"/v1/agents/{other['id']}", json={"config": model})
    assert_problem(response, 422, "model_limit")
    assert await state(client, agent["id"]) == before
    assert await state(client, other["id"]) == other_before


async def test_a_config_over_its_models_output_limit_is_refused_on_variant_create_and_patch(
    client: httpx.AsyncClient,
):
    model = await catalogued(client, max_output_tokens=4096)
    agent = await create_agent(client, config={**model, "max_tokens": 1000})
    before = await state(client, agent["id"])
    response = await client.post(
        f"/v1/agents/{agent['id']}/variants", json={"variant_name": "long", "overrides": {"max_tokens": 8000}}
    )
    assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"overrides.max_tokens"}
    assert await state(client, agent["id"]) == before

    variant = await create_variant(client, agent["id"], overrides={"max_tokens": 4000})
    before = await state(client, agent["id"])
    response = await client.patch(
        f"/v1/agents/{agent['id']}/variants/{variant['id']}", json={"overrides": {"max_tokens": 4500}}
    )
    assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"overrides.max_tokens"}
    # A variant that moves to the model with the base's max_tokens: the base's field is named.
    big = await create_agent(client, config={"model_provider": "nobody", "model_name": "free", "max_tokens": 9000})
    big_before = await state(client, big["id"])
    response = await client.post(f"/v1/agents/{big['id']}/variants", json={"variant_name": "v", "overrides": model})
    assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"config.max_tokens"}
    assert await state(client, agent["id"]) == before
    assert await state(client, big["id"]) == big_before


async def test_activation_rechecks_against_the_catalog_of_now(client: httpx.AsyncClient):
    model = await catalogued(client, max_output_tokens=4096)
    agent = await create_agent(client, config={**model, "max_tokens": 1000})
    variant = await create_variant(client, agent["id"], overrides={"max_tokens": 4000})
    # The catalog learns a lower limit; the stored variant is not re-checked until it is served.
    provider, name = model["model_provider"], model["model_name"]
    assert (await client.put(f"{M}/{provider}/{name}", json={"max_output_tokens": 2048})).status_code == 200
    before = await state(client, agent["id"])
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"overrides.max_tokens"}
    assert await state(client, agent["id"]) == before
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["active_variant_id"] is None


async def test_an_agent_change_is_checked_against_its_active_variant(client: httpx.AsyncClient):
    model = await catalogued(client, max_output_tokens=4096)
    agent = await create_agent(client, config={"model_provider": "nobody", "model_name": "free", "max_tokens": 8000})
    variant = await create_variant(client, agent["id"], overrides={"temperature": 0.1})
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")).status_code == 200
    before = await state(client, agent["id"])
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": model})
    assert_problem(response, 422, "model_limit")
    assert await state(client, agent["id"]) == before


async def test_unknown_models_pass(client: httpx.AsyncClient):
    config = {"model_provider": unique("nobody").replace(" ", "-"), "model_name": "x/y", "max_tokens": 10_000_000}
    agent = await create_agent(client, config=config)
    variant = await create_variant(client, agent["id"], overrides={"max_tokens": 9_999_999})
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")).status_code == 200


async def test_a_model_without_an_output_limit_checks_none(client: httpx.AsyncClient):
    model = await catalogued(client, input_usd_per_mtok=1)
    await create_agent(client, config={**model, "max_tokens": 10_000_000})


async def test_the_token_rule_uses_the_catalogs_context_window_when_the_configs_is_0(client: httpx.AsyncClient):
    model = await catalogued(client, context_window=8192)
    config = {**model, "input_token_limit": 8000, "max_tokens": 1000}
    name = unique()
    response = await client.post("/v1/agents", json={"name": name, "config": config})
    body = assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {"config.context_window", "config.input_token_limit", "config.max_tokens"}
    assert "8192" in body["detail"] and "catalog" in body["detail"]
    # A config's own context_window wins over the catalog's.
    assert (
        await client.post("/v1/agents", json={"name": name, "config": {**config, "context_window": 100_000}})
    ).status_code == 201
    fits = await create_agent(client, config={**model, "input_token_limit": 7000, "max_tokens": 1000})
    response = await client.post(
        f"/v1/agents/{fits['id']}/variants", json={"variant_name": "v", "overrides": {"max_tokens": 1500}}
    )
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {"config.context_window", "config.input_token_limit", "overrides.max_tokens"}


async def test_an_experiment_arm_over_the_limit_cannot_start(client: httpx.AsyncClient):
    model = await catalogued(client, max_output_tokens=4096)
    agent = await create_agent(client, config={**model, "max_tokens": 1000})
    variant = await create_variant(client, agent["id"], overrides={"max_tokens": 4000})
    experiment = await client.post(
        f"/v1/agents/{agent['id']}/experiments",
        json={"name": "e", "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}]},
    )
    assert experiment.status_code == 201, experiment.text
    provider, name = model["model_provider"], model["model_name"]
    await client.put(f"{M}/{provider}/{name}", json={"max_output_tokens": 2048})
    response = await client.post(f"/v1/agents/{agent['id']}/experiments/{experiment.json()['id']}/start")
    assert_problem(response, 422, "model_limit")
    got = await client.get(f"/v1/agents/{agent['id']}/experiments/{experiment.json()['id']}")
    assert got.json()["status"] == "draft"


async def test_a_rule_serving_a_config_over_the_limit_is_refused_naming_the_rule(client: httpx.AsyncClient):
    model = await catalogued(client, max_output_tokens=4096)
    agent = await create_agent(client, config={**model, "max_tokens": 1000})
    fine = await create_variant(client, agent["id"], overrides={"max_tokens": 2000})
    long = await create_variant(client, agent["id"], overrides={"max_tokens": 4000})
    provider, name = model["model_provider"], model["model_name"]
    await client.put(f"{M}/{provider}/{name}", json={"max_output_tokens": 3000})
    rules = [
        {
            "name": "fine",
            "when": [{"attribute": "plan", "op": "eq", "value": "pro"}],
            "serve": {"variant": fine["slug"]},
        },
        {
            "name": "long",
            "when": [{"attribute": "plan", "op": "eq", "value": "max"}],
            "serve": {"variant": long["slug"]},
        },
    ]
    response = await client.put(f"/v1/agents/{agent['id']}/rules", json={"rules": rules})
    body = assert_problem(response, 422, "model_limit")
    assert problem_params(response) == {"rules[1].serve"}
    assert "3000" in body["detail"]
    assert (await client.get(f"/v1/agents/{agent['id']}/rules")).json()["version"] == 0
