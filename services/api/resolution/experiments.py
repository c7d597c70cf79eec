"""Resolution under a running experiment: each arm's config, read together."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.experiments import repository
from services.shared.agent_config import BASE, AgentNotFound, ResolvedAgentConfig, resolve_agent_config
from services.shared.identifiers import ref_key

Arms = tuple[str, str | None, str, tuple[int, ...], tuple[ResolvedAgentConfig, ...]]


async def running_arms(conn: AsyncConnection, agent: str) -> Arms:
    """(agent id, experiment id, salt, weights, each arm's resolved config) for the agent's
    running experiment. With none running, the experiment id is None and the single arm
    (weight 1) is the plain resolution, so every subject gets it. An unknown agent raises
    `AgentNotFound`."""
    agent_key = ref_key("agent", agent)
    if agent_key is None:
        raise AgentNotFound(agent)
    experiment = await repository.running_for_ref(conn, agent_key, agent)
    if experiment is None:
        resolved = await resolve_agent_config(conn, agent)
        return resolved.agent_id, None, "", (1,), (resolved,)
    weights = tuple(arm["weight"] for arm in experiment["arms"])
    return experiment["agent_id"], experiment["id"], experiment["salt"], weights, await arm_configs(conn, experiment)


async def arm_configs(conn: AsyncConnection, experiment: Any) -> tuple[ResolvedAgentConfig, ...]:
    """Each arm's resolved config, in arm order, as the experiment serves it."""
    arms = []
    for arm in experiment["arms"]:
        preview = await resolve_agent_config(conn, experiment["agent_id"], variant=arm["variant_id"] or BASE)
        arms.append(replace(preview, source="experiment", experiment_id=experiment["id"], arm=arm["arm"]))
    return tuple(arms)
