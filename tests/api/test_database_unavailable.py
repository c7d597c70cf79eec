"""With the database unreachable, the service answers 503 problems, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import assert_problem, bearer, config, settings_for_tests


@pytest.fixture(params=["auth on", "auth off"])
async def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """With auth on, checking the key is what meets the outage first (the key ring cannot
    load); with auth off, the routes and the idempotency claim meet it themselves."""
    # A real connection attempt to a socket directory where no server listens.
    database = Database.from_url(f"postgresql+asyncpg://postgres@/agent_variants?host={tmp_path}")
    auth_off = request.param == "auth off"
    app = create_app(settings_for_tests(auth_disabled=auth_off), database=database)
    headers = {} if auth_off else bearer("avk_" + "x" * 43)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
    ) as client:
        yield client
    await database.dispose()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/agents", None),
        ("GET", "/v1/agents/support-bot", None),
        ("GET", "/v1/agents/support-bot/resolved", None),
        ("POST", "/v1/agents", {"name": "x", "config": config()}),
        ("POST", "/v1/agents/support-bot/variants/concise/activate", None),
    ],
)
async def test_routes_answer_503_with_retry_after(unreachable, method, path, body):
    response = await unreachable.request(method, path, json=body)
    assert_problem(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"


async def test_readyz_is_503_and_healthz_still_200(unreachable):
    assert_problem(await unreachable.get("/readyz"), 503, "not_ready")
    health = await unreachable.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


async def test_a_keyed_post_is_503_too(unreachable):
    # The Idempotency-Key claim runs before the app's handlers, and maps the outage itself.
    response = await unreachable.post(
        "/v1/agents", json={"name": "x", "config": config()}, headers={"Idempotency-Key": "outage-1"}
    )
    assert_problem(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"
