"""Helpers shared by the history tests (revisions, undo, restore, diff, time travel)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.helpers import every_item

REVISION_ID = re.compile(r"^rev_[0-7][0-9A-HJKMNP-TV-Z]{25}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
REVISION_KEYS = {
    "object",
    "id",
    "agent_id",
    "target",
    "target_id",
    "action",
    "actor",
    "api_key",
    "environment",
    "active_variant_id",
    "active_variants",
    "before",
    "after",
    "created_at",
}
FIELDS = (
    "model_provider",
    "model_name",
    "system_prompt",
    "user_prompt_template",
    "prompt_version",
    "temperature",
    "max_tokens",
    "context_window",
    "input_token_limit",
    "token_budget",
    "timeout_seconds",
    "max_retries",
)


async def all_revisions(client: httpx.AsyncClient, agent: str, **params: Any) -> list[dict[str, Any]]:
    """Every revision of the agent, newest first, paging through the list."""
    return await every_item(client, f"/v1/agents/{agent}/revisions", **params)


async def newest_revision(client: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent}/revisions", params={"limit": 1})
    assert response.status_code == 200, response.text
    return response.json()["data"][0]


async def stored_revision_count(conn: AsyncConnection, agent_id: str) -> int:
    """Revisions in the table itself, whatever the API lists."""
    return await conn.scalar(text("SELECT count(*) FROM revisions WHERE agent_id = :a"), {"a": agent_id})


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in names}


async def snapshot(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    """What a user sees of an agent, minus what moves on every write (version, times of change)."""
    agent = await client.get(f"/v1/agents/{agent_id}")
    assert agent.status_code == 200, agent.text
    listed = await client.get(f"/v1/agents/{agent_id}/variants", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    resolved = await client.get(f"/v1/agents/{agent_id}/resolved")
    assert resolved.status_code == 200, resolved.text
    return {
        "agent": without(agent.json(), "version", "updated_at"),
        "variants": [without(v, "version", "updated_at", "activated_at") for v in listed.json()["data"]],
        "resolved": resolved.json(),
    }
