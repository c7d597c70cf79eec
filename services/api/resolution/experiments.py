"""An experiment's arms as it serves them (the console shows every experiment's)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.shared.agent_config import BASE, ResolvedAgentConfig, arm_config, resolve_agent_config


async def arm_configs(
    conn: AsyncConnection, experiment: Any, *, agent_slug: str | None
) -> tuple[ResolvedAgentConfig, ...]:
    """Each arm's resolved config, in arm order, as the experiment serves it: the snapshot
    taken at its start. (An experiment not started, or started before snapshots existed,
    has none: its arms resolve as they would now in its environment.)"""
    arms = []
    for arm in experiment["arms"]:
        resolved = arm_config(
            experiment["id"],
            arm,
            agent_id=experiment["agent_id"],
            agent_slug=agent_slug,
            environment=experiment["environment"],
        )
        if resolved is None:
            preview = await resolve_agent_config(
                conn,
                experiment["agent_id"],
                variant=arm["variant_id"] or BASE,
                environment=experiment["environment_id"],
            )
            resolved = replace(preview, source="experiment", experiment_id=experiment["id"], arm=arm["arm"])
        arms.append(resolved)
    return tuple(arms)
