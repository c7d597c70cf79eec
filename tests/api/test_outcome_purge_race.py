"""An outcome batch racing the purge of its agent is a 404, not a 500 (follow-up from issue
16's review). The batch takes no lock on the agent (ingestion never waits for the agent's
writers), so the agent can be erased between the batch finding it and inserting its rows;
the rows' foreign key then refuses them, and that means the agent is gone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.api.db import Database
from services.api.outcomes import service
from tests.helpers import assert_problem, create_agent

pytestmark = pytest.mark.live


async def test_a_batch_whose_agent_is_purged_meanwhile_is_404(
    live_client: httpx.AsyncClient, live_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await create_agent(live_client)
    found = service.find_agent

    async def found_then_purged(conn: Any, ref: str, **kwargs: Any) -> Any:
        result = await found(conn, ref, **kwargs)
        async with live_db.engine.begin() as other:  # another transaction erases the agent now
            await other.execute(text("DELETE FROM agents WHERE id = :id"), {"id": result.id})
        return result

    monkeypatch.setattr(service, "find_agent", found_then_purged)
    outcome = {"variant_id": None, "input_tokens": 1, "output_tokens": 1, "latency_ms": 2.0}
    response = await live_client.post(f"/v1/agents/{agent['id']}/outcomes", json={"data": [outcome] * 3})
    assert_problem(response, 404, "resource_missing")
    async with live_db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM outcomes WHERE agent_id = :id"), {"id": agent["id"]}) == 0
