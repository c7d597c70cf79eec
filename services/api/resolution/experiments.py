"""Resolution under a running experiment: each arm's config, read together."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.experiments import repository
from services.shared.agent_config import BASE, AgentNotFound, ResolvedAgentConfig, resolve_agent_config
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_SLUG, ref_key

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
    configs = await arm_configs(conn, experiment, agent_slug=experiment["agent_slug"])
    return experiment["agent_id"], experiment["id"], experiment["salt"], weights, configs


async def arm_configs(
    conn: AsyncConnection, experiment: Any, *, agent_slug: str | None
) -> tuple[ResolvedAgentConfig, ...]:
    """Each arm's resolved config, in arm order, as the experiment serves it: the snapshot
    taken at its start. (An experiment started before snapshots existed has none: its arms
    resolve as they do now, as they always did.)"""
    arms = []
    for arm in experiment["arms"]:
        snapshot = arm.get("snapshot")
        if snapshot is None:
            preview = await resolve_agent_config(conn, experiment["agent_id"], variant=arm["variant_id"] or BASE)
            arms.append(replace(preview, source="experiment", experiment_id=experiment["id"], arm=arm["arm"]))
            continue
        arms.append(
            ResolvedAgentConfig(
                agent_id=experiment["agent_id"],
                variant_id=snapshot["variant_id"],
                agent_slug=agent_slug,
                variant_slug=snapshot["variant_slug"],
                source="experiment",
                experiment_id=experiment["id"],
                arm=arm["arm"],
                environment=PRODUCTION_ENVIRONMENT_SLUG,  # experiments are production's until issue 18's slices
                overridden=frozenset(snapshot["overridden"]),
                **snapshot["config"],
            )
        )
    return tuple(arms)
