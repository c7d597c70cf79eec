"""What resolution returned at an instant, from the agent's history."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.environments import repository as environments
from services.api.exceptions import NotFound
from services.api.revisions import repository as history
from services.api.schemas import timestamp
from services.api.writes.locks import find_agent
from services.shared.agent_config import BASE, CONFIG_FIELDS, ResolvedAgentConfig, Source, choose, coalesce_keyed


async def resolve_at(conn: AsyncConnection, agent_ref: str, at: datetime, *, environment: str) -> ResolvedAgentConfig:
    """What resolution returned at `at` in the environment (id or slug) for a request
    without context: the agent, the environment's rules as of then on the empty context,
    else its active variant then, with the overrides and slugs the newest revisions at or
    before `at` recorded."""
    agent = await find_agent(conn, agent_ref, archived=True)
    env = await environments.named(conn, environment)
    # Archived now and at `at`, or archived then and unarchived since: resolution returned
    # nothing during an archived period, so time travel into one answers what it did.
    archived = agent.archived_at if agent.archived_at is not None and at >= agent.archived_at else None
    archived = archived or await history.archived_as_of(conn, agent.id, at)
    if archived is not None:
        raise NotFound("Agent", agent_ref, detail=f"Agent '{agent_ref}' was archived at {timestamp(archived)}")
    state = await history.state_at(conn, agent.id, at, environment_id=env["id"])
    if state is None:
        raise NotFound("Agent", agent_ref, detail=f"Agent '{agent_ref}' did not exist at {timestamp(at)}")
    base, variant = state["agent"], state["variant"]
    source: Source = "variant" if variant is not None else "agent"
    rule_id = None
    kind, rule = choose(state["rules"], None, subject=None, attributes=None)
    if kind == "rule":
        assert isinstance(rule, Mapping)
        served = rule["serve"]["variant"]
        variant = None if served == BASE else await history.object_at(conn, served, at)
        source, rule_id = "rule", rule["id"]
    overrides = variant["overrides"] if variant is not None else {}
    # Objects recorded before the keyed fields existed have none: they resolve empty.
    keyed, given = coalesce_keyed(overrides, base["config"])
    return ResolvedAgentConfig(
        agent_id=base["id"],
        variant_id=variant["id"] if variant is not None else None,
        agent_slug=base["slug"],
        variant_slug=variant["slug"] if variant is not None else None,
        source=source,
        rule_id=rule_id,
        environment=env["slug"],
        overridden=frozenset(name for name in overrides if name in CONFIG_FIELDS) | given,
        **{name: overrides.get(name, base["config"][name]) for name in CONFIG_FIELDS},
        params=keyed["params"],
        tools=keyed["tools"],
        variables=keyed["variables"],
    )
