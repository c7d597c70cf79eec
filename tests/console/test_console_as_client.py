"""The console as a client of the services: each page reads its data in one snapshot
(`console.queries`: one read-only REPEATABLE READ transaction, so what a page shows agrees
with itself), and the API's errors on its paths are its own error page (`errors.install`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.agents import service as agents
from services.api.agents.schemas import AgentCreate
from services.api.app import create_app
from services.api.db import Database
from services.api.experiments import service as experiments
from services.api.experiments.schemas import ExperimentCreate
from services.api.outcomes import service as outcomes
from services.api.outcomes.schemas import OutcomeIn
from services.api.revisions import service as revisions
from services.api.variants import service as variants
from services.api.variants.schemas import VariantCreate
from tests.console.conftest import Browser, make_key
from tests.helpers import settings_for_tests

T = TypeVar("T")


class CountingDatabase(Database):
    """The test's database, counting how each request reaches it."""

    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__(connection=connection)
        self.calls: Counter[str] = Counter()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        self.calls["read"] += 1
        async with super().read() as conn:
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        self.calls["snapshot"] += 1
        async with super().snapshot() as conn:
            yield conn

    async def transaction(self, unit: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = 6) -> T:
        self.calls["transaction"] += 1
        return await super().transaction(unit, attempts=attempts)


async def test_each_page_reads_its_data_in_one_snapshot(conn: AsyncConnection, db: Database) -> None:
    agent = await agents.create_agent(
        db,
        AgentCreate.model_validate(
            {"name": "Snap bot", "config": {"model_provider": "p", "model_name": "m", "temperature": 0.7}}
        ),
    )
    cold = await variants.create_variant(
        db, agent["id"], VariantCreate.model_validate({"variant_name": "Cold", "overrides": {"temperature": 0.1}})
    )
    warm = await variants.create_variant(
        db, agent["id"], VariantCreate.model_validate({"variant_name": "Warm", "overrides": {"temperature": 0.9}})
    )
    await variants.activate_variant(db, agent["id"], warm["id"])
    experiment = await experiments.create_experiment(
        db,
        agent["id"],
        ExperimentCreate.model_validate(
            {"name": "Cold vs base", "arms": [{"variant": "base", "weight": 1}, {"variant": "cold", "weight": 1}]}
        ),
    )
    await outcomes.store(
        db,
        agent["id"],
        [
            OutcomeIn(
                variant_id=cold["id"], experiment_id=experiment["id"], input_tokens=10, output_tokens=2, latency_ms=5.0
            )
        ],
        batch=False,
    )
    oldest = (await revisions.list_revisions(db, agent["id"], after=None, limit=100, target_id=None))[-1]

    counting = CountingDatabase(conn)
    app = create_app(settings_for_tests(), database=counting)
    _, secret = await make_key(db, "admin")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        browser = Browser(http)
        assert (await browser.sign_in(secret)).status_code == 303
        base = "/console/agents/snap-bot"
        pages = [
            "/console/agents",
            "/console/agents?q=snap",
            base,
            f"{base}?after={warm['id']}",
            f"{base}/edit",
            f"{base}/variants/cold",
            f"{base}/variants/cold?against=base",
            f"{base}/variants/cold?against=warm",
            f"{base}/variants/cold?against={oldest['id']}",
            f"{base}/variants/cold?against=nope",
            f"{base}/variants/cold/activate",
            f"{base}/variants/warm/activate",
            f"{base}/variants/warm/deactivate",
            f"{base}/history",
            f"{base}/history?at=2099-01-01T00:00:00",
            f"{base}/history?at=2000-01-01T00:00:00",
            f"{base}/experiments",
            f"{base}/experiments/{experiment['id']}",
            f"{base}/experiments/{experiment['id']}/start",
            f"{base}/experiments/{experiment['id']}/stop",
            f"{base}/undo",
            f"{base}/history?undone={oldest['id']}",
            # Issue 18: the environment (switcher, panel), a preview, the rule editor.
            f"{base}?environment=production",
            f"{base}?subject=u1&attributes=plan%3Dpro",
            f"{base}/rules",
            f"{base}/rules?environment=production",
        ]
        seen: dict[str, Any] = {}
        for path in pages:
            counting.calls.clear()
            response = await http.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            # The one plain read is the session's (console.sessions.viewer_of), before the page.
            seen[path] = dict(counting.calls)
        assert {path: calls for path, calls in seen.items() if calls != {"snapshot": 1, "read": 1}} == {}
        # And a page that shows what a diff says shows it from the same snapshot as the rest.
        compared = await http.get(f"{base}/variants/cold?against=warm")
        assert re.search(r"<code>temperature</code>.*?0\.9.*?0\.1", compared.text, re.S)


async def test_an_error_is_the_console_page_on_console_paths_and_problem_json_on_the_api(
    admin: Browser, db: Database
) -> None:
    page = await admin.http.get("/console/agents/no-such-bot")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Resource not found</h1>" in page.text and "Agent &#39;no-such-bot&#39; not found" in page.text
    _, secret = await make_key(db, "read")
    api = await admin.http.get("/v1/agents/no-such-bot", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"
    assert api.json()["title"] == "Resource not found" and api.json()["detail"] == "Agent 'no-such-bot' not found"
    # Every handler picks by route: an unknown console path is the page too.
    missing = await admin.http.get("/console/no-such-page")
    assert missing.status_code == 404 and "<h1>No such route</h1>" in missing.text
    assert (await admin.http.get("/v1/no-such-route")).headers["content-type"] == "application/problem+json"
