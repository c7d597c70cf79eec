"""The agent config (its one definition lives in the SDK, `agent_variants.config`, and is
re-exported here) and `resolve_agent_config`, resolution in one SQL statement for agents
that hold a database connection; the HTTP service uses the same function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from agent_variants.assignment import assign
from agent_variants.config import (
    BASE,
    CONFIG_FIELDS,
    CONSISTENCY_FIELDS,
    DEFAULTS,
    DISABLED_TOOL,
    INTEGER_FIELDS,
    KEYED_FIELDS,
    NUMBER_FIELDS,
    PARAMS_MAX_BYTES,
    PARAMS_MAX_KEYS,
    RESOLVED_FIELDS,
    STRING_FIELDS,
    TOOL_NAME_PATTERN,
    TOOLS_MAX,
    AgentNotFound,
    ResolvedAgentConfig,
    Source,
    VariantNotFound,
    coalesce,
    coalesce_keyed,
    consistency_violation,
)
from agent_variants.rules import first_match

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, ref_key

if TYPE_CHECKING:  # the driver is imported lazily so the dataclass needs no SQLAlchemy
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "BASE",
    "CONFIG_FIELDS",
    "CONSISTENCY_FIELDS",
    "DEFAULTS",
    "DISABLED_TOOL",
    "INTEGER_FIELDS",
    "KEYED_FIELDS",
    "NUMBER_FIELDS",
    "PARAMS_MAX_BYTES",
    "PARAMS_MAX_KEYS",
    "RESOLVED_FIELDS",
    "STRING_FIELDS",
    "TOOLS_MAX",
    "TOOL_NAME_PATTERN",
    "AgentNotFound",
    "EnvironmentNotFound",
    "ResolvedAgentConfig",
    "Source",
    "VariantNotFound",
    "arm_config",
    "choose",
    "coalesce",
    "coalesce_keyed",
    "consistency_violation",
    "resolve_agent_config",
]


class EnvironmentNotFound(LookupError):
    """No environment has that id or slug."""

    def __init__(self, environment: str) -> None:
        super().__init__(f"Environment '{environment}' not found")
        self.environment = environment


Choice = tuple[Literal["rule"], Mapping[str, Any]] | tuple[Literal["experiment"], int] | tuple[Literal["plain"], None]


def choose(
    rules: Sequence[Mapping[str, Any]],
    experiment: tuple[str, Sequence[int]] | None,
    *,
    subject: str | None,
    attributes: Mapping[str, Any] | None,
) -> Choice:
    """Contract 1.1's resolution order in an environment, given its rule set and its running
    experiment's (salt, weights): (1) the first rule whose conditions all hold for the
    context, (2) with a subject, the subject's arm, (3) the plain resolution (the active
    variant, else the base config). Every path that resolves a context asks this."""
    rule = first_match(rules, subject=subject, attributes=attributes) if rules else None
    if rule is not None:
        return ("rule", rule)
    if subject is not None and experiment is not None:
        return ("experiment", assign(experiment[0], subject, experiment[1]))
    return ("plain", None)


def arm_config(
    experiment_id: str,
    arm: Mapping[str, Any],
    *,
    agent_id: str,
    agent_slug: str | None,
    environment: str | None,
    source: Source = "experiment",
) -> ResolvedAgentConfig | None:
    """A started arm's resolved config from its snapshot, or None for an arm started before
    snapshots existed (it resolves as a preview of its variant, as it always did)."""
    snapshot = arm.get("snapshot")
    if snapshot is None:
        return None
    return ResolvedAgentConfig(
        agent_id=agent_id,
        variant_id=snapshot["variant_id"],
        agent_slug=agent_slug,
        variant_slug=snapshot["variant_slug"],
        source=source,
        experiment_id=experiment_id,
        arm=arm["arm"],
        environment=environment,
        overridden=frozenset(snapshot["overridden"]),
        **snapshot["config"],
    )


async def fetch_row(
    conn: AsyncConnection | asyncpg.Connection, agent: str, *, environment: str, variant: str | None = None
) -> Any:
    """The resolution statement's row for the agent in the environment (by id or slug): the
    active variant's, or with `variant` that one's (`base`: none). Raises `AgentNotFound`,
    `EnvironmentNotFound`, or `VariantNotFound` for a `variant` the agent lacks."""
    from services.shared import resolution_query as query

    agent_key = ref_key("agent", agent)
    if agent_key is None:
        raise AgentNotFound(agent)  # malformed: no row can match, so ask nothing
    environment_key = ref_key("environment", environment)
    variant_key = None
    if variant == BASE:
        variant_key = BASE
    elif variant is not None:
        variant_key = ref_key("variant", variant)
    # A malformed name (a NUL, say) must not reach the database, which refuses it (an error,
    # not "no such environment"): it is sent as "", which names no environment either.
    params = {"agent": agent, "environment": environment if environment_key is not None else ""}
    if variant_key not in (None, BASE):
        params["variant"] = variant  # type: ignore[assignment]  # not None: variant_key is set
    # A malformed environment or variant name matches nothing: ask with a form that still
    # reports an unknown agent first, as the statement would.
    form = (agent_key, environment_key or "id", variant_key if variant is None or variant_key else BASE)
    row = await query.fetch(conn, form, params)
    if row is None:
        raise AgentNotFound(agent)
    if environment_key is None or row[4] is None:
        raise EnvironmentNotFound(environment)
    if variant is not None and (variant_key is None or (variant_key != BASE and row[2] is None)):
        raise VariantNotFound(variant)
    return row


async def resolve_agent_config(
    conn: AsyncConnection | asyncpg.Connection,
    agent: str,
    *,
    variant: str | None = None,
    environment: str | None = None,
    subject: str | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> ResolvedAgentConfig:
    """Resolve an agent's config: one database round trip, two or three when a subject or a
    rule is involved.

    `conn` is a SQLAlchemy AsyncConnection or an asyncpg connection.

    `agent` is an id or a slug; `environment` an id or a slug (default `production`). With
    `variant`, that variant is applied as if it were active (`source="preview"`;
    `variant="base"` previews the base config alone), and no context is considered.
    Otherwise the contract's resolution order for the context (`subject`, `attributes`):
    the first targeting rule that holds (`source="rule"`), the subject's arm of the running
    experiment (`"experiment"`), the active variant (`"variant"`), the base config
    (`"agent"`). Raises `AgentNotFound`, `EnvironmentNotFound` or `VariantNotFound`, and
    ValueError for a context the API would refuse.
    """
    from services.shared import resolution_query as query  # lazy: keeps SQLAlchemy out of SDK imports

    if variant is not None and (subject is not None or attributes):
        raise ValueError("a preview (variant) takes no subject or attributes")
    environment = environment if environment is not None else PRODUCTION_ENVIRONMENT_ID
    row = await fetch_row(conn, agent, environment=environment, variant=variant)
    if variant is not None:
        return query.to_resolved(row, source="preview", variant=variant)
    agent_id, environment_id = row[0], row[4]
    rules = query.rules_of(row)
    experiment = None
    if subject is not None:
        running = await query.fetch(conn, query.RUNNING, {"agent": agent_id, "environment": environment_id})
        if running is not None:
            experiment = (running[0], running[1], query.json_value(running[2]), running[3])
    split = (experiment[1], [arm["weight"] for arm in experiment[2]]) if experiment is not None else None
    kind, chosen = choose(rules, split, subject=subject, attributes=attributes)
    if kind == "rule":
        assert isinstance(chosen, Mapping)
        served = await fetch_row(conn, agent_id, environment=environment_id, variant=chosen["serve"]["variant"])
        return query.to_resolved(served, source="rule", rule_id=chosen["id"])
    if kind == "experiment":
        assert experiment is not None and isinstance(chosen, int)
        arm = experiment[2][chosen]
        source: Source = "rollout" if experiment[3] == "rollout" else "experiment"
        resolved = arm_config(
            experiment[0], arm, agent_id=agent_id, agent_slug=row[1], environment=row[5], source=source
        )
        if resolved is not None:
            return resolved
        legacy = await fetch_row(conn, agent_id, environment=environment_id, variant=arm["variant_id"] or BASE)
        return query.to_resolved(legacy, source="experiment", experiment_id=experiment[0], arm=arm["arm"])
    return query.to_resolved(row, source="variant")
