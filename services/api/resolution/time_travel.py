"""What resolution returned at an instant, from the agent's history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.exceptions import NotFound
from services.api.revisions import repository as history
from services.api.schemas import timestamp
from services.api.writes.locks import find_agent
from services.shared.agent_config import CONFIG_FIELDS, ResolvedAgentConfig
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_SLUG


async def resolve_at(conn: AsyncConnection, agent_ref: str, at: datetime) -> ResolvedAgentConfig:
    """The agent, its active variant and that variant's overrides and slugs as recorded by
    the newest revisions at or before `at`."""
    agent = await find_agent(conn, agent_ref, archived=True)
    # Archived now and at `at`, or archived then and unarchived since: resolution returned
    # nothing during an archived period, so time travel into one answers what it did.
    archived = agent.archived_at if agent.archived_at is not None and at >= agent.archived_at else None
    archived = archived or await history.archived_as_of(conn, agent.id, at)
    if archived is not None:
        raise NotFound("Agent", agent_ref, detail=f"Agent '{agent_ref}' was archived at {timestamp(archived)}")
    state = await history.state_at(conn, agent.id, at)
    if state is None:
        raise NotFound("Agent", agent_ref, detail=f"Agent '{agent_ref}' did not exist at {timestamp(at)}")
    base, variant = state["agent"], state["variant"]
    overrides = variant["overrides"] if variant is not None else {}
    return ResolvedAgentConfig(
        agent_id=base["id"],
        variant_id=variant["id"] if variant is not None else None,
        agent_slug=base["slug"],
        variant_slug=variant["slug"] if variant is not None else None,
        source="variant" if variant is not None else "agent",
        environment=PRODUCTION_ENVIRONMENT_SLUG,  # history is production's until issue 18's slices
        overridden=frozenset(overrides),
        **{name: overrides.get(name, base["config"][name]) for name in CONFIG_FIELDS},
    )
