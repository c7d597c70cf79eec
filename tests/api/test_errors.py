"""Error paths: every error is problem+json, bad input is never a 500, and a rejected
write leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params, unique

MIB = 1024 * 1024
LIMIT = 4 * MIB
CONSISTENCY = {"context_window", "input_token_limit", "max_tokens"}


async def post_raw(client: httpx.AsyncClient, url: str, raw: bytes | str, **headers: str) -> httpx.Response:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return await client.post(url, content=raw, headers={"Content-Type": "application/json", **headers})


async def agent_count(client: httpx.AsyncClient) -> int:
    body = (await client.get("/v1/agents", params={"limit": 100})).json()
    return len(body["data"])


async def fetch(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return response.json()


def agent_body(**config_fields: Any) -> dict[str, Any]:
    return {"name": unique(), "config": config(**config_fields)}


# --- the problem shape and the transport-level errors ----------------------------------


async def test_malformed_json_is_400(client):
    for raw in ('{"name": "x",', "{name: 1}", "not json", '{"a": 1} trailing'):
        body = assert_problem(await post_raw(client, "/v1/agents", raw), 400, "malformed_json")
        assert "errors" not in body
    assert await agent_count(client) == 0


async def test_malformed_json_on_patch_is_400(client):
    agent = await create_agent(client)
    response = await client.patch(
        f"/v1/agents/{agent['id']}", content=b"{", headers={"Content-Type": "application/merge-patch+json"}
    )
    assert_problem(response, 400, "malformed_json")
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["version"] == 1


async def test_a_body_that_is_not_an_object_is_422(client):
    for raw in ("[]", "null", '"text"', "42"):
        response = await post_raw(client, "/v1/agents", raw)
        assert_problem(response, 422, "validation_error")


async def test_a_non_json_content_type_is_refused(client):
    response = await client.post("/v1/agents", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert_problem(response, 415, "unsupported_media_type")
    assert await agent_count(client) == 0


async def test_unknown_route_is_404_problem(client):
    for url in ("/v1/nothing", "/v2/agents", "/v1/agents/x/y/z/w"):
        body = assert_problem(await client.get(url), 404, "route_not_found")
        assert url in body["detail"]


async def test_wrong_method_is_405_problem(client):
    agent = await create_agent(client)
    for method, url in (
        ("PUT", "/v1/agents"),
        ("DELETE", "/v1/agents"),
        ("PUT", f"/v1/agents/{agent['id']}"),
        ("GET", f"/v1/agents/{agent['id']}/variants/x/activate"),
        ("POST", f"/v1/agents/{agent['id']}/resolved"),
    ):
        body = assert_problem(await client.request(method, url), 405, "method_not_allowed")
        assert method in body["detail"]


async def test_not_found_problems_are_fully_formed(client):
    body = assert_problem(await client.get("/v1/agents/support-bot"), 404, "resource_missing")
    assert body["detail"] == "Agent 'support-bot' not found"


# --- body validation -------------------------------------------------------------------


async def test_unknown_body_fields_are_422_naming_each(client):
    response = await client.post(
        "/v1/agents", json={**agent_body(), "id": "agt_x", "version": 9, "config": config(colour="red")}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"id", "version", "config.colour"}
    assert await agent_count(client) == 0


async def test_unknown_fields_in_patches_are_422(client):
    agent = await create_agent(client)
    variant = await create_variant(client, agent["id"])
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"active_variant_id": None, "config": {"x": 1}})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"active_variant_id", "config.x"}
    response = await client.patch(
        f"/v1/agents/{agent['id']}/variants/{variant['id']}", json={"is_active": True, "overrides": {"y": 2}}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"is_active", "overrides.y"}
    assert await fetch(client, f"/v1/agents/{agent['id']}/variants/{variant['id']}") == variant


async def test_every_bad_field_is_named_at_once(client):
    response = await client.post(
        "/v1/agents",
        json={"name": "", "config": config(temperature=5, max_tokens=0, timeout_seconds=0, model_provider="p" * 65)},
    )
    body = assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {
        "name",
        "config.temperature",
        "config.max_tokens",
        "config.timeout_seconds",
        "config.model_provider",
    }
    for param in problem_params(response):
        assert param in body["detail"]
    assert await agent_count(client) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", True),
        ("max_retries", False),
        ("context_window", "1000"),
        ("max_tokens", 1.5),
        ("max_tokens", 100.5),
        ("temperature", True),
        ("temperature", "0.5"),
        ("model_name", 5),
        ("system_prompt", ["a"]),
        ("prompt_version", {"v": 1}),
        ("model_provider", True),
    ],
)
async def test_json_types_are_strict(client, field, value):
    response = await client.post("/v1/agents", json=agent_body(**{field: value}))
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {f"config.{field}"}


async def test_a_whole_number_written_with_a_point_is_that_integer(client):
    """JSON has one number type and JSON Schema's `integer` holds `48.0`: clients that write
    every number with a point (and clients generated from our document) get 48, stored and
    served as the integer 48. `48.5` stays a 422 (test_json_types_are_strict)."""
    agent = await create_agent(client, config=config(max_tokens=48.0, context_window=4096.0, token_budget=1e4))
    assert agent["config"]["max_tokens"] == 48
    assert isinstance(agent["config"]["max_tokens"], int)
    assert agent["config"]["token_budget"] == 10_000
    variant = await create_variant(client, agent["id"], overrides={"max_retries": 5.0})
    assert variant["overrides"]["max_retries"] == 5
    assert isinstance(variant["overrides"]["max_retries"], int)
    raw = await client.get(f"/v1/agents/{agent['id']}")
    assert '"max_tokens":48,' in raw.text.replace(" ", "")
    arms = [{"variant": "base", "weight": 1.0}, {"variant": variant["id"], "weight": 3.0}]
    experiment = await client.post(f"/v1/agents/{agent['id']}/experiments", json={"name": "points", "arms": arms})
    assert experiment.status_code == 201, experiment.text
    assert [arm["weight"] for arm in experiment.json()["arms"]] == [1, 3]
    reported = await client.post(
        f"/v1/agents/{agent['id']}/outcomes",
        json={"variant_id": None, "input_tokens": 10.0, "output_tokens": 2.0, "latency_ms": 5},
    )
    assert reported.status_code == 202, reported.text
    usage = (await client.get(f"/v1/agents/{agent['id']}/usage")).json()
    assert usage["total_tokens"] == 12


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", 2.01),
        ("max_tokens", 0),
        ("max_tokens", 10_000_001),
        ("context_window", -1),
        ("context_window", 100_000_001),
        ("input_token_limit", -1),
        ("input_token_limit", 100_000_001),
        ("token_budget", -1),
        ("token_budget", 10_000_000_001),
        ("timeout_seconds", 0),
        ("timeout_seconds", 86_401),
        ("max_retries", -1),
        ("max_retries", 101),
        ("model_provider", ""),
        ("model_provider", "p" * 65),
        ("model_name", ""),
        ("model_name", "m" * 257),
        ("prompt_version", "v" * 65),
        ("system_prompt", "s" * 200_001),
        ("user_prompt_template", "u" * 200_001),
        ("max_tokens", 2**63),
    ],
)
async def test_config_ranges(client, field, value):
    response = await client.post("/v1/agents", json=agent_body(**{field: value}))
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {f"config.{field}"}


async def test_config_range_limits_are_inclusive(client):
    agent = await create_agent(
        client,
        config=config(
            temperature=2.0,
            max_tokens=10_000_000,
            context_window=0,
            input_token_limit=100_000_000,
            token_budget=10_000_000_000,
            timeout_seconds=86_400,
            max_retries=100,
            model_provider="p" * 64,
            model_name="m" * 256,
            prompt_version="v" * 64,
            system_prompt="s" * 200_000,
        ),
    )
    assert agent["config"]["token_budget"] == 10_000_000_000
    assert len(agent["config"]["system_prompt"]) == 200_000


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_temperature_is_422(client, literal):
    raw = '{"name": "x", "config": {"model_provider": "a", "model_name": "b", "temperature": ' + literal + "}}"
    response = await post_raw(client, "/v1/agents", raw)
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"config.temperature"}
    assert await agent_count(client) == 0


async def test_non_finite_override_is_422(client):
    agent = await create_agent(client)
    raw = '{"variant_name": "x", "overrides": {"temperature": NaN}}'
    response = await post_raw(client, f"/v1/agents/{agent['id']}/variants", raw)
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"overrides.temperature"}


async def test_nul_characters_are_422_not_500(client):
    body = {
        "name": "bad\u0000name",
        "description": "\u0000",
        "metadata": {"k": "v\u0000"},
        "config": config(system_prompt="a\u0000b"),
    }
    response = await client.post("/v1/agents", json=body)
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "description", "metadata.k", "config.system_prompt"}
    assert await agent_count(client) == 0


async def test_nul_in_a_metadata_key_is_422(client):
    response = await client.post("/v1/agents", json={**agent_body(), "metadata": {"a\u0000": "v"}})
    assert_problem(response, 422, "validation_error")
    assert all(param.startswith("metadata") for param in problem_params(response))


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "\\ud800", "config": {"model_provider": "a", "model_name": "b"}}',
        '{"name": "x", "config": {"model_provider": "a", "model_name": "b", "system_prompt": "x\\udfffy"}}',
        '{"name": "x", "description": "\\udc00\\ud800", "config": {"model_provider": "a", "model_name": "b"}}',
        '{"name": "x", "metadata": {"\\ud800": "v"}, "config": {"model_provider": "a", "model_name": "b"}}',
    ],
)
async def test_lone_surrogates_are_422_not_500(client, raw):
    response = await post_raw(client, "/v1/agents", raw)
    assert_problem(response, 422, "validation_error")
    assert await agent_count(client) == 0


async def test_a_surrogate_pair_is_fine(client):
    raw = '{"name": "rocket \\ud83d\\ude80", "config": {"model_provider": "a", "model_name": "b"}}'
    response = await post_raw(client, "/v1/agents", raw)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "rocket \U0001f680"


async def test_lone_surrogates_in_patches_and_variants_are_422(client):
    agent = await create_agent(client)
    response = await client.patch(
        f"/v1/agents/{agent['id']}",
        content=b'{"config": {"system_prompt": "\\ud800"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"config.system_prompt"}
    response = await post_raw(
        client, f"/v1/agents/{agent['id']}/variants", '{"variant_name": "v", "overrides": {"model_name": "\\udc00"}}'
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"overrides.model_name"}
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["variant_count"] == 0


async def test_metadata_limits(client):
    too_many = {f"k{i}": "v" for i in range(17)}
    response = await client.post("/v1/agents", json={**agent_body(), "metadata": too_many})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"metadata"}

    response = await client.post("/v1/agents", json={**agent_body(), "metadata": {"k" * 65: "v"}})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) and all(p.startswith("metadata") for p in problem_params(response))

    response = await client.post("/v1/agents", json={**agent_body(), "metadata": {"": "v"}})
    assert_problem(response, 422, "validation_error")

    response = await client.post("/v1/agents", json={**agent_body(), "metadata": {"k": "v" * 513}})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"metadata.k"}

    for value in (5, True, None, ["v"], {"n": "v"}):
        response = await client.post("/v1/agents", json={**agent_body(), "metadata": {"k": value}})
        assert_problem(response, 422, "validation_error")
        assert problem_params(response) == {"metadata.k"}, value

    response = await client.post("/v1/agents", json={**agent_body(), "metadata": ["k", "v"]})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"metadata"}
    assert await agent_count(client) == 0

    # The limits themselves are allowed.
    edge = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assert (await create_agent(client, metadata=edge))["metadata"] == edge


async def test_metadata_limits_apply_to_variants(client):
    agent = await create_agent(client)
    url = f"/v1/agents/{agent['id']}/variants"
    response = await client.post(url, json={"variant_name": "v", "metadata": {f"k{i}": "v" for i in range(17)}})
    assert_problem(response, 422, "validation_error")
    response = await client.post(url, json={"variant_name": "v", "metadata": {"k": 1}})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"metadata.k"}
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["variant_count"] == 0


async def test_overlong_name_description_and_query_strings_are_422(client):
    response = await client.post("/v1/agents", json={**agent_body(), "name": "n" * 257, "description": "d" * 4097})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"name", "description"}
    agent = await create_agent(client)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"subject": "s" * 257})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"subject"}


# --- body size -------------------------------------------------------------------------


def big_agent_body(size: int) -> bytes:
    body = json.dumps({"name": unique(), "description": "", "config": config(system_prompt="")}).encode()
    padding = size - len(body)
    assert padding > 0
    # Whitespace keeps it valid JSON: only the size is wrong.
    return body[:-1] + b" " * padding + b"}"


async def test_a_body_over_4_mib_with_content_length_is_413(client):
    raw = big_agent_body(LIMIT + 1)
    assert len(raw) == LIMIT + 1
    response = await client.post("/v1/agents", content=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 413, "payload_too_large")
    assert "errors" not in body
    assert await agent_count(client) == 0


async def test_a_chunked_body_over_4_mib_is_413(client):
    raw = big_agent_body(LIMIT + MIB)

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 256 * 1024):
            yield raw[start : start + 256 * 1024]

    response = await client.post("/v1/agents", content=stream(), headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")
    assert await agent_count(client) == 0


async def test_a_body_of_exactly_4_mib_is_accepted(client):
    raw = big_agent_body(LIMIT)
    response = await client.post("/v1/agents", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text[:500]


async def test_a_chunked_body_under_the_limit_is_accepted(client):
    raw = json.dumps(agent_body()).encode()

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    response = await client.post("/v1/agents", content=stream(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text


async def test_an_oversized_patch_is_413_and_writes_nothing(client):
    agent = await create_agent(client)
    raw = b'{"description": "x"' + b" " * LIMIT + b"}"
    response = await client.patch(
        f"/v1/agents/{agent['id']}", content=raw, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert_problem(response, 413, "payload_too_large")
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["version"] == 1


# --- inconsistent_config ---------------------------------------------------------------


async def test_inconsistent_agent_create_is_422_naming_the_three_fields(client):
    response = await client.post("/v1/agents", json=agent_body(context_window=1000, max_tokens=2000))
    body = assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {"config.context_window", "config.input_token_limit", "config.max_tokens"}
    assert "context_window" in body["detail"]
    assert await agent_count(client) == 0


async def test_the_rule_counts_input_token_limit_and_allows_equality(client):
    response = await client.post(
        "/v1/agents", json=agent_body(context_window=1000, input_token_limit=600, max_tokens=401)
    )
    assert_problem(response, 422, "inconsistent_config")
    agent = await create_agent(client, config=config(context_window=1000, input_token_limit=600, max_tokens=400))
    assert agent["config"]["context_window"] == 1000
    # context_window 0 means unspecified: no limit, for a model the catalog does not know
    # (contract 1.1: for a catalogued one, the rule takes the catalog's context window).
    uncatalogued = {"model_provider": "nobody", "model_name": "uncatalogued"}
    await create_agent(
        client, config=config(**uncatalogued, context_window=0, input_token_limit=10**8, max_tokens=10**7)
    )


async def test_inconsistent_agent_patch_is_422_and_writes_nothing(client):
    agent = await create_agent(client, config=config(context_window=1000, max_tokens=500))
    response = await client.patch(
        f"/v1/agents/{agent['id']}", json={"name": "changed", "config": {"input_token_limit": 600}}
    )
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {"config.context_window", "config.input_token_limit", "config.max_tokens"}
    assert await fetch(client, f"/v1/agents/{agent['id']}") == agent


async def test_inconsistent_variant_create_names_overrides_and_inherited_fields(client):
    agent = await create_agent(client, config=config(context_window=1000, max_tokens=500))
    url = f"/v1/agents/{agent['id']}/variants"
    response = await client.post(url, json={"variant_name": "big", "overrides": {"max_tokens": 2000}})
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {"config.context_window", "config.input_token_limit", "overrides.max_tokens"}

    response = await client.post(
        url, json={"variant_name": "small", "overrides": {"context_window": 100, "input_token_limit": 50}}
    )
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {
        "overrides.context_window",
        "overrides.input_token_limit",
        "config.max_tokens",
    }
    assert (await fetch(client, url))["data"] == []
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["variant_count"] == 0


async def test_inconsistent_clone_is_422_and_writes_nothing(client):
    agent = await create_agent(client, config=config(context_window=1000, max_tokens=500))
    url = f"/v1/agents/{agent['id']}/variants"
    response = await client.post(
        url, json={"variant_name": "c", "clone_from": "base", "overrides": {"max_tokens": 1001}}
    )
    assert_problem(response, 422, "inconsistent_config")
    # A clone from base sets all twelve, so every field is named as an override.
    assert problem_params(response) == {f"overrides.{name}" for name in CONSISTENCY}
    assert (await fetch(client, url))["data"] == []


async def test_inconsistent_variant_patch_is_422_and_writes_nothing(client):
    agent = await create_agent(client, config=config(context_window=1000, max_tokens=500))
    variant = await create_variant(client, agent["id"], overrides={"max_tokens": 600})
    url = f"/v1/agents/{agent['id']}/variants/{variant['id']}"
    response = await client.patch(url, json={"description": "x", "overrides": {"input_token_limit": 500}})
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {
        "config.context_window",
        "overrides.input_token_limit",
        "overrides.max_tokens",
    }
    assert await fetch(client, url) == variant
    # Removing an override can break the rule too: the inherited value comes back.
    strict_agent = await create_agent(client, config=config(context_window=1000, max_tokens=500, input_token_limit=500))
    loose = await create_variant(client, strict_agent["id"], overrides={"max_tokens": 100, "input_token_limit": 900})
    url = f"/v1/agents/{strict_agent['id']}/variants/{loose['id']}"
    response = await client.patch(url, json={"overrides": {"max_tokens": None}})
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {
        "config.context_window",
        "overrides.input_token_limit",
        "config.max_tokens",
    }
    assert await fetch(client, url) == loose


async def test_agent_patch_that_would_break_the_active_variant_is_422(client):
    agent = await create_agent(client, config=config(max_tokens=500))
    variant = await create_variant(client, agent["id"], overrides={"context_window": 1000})
    activate = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert activate.status_code == 200, activate.text
    resolved_before = await fetch(client, f"/v1/agents/{agent['id']}/resolved")

    # Fine for the base alone (its context_window is 0), not for the active variant.
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"input_token_limit": 600}})
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {
        "overrides.context_window",
        "config.input_token_limit",
        "config.max_tokens",
    }
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["version"] == agent["version"]
    assert await fetch(client, f"/v1/agents/{agent['id']}/resolved") == resolved_before

    # Once the variant is inactive, the same patch is accepted.
    await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/deactivate")
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"input_token_limit": 600}})
    assert response.status_code == 200, response.text


async def test_agent_patch_is_checked_on_the_resolved_config_not_the_base_alone(client):
    agent = await create_agent(client, config=config(max_tokens=500))
    variant = await create_variant(client, agent["id"], overrides={"context_window": 1000, "max_tokens": 400})
    await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    # The base's max_tokens is shadowed by the variant's, and the base alone has no window.
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_tokens": 5000}})
    assert response.status_code == 200, response.text
    resolved = await fetch(client, f"/v1/agents/{agent['id']}/resolved")
    assert (resolved["max_tokens"], resolved["context_window"]) == (400, 1000)


async def test_activation_rechecks_a_variant_broken_by_a_later_base_change(client):
    agent = await create_agent(client, config=config(max_tokens=500))
    variant = await create_variant(client, agent["id"], overrides={"context_window": 1000})
    other = await create_variant(client, agent["id"])
    assert (await client.post(f"/v1/agents/{agent['id']}/variants/{other['id']}/activate")).status_code == 200
    # The variant is inactive, so the base change is accepted...
    patched = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"max_tokens": 1500}})
    assert patched.status_code == 200, patched.text
    variant_before = await fetch(client, f"/v1/agents/{agent['id']}/variants/{variant['id']}")
    resolved_before = await fetch(client, f"/v1/agents/{agent['id']}/resolved")

    # ...and activating it now is refused.
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert_problem(response, 422, "inconsistent_config")
    assert problem_params(response) == {
        "overrides.context_window",
        "config.input_token_limit",
        "config.max_tokens",
    }
    # Nothing moved: the variant stays inactive, the other stays active.
    assert await fetch(client, f"/v1/agents/{agent['id']}/variants/{variant['id']}") == variant_before
    assert (await fetch(client, f"/v1/agents/{agent['id']}"))["active_variant_id"] == other["id"]
    assert await fetch(client, f"/v1/agents/{agent['id']}/resolved") == resolved_before
    # Previewing it shows the inconsistent config without changing anything.
    preview = await fetch(client, f"/v1/agents/{agent['id']}/resolved?variant={variant['id']}")
    assert preview["max_tokens"] == 1500 and preview["context_window"] == 1000


# --- odd input never reaches a 500 -----------------------------------------------------


@pytest.mark.parametrize("ref", ["%00", "%ED%A0%80", "%F0%9F%9A%80", "a" * 200, "agt_" + "0" * 200, "-", "a--b"])
async def test_odd_path_references_are_404(client, ref):
    agent = await create_agent(client)
    for url in (
        f"/v1/agents/{ref}",
        f"/v1/agents/{ref}/resolved",
        f"/v1/agents/{ref}/variants",
        f"/v1/agents/{agent['id']}/variants/{ref}",
        f"/v1/agents/{agent['id']}/resolved?variant={ref}",
    ):
        assert_problem(await client.get(url), 404, "resource_missing")
    assert_problem(await client.post(f"/v1/agents/{agent['id']}/variants/{ref}/activate"), 404, "resource_missing")
    assert_problem(await client.delete(f"/v1/agents/{ref}"), 404, "resource_missing")


async def test_odd_query_values_are_422_or_ignored(client):
    agent = await create_agent(client)
    assert_problem(await client.get("/v1/agents?after=%00"), 422, "invalid_cursor")
    assert_problem(await client.get(f"/v1/agents/{agent['id']}/variants?after=%00"), 422, "invalid_cursor")
    # A subject is only used by experiments; without one running it changes nothing.
    response = await client.get(f"/v1/agents/{agent['id']}/resolved?subject=%00")
    assert response.status_code == 200
    assert response.json()["source"] == "agent"


async def test_invalid_utf8_body_is_400(client):
    raw = b'{"name": "\xff\xfe", "config": {"model_provider": "a", "model_name": "b"}}'
    assert_problem(await post_raw(client, "/v1/agents", raw), 400, "malformed_json")
    assert await agent_count(client) == 0


async def test_pathologically_nested_or_huge_json_is_a_client_error(client):
    nested = b'{"name": "x", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b', "config": {}}'
    huge_number = (
        b'{"name": "x", "config": {"model_provider": "a", "model_name": "b", "max_tokens": 1' + b"0" * 5000 + b"}}"
    )
    for raw in (nested, huge_number):
        response = await post_raw(client, "/v1/agents", raw)
        assert response.status_code in (400, 422), response.text
        assert_problem(response, response.status_code, response.json()["code"])
    assert await agent_count(client) == 0


# --- every bad field at once, checks beyond types and ranges included -------------------


async def test_empty_derived_slug_is_named_with_the_other_bad_fields(client):
    response = await client.post("/v1/agents", json={"name": "!!!", "config": config(temperature=5)})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug", "config.temperature"}


async def test_reserved_slug_is_named_with_the_other_bad_fields(client):
    agent = await create_agent(client)
    response = await client.post(
        f"/v1/agents/{agent['id']}/variants",
        json={"variant_name": "v", "slug": "base", "overrides": {"max_tokens": 0}},
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"slug", "overrides.max_tokens"}
    alone = await client.post(f"/v1/agents/{agent['id']}/variants", json={"variant_name": "v", "slug": "base"})
    assert_problem(alone, 422, "slug_reserved")


async def test_bad_cursor_is_named_with_the_other_bad_query_parameters(client):
    response = await client.get("/v1/agents", params={"limit": 0, "after": "bad"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"limit", "after"}
