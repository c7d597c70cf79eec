"""With the database unreachable, the service answers 503 problems, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.api.app import create_app
from services.api.db import Database
from services.api.settings import Settings
from tests.helpers import assert_problem, config


@pytest.fixture
async def unreachable(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # A real connection attempt to a socket directory where no server listens.
    database = Database.from_url(f"postgresql+asyncpg://postgres@/agent_variants?host={tmp_path}")
    app = create_app(Settings(database_url=None), database=database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
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
