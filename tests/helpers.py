"""Small builders shared by the tests."""

from __future__ import annotations

import itertools
import os
from typing import Any

import httpx
from fastapi import FastAPI

from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.api.settings import Settings

_counter = itertools.count()

# The key every `client` and `live_client` sends: admin, so routes see no difference
# from before auth; the access tests use keys of every scope.
TEST_KEY_NAME = "test-admin"
# Tests send far more than 2,000 requests in a burst; rate limits are tested on their own.
UNLIMITED = {scope: {"per_second": 1e9, "burst": 10**9} for scope in ("resolve", "read", "write", "admin")}


def settings_for_tests(**overrides: object) -> Settings:
    # No access log: in process its lines only fill the captured output (test_access_log.py turns it on).
    return Settings(**{"database_url": None, "rate_limits": UNLIMITED, "access_log": False, **overrides})


async def admin_key(db: Database, name: str = TEST_KEY_NAME) -> str:
    """The secret of an admin key named `name`, made for this test."""
    key = await keys_service.create_key(db, KeyCreate(name=name, scope="admin"))
    return key["secret"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def unique(prefix: str = "agent") -> str:
    """A name no other test in this run uses (slugs are global for agents)."""
    return f"{prefix} {os.getpid()} {next(_counter)}"


def config(**fields: Any) -> dict[str, Any]:
    return {"model_provider": "openai", "model_name": "gpt-4o", **fields}


async def create_agent(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("name", unique())
    body.setdefault("config", config())
    response = await client.post("/v1/agents", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def create_variant(client: httpx.AsyncClient, agent: str, **body: Any) -> dict[str, Any]:
    body.setdefault("variant_name", unique("variant"))
    response = await client.post(f"/v1/agents/{agent}/variants", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def problem_params(response: httpx.Response) -> set[str]:
    """The `param`s a problem+json response names."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {error["param"] for error in response.json().get("errors", [])}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code, fully formed."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code) and body["type"].startswith(("http://", "https://"))
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if "errors" in body:
        assert body["errors"], "errors, when present, names at least one field"
        for error in body["errors"]:
            assert set(error) == {"param", "message"}
            assert error["param"] and error["message"]
    return body


async def every_item(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list endpoint, newest first, paging through it with `after`."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        query = {"limit": 100, **params, **({"after": after} if after else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["data"]
        if not page["has_more"]:
            return found
        after = page["last_id"]


def app_of(client: httpx.AsyncClient) -> FastAPI:
    """The app behind an in-process client (the `client` fixture's)."""
    app = client._transport.app  # type: ignore[attr-defined]
    assert isinstance(app, FastAPI)
    return app
