"""What other environments serve now, for the rule on environment-bound API keys.

Contract 1.1: a bound key "may change shared definitions only when the change alters
nothing another environment serves now (else 403 `environment_forbidden`)". The base config
and the variants are shared; an environment serves its active variant (or the base config
when none is active) and the variant (or base) each of its targeting rules names. A running
experiment serves the snapshots it took at its start, which no later change alters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.exceptions import EnvironmentForbidden
from services.api.models import Activation, Environment, RuleSet, table_of
from services.shared.agent_config import BASE

activations = table_of(Activation)
environments = table_of(Environment)
rule_sets = table_of(RuleSet)


@dataclass(frozen=True, slots=True)
class Served:
    """One environment and the variant ids it serves now (None: the base config alone)."""

    environment: str  # its slug
    variants: frozenset[str | None]


async def elsewhere(conn: AsyncConnection, agent_id: str, environment_id: str) -> list[Served]:
    """What every environment but `environment_id` serves of the agent now, by slug."""
    active = dict(
        (row.environment_id, row.variant_id)
        for row in await conn.execute(
            select(activations.c.environment_id, activations.c.variant_id).where(activations.c.agent_id == agent_id)
        )
    )
    ruled = {
        row.environment_id: row.rules
        for row in await conn.execute(
            select(rule_sets.c.environment_id, rule_sets.c.rules).where(rule_sets.c.agent_id == agent_id)
        )
    }
    served = []
    for row in await conn.execute(select(environments.c.id, environments.c.slug).order_by(environments.c.slug)):
        if row.id == environment_id:
            continue
        variants: set[str | None] = {active.get(row.id)}
        for rule in ruled.get(row.id) or ():
            served_variant = rule["serve"]["variant"]
            variants.add(None if served_variant == BASE else served_variant)
        served.append(Served(row.slug, frozenset(variants)))
    return served


def forbid(served: Iterable[Served], what: str) -> None:
    """403 `environment_forbidden` naming the first environment in `served`, if any."""
    for one in served:
        raise EnvironmentForbidden(
            f"The API key is bound to an environment, and {what} would change what environment "
            f"'{one.environment}' serves now; make this change with a key that is not bound"
        )
