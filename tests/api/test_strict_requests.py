"""Requests are read strictly (issue 16, items 13, 14 and 17): an unknown query parameter is
a 422, a 405 names every method of its path, and a JSON body that repeats a key or is not
UTF-8 is refused rather than read as something the client did not mean."""

from __future__ import annotations

import re

import httpx
import pytest

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
