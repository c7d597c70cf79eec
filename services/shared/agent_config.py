"""The agent config (its one definition lives in the SDK, `agent_variants.config`, and is
re-exported here) and `resolve_agent_config`, resolution in one SQL statement for agents
that hold a database connection; the HTTP service uses the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_variants.config import (
    BASE,
    CONFIG_FIELDS,
    CONSISTENCY_FIELDS,
    DEFAULTS,
    INTEGER_FIELDS,
    NUMBER_FIELDS,
    STRING_FIELDS,
    AgentNotFound,
    ResolvedAgentConfig,
    Source,
    VariantNotFound,
    coalesce,
    consistency_violation,
)

from services.shared.identifiers import ref_key

if TYPE_CHECKING:  # the driver is imported lazily so the dataclass needs no SQLAlchemy
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "BASE",
    "CONFIG_FIELDS",
    "CONSISTENCY_FIELDS",
    "DEFAULTS",
    "INTEGER_FIELDS",
    "NUMBER_FIELDS",
    "STRING_FIELDS",
    "AgentNotFound",
    "ResolvedAgentConfig",
    "Source",
    "VariantNotFound",
    "coalesce",
    "consistency_violation",
    "resolve_agent_config",
]


async def resolve_agent_config(
    conn: AsyncConnection | asyncpg.Connection, agent: str, *, variant: str | None = None
) -> ResolvedAgentConfig:
    """Resolve an agent's config in one database round trip.

    `conn` is a SQLAlchemy AsyncConnection, or (without `variant`) an asyncpg connection.

    `agent` is an id or a slug. Without `variant`, the active variant (if any) is
    coalesced over the base config; with it, that variant is, as if it were active
    (`source="preview"`); `variant="base"` previews the base config alone. Raises
    `AgentNotFound` or `VariantNotFound`.
    """
    from services.shared import resolution_query  # lazy: keeps SQLAlchemy out of SDK imports

    agent_key = ref_key("agent", agent)
    if agent_key is None:
        raise AgentNotFound(agent)  # malformed: no row can match, so ask nothing
    variant_key = None
    if variant == BASE:
        variant_key = BASE
    elif variant is not None:
        variant_key = ref_key("variant", variant)
        if variant_key is None:
            # Still report an unknown agent first, as the query would.
            if not await resolution_query.agent_exists(conn, agent_key, agent):
                raise AgentNotFound(agent)
            raise VariantNotFound(variant)
    params = {"agent": agent}
    if variant is not None and variant_key != BASE:
        params["variant"] = variant
    row = await resolution_query.fetch(conn, agent_key, variant_key, params)
    if row is None:
        raise AgentNotFound(agent)
    return resolution_query.to_resolved(row, preview=variant is not None, variant=variant)
