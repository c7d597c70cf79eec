"""Requests are read strictly (issue 16, items 13, 14 and 17): an unknown query parameter is
a 422, a 405 names every method of its path, and a JSON body that repeats a key or is not
UTF-8 is refused rather than read as something the client did not mean."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from services.api import strict
from services.api.app import create_app
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params, settings_for_tests

# --- item 13: unknown query parameters ----------------------------------------------------


def hints(response: httpx.Response) -> dict[str, str]:
    return {error["param"]: error["message"] for error in response.json()["errors"]}


async def test_an_unknown_query_parameter_is_422_naming_it(client):
    await create_agent(client)
    # Stripe's and other APIs' names for `after` used to return page 1, forever.
    for query, param in (("cursor=agt_x", "cursor"), ("starting_after=agt_x", "starting_after")):
        response = await client.get(f"/v1/agents?{query}")
        body = assert_problem(response, 422, "unknown_parameter")
        assert problem_params(response) == {param}
        assert param in body["detail"]
    assert "did you mean `after`?" in hints(await client.get("/v1/agents?starting_after=agt_x"))["starting_after"]
    assert "did you mean `limit`?" in hints(await client.get("/v1/agents?limt=5"))["limt"]
    assert "did you mean" not in hints(await client.get("/v1/agents?cursor=x"))["cursor"]


async def test_every_unknown_query_parameter_is_named_at_once(client):
    response = await client.get("/v1/agents", params={"limit": 5, "page": 2, "per_page": 5, "sort": "id"})
    assert_problem(response, 422, "unknown_parameter")
    assert problem_params(response) == {"page", "per_page", "sort"}


async def test_declared_query_parameters_still_work(client):
    agent = await create_agent(client)
    await create_variant(client, agent["id"])
    for url in (
        "/v1/agents?limit=1",
        f"/v1/agents?limit=1&after={agent['id']}",
        f"/v1/agents/{agent['id']}/variants?is_active=false&limit=5",
        f"/v1/agents/{agent['id']}/revisions?target_id={agent['id']}",
        f"/v1/agents/{agent['id']}/experiments?status=draft",
        f"/v1/agents/{agent['id']}/resolved?explain=true&subject=u1",
        f"/v1/agents/{agent['id']}?",  # an empty query string names nothing
    ):
        response = await client.get(url)
        assert response.status_code == 200, (url, response.text)


async def test_unknown_query_parameters_on_writes_change_nothing(client):
    agent = await create_agent(client)
    response = await client.post("/v1/agents?dry_run=true", json={"name": "x", "config": config()})
    assert_problem(response, 422, "unknown_parameter")
    response = await client.patch(f"/v1/agents/{agent['id']}?force=1", json={"name": "renamed"})
    assert_problem(response, 422, "unknown_parameter")
    response = await client.delete(f"/v1/agents/{agent['id']}?hard=true")
    assert_problem(response, 422, "unknown_parameter")
    listed = (await client.get("/v1/agents")).json()["data"]
    assert [(a["id"], a["name"], a["version"]) for a in listed] == [(agent["id"], agent["name"], 1)]


async def test_a_cached_resolution_with_an_unknown_parameter_falls_through_to_the_422(client):
    agent = await create_agent(client)
    url = f"/v1/agents/{agent['id']}/resolved"
    for _ in range(2):  # the second is answered from the cache, before FastAPI
        assert (await client.get(url)).status_code == 200
    for query in ("varient=x", "explain=true&verbose=1", "subjet=u1"):
        response = await client.get(f"{url}?{query}")
        assert_problem(response, 422, "unknown_parameter")
    assert "did you mean `variant`?" in hints(await client.get(f"{url}?varient=x"))["varient"]
    assert "did you mean `subject`?" in hints(await client.get(f"{url}?subjet=u1"))["subjet"]


def v1_operations() -> list[tuple[str, str]]:
    app = create_app(settings_for_tests())
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    )


@pytest.mark.parametrize(("method", "path"), v1_operations())
async def test_every_v1_route_refuses_unknown_query_parameters(client, method, path):
    # Before the route runs: the made-up references are never looked up.
    url = re.sub(r"\{[^}]+\}", "x", path) + "?zzz_unknown=1"
    response = await client.request(method, url, json={} if method in ("POST", "PATCH") else None)
    assert_problem(response, 422, "unknown_parameter")
    assert problem_params(response) == {"zzz_unknown"}


async def test_routes_outside_v1_keep_ignoring_query_strings(client):
    assert (await client.get("/healthz?probe=1")).status_code == 200
    assert (await client.get("/console/sign-in?next=/console/agents")).status_code == 200


def test_openapi_lists_422_on_every_v1_operation():
    paths = create_app(settings_for_tests()).openapi()["paths"]
    for path, operations in paths.items():
        if path.startswith("/v1/"):
            for method, operation in operations.items():
                assert "422" in operation["responses"], (method, path)


# --- item 14: Allow on 405 ----------------------------------------------------------------


def allowed(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


async def test_405_allow_names_every_method_of_the_path(client):
    agent = await create_agent(client)
    for method, url, methods in (
        ("PUT", f"/v1/agents/{agent['id']}", {"GET", "PATCH", "DELETE"}),
        ("PUT", "/v1/agents", {"GET", "POST"}),
        ("DELETE", "/v1/agents", {"GET", "POST"}),
        ("PUT", f"/v1/agents/{agent['id']}/variants/x", {"GET", "PATCH", "DELETE"}),
        ("GET", f"/v1/agents/{agent['id']}/variants/x/activate", {"POST"}),
        ("POST", f"/v1/agents/{agent['id']}/resolved", {"GET"}),
        ("PUT", "/v1/keys/x", {"GET", "DELETE"}),
    ):
        response = await client.request(method, url)
        assert_problem(response, 405, "method_not_allowed")
        assert allowed(response) == methods, (method, url, response.headers["allow"])


async def test_405_allow_matches_openapi_for_every_path(client):
    paths = create_app(settings_for_tests()).openapi()["paths"]
    for path, operations in paths.items():
        methods = {method.upper() for method in operations}  # HEAD is not served (405 too)
        refused = next(m for m in ("PUT", "PATCH", "DELETE", "POST", "GET") if m not in methods)
        response = await client.request(refused, re.sub(r"\{[^}]+\}", "x", path))
        assert response.status_code == 405, (refused, path)
        assert allowed(response) == methods, (refused, path, response.headers["allow"])


# --- item 17: repeated keys and charsets --------------------------------------------------


async def post_raw(client: httpx.AsyncClient, url: str, raw: bytes, content_type: str = "application/json") -> Any:
    return await client.post(url, content=raw, headers={"Content-Type": content_type})


async def agent_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/v1/agents", params={"limit": 100})).json()["data"])


AGENT = '{{"name": "{name}", "config": {{"model_provider": "openai", "model_name": "gpt-4o"{extra}}}}}'


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ('{"name": "a", "name": "b", "config": {"model_provider": "openai", "model_name": "gpt-4o"}}', "name"),
        (AGENT.format(name="a", extra=', "temperature": 0.2, "temperature": 1.9'), "temperature"),
        (AGENT.format(name="a", extra="").replace('"config"', '"metadata": {"k": "1", "k": "2"}, "config"'), "k"),
    ],
)
async def test_a_repeated_key_is_400_naming_it(client, raw, key):
    response = await post_raw(client, "/v1/agents", raw.encode())
    body = assert_problem(response, 400, "malformed_json")
    assert f"'{key}'" in body["detail"], body["detail"]
    assert await agent_count(client) == 0


async def test_a_repeated_key_in_a_patch_or_an_outcome_batch_is_400(client):
    agent = await create_agent(client)
    response = await client.patch(
        f"/v1/agents/{agent['id']}",
        content=b'{"name": "x", "name": "y"}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert_problem(response, 400, "malformed_json")
    assert (await client.get(f"/v1/agents/{agent['id']}")).json()["version"] == 1
    item = {"variant_id": None, "input_tokens": 1, "output_tokens": 1, "latency_ms": 1}
    items = [json.dumps(item)] * 999 + ['{"variant_id": null, "input_tokens": 1, "input_tokens": 2}']
    raw = ('{"data": [' + ", ".join(items) + "]}").encode()
    response = await post_raw(client, f"/v1/agents/{agent['id']}/outcomes", raw)
    assert "'input_tokens'" in assert_problem(response, 400, "malformed_json")["detail"]
    assert (await client.get(f"/v1/agents/{agent['id']}/usage")).json()["outcomes"] == 0


async def test_the_same_key_in_different_objects_is_fine(client):
    raw = AGENT.format(name="a", extra="").replace('"config"', '"metadata": {"name": "x"}, "config"')
    assert (await post_raw(client, "/v1/agents", raw.encode())).status_code == 201


@pytest.mark.parametrize("charset", ["utf-16", "UTF-16LE", "utf-32", "iso-8859-1", "us-ascii", "latin1"])
async def test_a_charset_other_than_utf8_is_415(client, charset):
    text = AGENT.format(name="a", extra="")
    encoding = {"us-ascii": "ascii"}.get(charset, charset)
    response = await post_raw(client, "/v1/agents", text.encode(encoding), f"application/json; charset={charset}")
    body = assert_problem(response, 415, "unsupported_media_type")
    assert "UTF-8" in body["detail"]
    assert await agent_count(client) == 0


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
async def test_a_utf8_charset_is_accepted(client, charset):
    raw = AGENT.format(name="a", extra="").encode()
    response = await post_raw(client, "/v1/agents", raw, f"application/json;charset={charset}")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
async def test_a_body_in_utf16_or_utf32_is_415(client, encoding):
    # `utf-16` and `utf-32` start with a BOM; the others are detected the way JSON parsers do.
    raw = AGENT.format(name="a", extra="").encode(encoding)
    body = assert_problem(await post_raw(client, "/v1/agents", raw), 415, "unsupported_media_type")
    assert "UTF-8" in body["detail"]
    assert await agent_count(client) == 0


async def test_a_repeated_key_under_an_idempotency_key_is_not_the_corrected_body(client):
    raw = b'{"name": "a", "name": "b", "config": {"model_provider": "openai", "model_name": "gpt-4o"}}'
    headers = {"Content-Type": "application/json", "Idempotency-Key": "dup-1"}
    assert_problem(await client.post("/v1/agents", content=raw, headers=headers), 400, "malformed_json")
    corrected = {"name": "b", "config": config()}
    response = await client.post("/v1/agents", json=corrected, headers={"Idempotency-Key": "dup-1"})
    assert_problem(response, 409, "idempotency_key_reused")


async def test_a_keyed_post_parses_its_body_once(client, monkeypatch):
    # The fingerprint's parse is the route's: a 1,000-outcome batch from the SDK (always keyed) is read once.
    parsed: list[bytes] = []
    real = strict.loads
    monkeypatch.setattr(strict, "loads", lambda body: parsed.append(body) or real(body))
    response = await client.post(
        "/v1/agents", json={"name": "once", "config": config()}, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 201, response.text
    assert len(parsed) == 1


async def test_a_replayed_405_keeps_its_allow(client) -> None:
    agent = await create_agent(client)
    headers = {"Idempotency-Key": "post-to-an-agent"}
    first = await client.post(f"/v1/agents/{agent['id']}", json={}, headers=headers)
    again = await client.post(f"/v1/agents/{agent['id']}", json={}, headers=headers)
    assert first.status_code == again.status_code == 405
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.headers["allow"] == first.headers["allow"]
