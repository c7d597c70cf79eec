"""Service endpoints: liveness, readiness, the route listing and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx

from services.api import migrate

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_the_database_answers_at_head(client):
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["migration"] == migrate.head_revision()


async def test_inspect_routes_lists_every_route_with_methods_and_summary(client):
    response = await client.get("/v1/inspect/routes")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    pairs = {(entry["route"], method) for entry in body["data"] for method in entry["methods"]}
    expected = {
        ("/v1/agents", "POST"),
        ("/v1/agents", "GET"),
        ("/v1/agents/{agent}", "GET"),
        ("/v1/agents/{agent}", "PATCH"),
        ("/v1/agents/{agent}", "DELETE"),
        ("/v1/agents/{agent}/variants", "POST"),
        ("/v1/agents/{agent}/variants", "GET"),
        ("/v1/agents/{agent}/variants/{variant}", "GET"),
        ("/v1/agents/{agent}/variants/{variant}", "PATCH"),
        ("/v1/agents/{agent}/variants/{variant}", "DELETE"),
        ("/v1/agents/{agent}/variants/{variant}/activate", "POST"),
        ("/v1/agents/{agent}/variants/{variant}/deactivate", "POST"),
        ("/v1/agents/{agent}/resolved", "GET"),
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/v1/inspect/routes", "GET"),
    }
    assert expected <= pairs, expected - pairs
    for entry in body["data"]:
        assert set(entry) == {"route", "methods", "summary"}
        assert entry["methods"] and all(m == m.upper() for m in entry["methods"])
        assert isinstance(entry["summary"], str) and entry["summary"], entry


async def test_inspect_routes_agrees_with_openapi(client):
    listed = {
        (entry["route"], method.lower())
        for entry in (await client.get("/v1/inspect/routes")).json()["data"]
        for method in entry["methods"]
    }
    documented = {(path, method) for path, method, _ in operations(await openapi(client))}
    assert documented <= listed


async def test_openapi_is_3_1(client):
    schema = await openapi(client)
    assert schema["openapi"].startswith("3.1.")
    assert schema["info"]["title"] == "agent-variants"
    assert "/v1/agents" in schema["paths"]


async def test_every_4xx_response_is_a_ref_to_a_shared_component(client):
    schema = await openapi(client)
    shared = schema["components"]["responses"]
    seen_statuses: set[str] = set()
    for path, method, operation in operations(schema):
        if path.startswith("/ofrep/"):  # OpenFeature's protocol has its own error shapes (tests/api/test_ofrep.py)
            continue
        for status, response in operation["responses"].items():
            if not status.startswith("4"):
                continue
            seen_statuses.add(status)
            assert set(response) == {"$ref"}, (path, method, status, response)
            ref = response["$ref"]
            assert ref.startswith("#/components/responses/"), ref
            name = ref.removeprefix("#/components/responses/")
            assert name in shared, ref
            content = shared[name]["content"]["application/problem+json"]["schema"]
            assert content == {"$ref": "#/components/schemas/Problem"}
    assert {"404", "409", "422"} <= seen_statuses
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])


async def test_operations_list_their_error_responses(client):
    schema = await openapi(client)
    by_operation = {(path, method): op for path, method, op in operations(schema)}

    def statuses(path: str, method: str) -> set[str]:
        return set(by_operation[(path, method)]["responses"])

    assert {"409", "413", "422"} <= statuses("/v1/agents", "post")
    assert {"404", "409", "422"} <= statuses("/v1/agents/{agent}", "patch")
    assert {"404"} <= statuses("/v1/agents/{agent}", "get")
    assert {"404", "409"} <= statuses("/v1/agents/{agent}/variants/{variant}", "delete")
    assert {"404", "422"} <= statuses("/v1/agents/{agent}/variants/{variant}/activate", "post")
    assert {"404", "422"} <= statuses("/v1/agents/{agent}/resolved", "get")
    assert {"422"} <= statuses("/v1/agents", "get")


async def test_patch_operations_accept_merge_patch(client):
    schema = await openapi(client)
    for path in ("/v1/agents/{agent}", "/v1/agents/{agent}/variants/{variant}"):
        content = schema["paths"][path]["patch"]["requestBody"]["content"]
        assert "application/merge-patch+json" in content
        assert "application/json" in content


async def test_docs_page_is_served(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
