"""GET /v1/agents/{agent}/bundle: everything a client needs to resolve any context itself,
in one environment.

The environment's plan (`plan.py`: the plain resolution, the rules with the configs they
serve, the running experiment with each arm's), read in one snapshot so a bundle never
mixes two states. `etag` is a hash of the rest of the bundle, so every replica gives the
same one for the same state.
"""

from __future__ import annotations

import json
from typing import Any

from services.api.db import Database
from services.api.http import content_hash
from services.api.resolution import plan
from services.api.resolution.schemas import BundleArm, BundleExperiment, BundleRead, BundleRule, to_body


async def build(db: Database, agent: str, environment: str) -> tuple[bytes, str, str]:
    """The bundle's JSON, its etag (a bare token) and the agent's id. An unknown agent
    raises `AgentNotFound`, an unknown environment `EnvironmentNotFound`."""
    async with db.snapshot() as conn:
        found = await plan.build(conn, agent, environment)
    experiment: dict[str, Any] | None = None
    if found.experiment is not None:
        experiment = BundleExperiment(
            id=found.experiment["id"],
            kind=found.experiment["kind"],
            status=found.experiment["status"],
            salt=found.experiment["salt"],
            arms=[
                BundleArm(
                    arm=arm["arm"],
                    weight=arm["weight"],
                    variant_id=arm["variant_id"],
                    resolved=to_body(resolved, explain=True),
                )
                for arm, resolved in zip(found.experiment["arms"], found.arms, strict=True)
            ],
        ).model_dump(exclude_unset=True)
    rules = [
        BundleRule(
            id=rule["id"],
            name=rule["name"],
            when=rule["when"],
            serve=rule["serve"],
            resolved=to_body(resolved, explain=True),
        ).model_dump(exclude_unset=True)
        for rule, resolved in zip(found.rules, found.ruled, strict=True)
    ]
    content = {
        "agent_id": found.agent_id,
        "agent_slug": found.agent_slug,
        "environment": found.environment,
        "resolved": to_body(found.plain, explain=True),
        "rules": rules,
        "experiment": experiment,
    }
    etag = content_hash(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    body = BundleRead(object="resolution_bundle", etag=etag, **content).model_dump(exclude_unset=True)
    return json.dumps(body, separators=(",", ":")).encode(), etag, found.agent_id
