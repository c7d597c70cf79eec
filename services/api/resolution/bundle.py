"""GET /v1/agents/{agent}/bundle: everything a client needs to resolve any subject itself.

The plain resolution, and the running experiment with each arm's resolution, read in one
snapshot so a bundle never mixes two states. `etag` is a hash of the rest of the bundle,
so every replica gives the same one for the same state.
"""

from __future__ import annotations

import json
from typing import Any

from services.api.db import Database
from services.api.experiments import repository as experiments
from services.api.http import content_hash
from services.api.resolution.experiments import arm_configs
from services.api.resolution.schemas import BundleArm, BundleExperiment, BundleRead, to_body
from services.shared.agent_config import resolve_agent_config


async def build(db: Database, agent: str) -> tuple[bytes, str, str]:
    """The bundle's JSON, its etag (a bare token) and the agent's id. An unknown agent
    raises `AgentNotFound`."""
    async with db.snapshot() as conn:
        plain = await resolve_agent_config(conn, agent)
        running = await experiments.running(conn, plain.agent_id)
        arms = await arm_configs(conn, running, agent_slug=plain.agent_slug) if running is not None else ()
    experiment: dict[str, Any] | None = None
    if running is not None:
        experiment = BundleExperiment(
            id=running["id"],
            salt=running["salt"],
            arms=[
                BundleArm(
                    arm=arm["arm"],
                    weight=arm["weight"],
                    variant_id=arm["variant_id"],
                    resolved=to_body(resolved, explain=True),
                )
                for arm, resolved in zip(running["arms"], arms, strict=True)
            ],
        ).model_dump(exclude_unset=True)
    content = {
        "agent_id": plain.agent_id,
        "agent_slug": plain.agent_slug,
        "resolved": to_body(plain, explain=True),
        "experiment": experiment,
    }
    etag = content_hash(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    body = BundleRead(object="resolution_bundle", etag=etag, **content).model_dump(exclude_unset=True)
    return json.dumps(body, separators=(",", ":")).encode(), etag, plain.agent_id
