"""Contract 1.1: a template with a `{{` that opens no valid placeholder is 422
`invalid_template`, naming every bad field, and nothing is written."""

from __future__ import annotations

import httpx

from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params, unique


async def test_an_agent_with_an_invalid_template_is_refused_and_nothing_is_written(client: httpx.AsyncClient) -> None:
    name = unique("Templated")
    body = {"name": name, "config": config(system_prompt="Hi {{user.name}}", user_prompt_template="{{ 0 }}")}
    response = await client.post("/v1/agents", json=body)
    assert_problem(response, 422, "invalid_template")
    assert problem_params(response) == {"config.system_prompt", "config.user_prompt_template"}
    assert "'{{user.name}}' at character 3" in response.json()["detail"]
    listed = (await client.get("/v1/agents", params={"limit": 100})).json()["data"]
    assert name not in [agent["name"] for agent in listed]


async def test_a_variant_or_a_patch_with_an_invalid_template_is_refused(client: httpx.AsyncClient) -> None:
    declared = {"tone": {"type": "string"}, "question": {"type": "string"}}
    agent = await create_agent(
        client, config=config(system_prompt='Answer as {{ tone }} in JSON like {"a": 1}', variables=declared)
    )
    variants = f"/v1/agents/{agent['id']}/variants"
    refused = await client.post(variants, json={"variant_name": "v", "overrides": {"user_prompt_template": "{{a-b}}"}})
    assert_problem(refused, 422, "invalid_template")
    assert problem_params(refused) == {"overrides.user_prompt_template"}
    assert (await client.get(variants)).json()["data"] == []
    variant = await create_variant(client, agent["id"], overrides={"user_prompt_template": "Q: {{question}} {}"})
    patched = await client.patch(f"{variants}/{variant['id']}", json={"overrides": {"system_prompt": "{{}}"}})
    assert_problem(patched, 422, "invalid_template")
    assert (await client.get(f"{variants}/{variant['id']}")).json()["version"] == variant["version"]
    agent_patch = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": "{{{x}}}"}})
    assert_problem(agent_patch, 422, "invalid_template")
    assert problem_params(agent_patch) == {"config.system_prompt"}
    # Braces that open no placeholder are text: JSON, single braces, a `{{` never closed.
    fine = await client.patch(
        f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": '{"a": {"b": 1}} {{ open'}}
    )
    assert fine.status_code == 200, fine.text
