"""Everything that decides what an agent serves in one environment, read together: the
plain resolution (active variant, else base), the rule set with each rule's served config,
and the running experiment with each arm's. Any context resolves from it without another
query (`Plan.pick`, the contract's order through `agent_config.choose`), which is what the
cache keeps for subjects and attributes and what a bundle sends to the SDKs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from services.shared import resolution_query as query
from services.shared.agent_config import (
    BASE,
    ResolvedAgentConfig,
    Source,
    arm_config,
    choose,
    fetch_row,
    resolve_agent_config,
)


@dataclass(frozen=True, slots=True)
class Plan:
    agent_id: str
    agent_slug: str | None
    environment_id: str
    environment: str  # its slug
    plain: ResolvedAgentConfig
    # The rule set in order, each rule with the config it serves.
    rules: tuple[Mapping[str, Any], ...]
    ruled: tuple[ResolvedAgentConfig, ...]
    # The running experiment (id, salt, arms as stored) and each arm's config, or None.
    experiment: Mapping[str, Any] | None
    arms: tuple[ResolvedAgentConfig, ...]

    @property
    def split(self) -> tuple[str, tuple[int, ...]] | None:
        if self.experiment is None:
            return None
        return self.experiment["salt"], tuple(arm["weight"] for arm in self.experiment["arms"])

    def pick(self, subject: str | None, attributes: Mapping[str, Any] | None) -> int:
        """Which config the context gets, as an index into `configs`."""
        kind, chosen = choose(self.rules, self.split, subject=subject, attributes=attributes)
        if kind == "rule":
            return next(index for index, rule in enumerate(self.rules) if rule is chosen)
        if kind == "experiment":
            assert isinstance(chosen, int)
            return len(self.rules) + chosen
        return len(self.rules) + len(self.arms)

    @property
    def configs(self) -> tuple[ResolvedAgentConfig, ...]:
        """Every config the plan can serve: the rules', the arms', then the plain one."""
        return (*self.ruled, *self.arms, self.plain)


async def build(conn: Any, agent: str, environment: str) -> Plan:
    """The plan of the agent (id or slug) in the environment (id or slug), read on `conn`
    (one snapshot, so it never mixes two states). Raises `AgentNotFound` or
    `EnvironmentNotFound`."""
    row = await fetch_row(conn, agent, environment=environment)
    agent_id, agent_slug, environment_id, environment_slug = row[0], row[1], row[4], row[5]
    plain = query.to_resolved(row, source="variant")
    rules = tuple(query.rules_of(row))
    ruled = []
    for rule in rules:
        served = await resolve_agent_config(
            conn, agent_id, variant=rule["serve"]["variant"], environment=environment_id
        )
        ruled.append(replace(served, source="rule", rule_id=rule["id"]))
    running = await query.fetch(conn, query.RUNNING, {"agent": agent_id, "environment": environment_id})
    experiment = None
    arms: tuple[ResolvedAgentConfig, ...] = ()
    if running is not None:
        experiment = {
            "id": running[0],
            "salt": running[1],
            "arms": query.json_value(running[2]),
            "kind": running[3],
            "status": running[4],
            "agent_id": agent_id,
            "environment_id": environment_id,
            "environment": environment_slug,
        }
        arms = await arm_configs(conn, experiment, agent_slug=agent_slug)
    return Plan(
        agent_id=agent_id,
        agent_slug=agent_slug,
        environment_id=environment_id,
        environment=environment_slug,
        plain=plain,
        rules=rules,
        ruled=tuple(ruled),
        experiment=experiment,
        arms=arms,
    )


async def arm_configs(conn: Any, experiment: Any, *, agent_slug: str | None) -> tuple[ResolvedAgentConfig, ...]:
    """Each arm's resolved config, in arm order, as the experiment serves it: the snapshot
    taken at its start. (An experiment not started, or started before snapshots existed,
    has none: its arms resolve as they would now in its environment.) `experiment` is an
    experiment row with its `environment` slug (the console shows every experiment's arms)."""
    arms = []
    for arm in experiment["arms"]:
        source: Source = "rollout" if experiment.get("kind") == "rollout" else "experiment"
        resolved = arm_config(
            experiment["id"],
            arm,
            agent_id=experiment["agent_id"],
            agent_slug=agent_slug,
            environment=experiment["environment"],
            source=source,
        )
        if resolved is None:
            preview = await resolve_agent_config(
                conn,
                experiment["agent_id"],
                variant=arm["variant_id"] or BASE,
                environment=experiment["environment_id"],
            )
            resolved = replace(preview, source=source, experiment_id=experiment["id"], arm=arm["arm"])
        arms.append(resolved)
    return tuple(arms)
