"""Storing outcomes, and what they add up to: usage per variant, results per arm.

Outcomes arrive in batches of up to 1,000 and go in with one COPY (asyncpg's binary
copy), so ingestion costs one round trip per batch, not one per row. The same transaction
adds them to their experiment's arm totals and latency bins (triggers on outcomes) and to
the agent's usage totals (`repository.add_to_totals`), so /usage and /results read a few
rows, not every outcome (`repository`); means, variances, percentiles of large arms and the
final statistics are computed from those (`figures`, which the console shares).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database, sqlstate
from services.api.environments import repository as environments
from services.api.exceptions import FieldError, NotFound
from services.api.experiments import repository as experiment_repository
from services.api.outcomes import repository
from services.api.outcomes.figures import results_of, usage_of
from services.api.outcomes.schemas import OutcomeIn
from services.api.writes.locks import find_agent
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

FOREIGN_KEY_VIOLATION = "23503"


async def store(db: Database, agent_ref: str, outcomes: list[OutcomeIn], *, batch: bool) -> int:
    """Store every outcome or none. An `experiment_id` must name an experiment of this
    agent (404 naming each item that does not); a `variant_id` is kept as reported, since
    an agent may report runs of a variant deleted meanwhile."""

    async def unit(conn: AsyncConnection) -> int:
        agent = await find_agent(conn, agent_ref)
        named = {o.experiment_id for o in outcomes if o.experiment_id is not None}
        if named:
            unknown = named - await experiment_repository.existing(conn, agent.id, named)
            if unknown:
                errors = [
                    FieldError(
                        f"data[{i}].experiment_id" if batch else "experiment_id",
                        f"Experiment '{o.experiment_id}' not found",
                    )
                    for i, o in enumerate(outcomes)
                    if o.experiment_id in unknown
                ]
                names = ", ".join(f"'{ref}'" for ref in sorted(unknown))
                error = NotFound(
                    "Experiment",
                    sorted(unknown)[0],
                    param=errors[0].param,
                    detail=f"Experiment {names} not found in agent '{agent_ref}'",
                )
                error.errors = errors
                raise error
        records = [
            (
                agent.id,
                o.variant_id,
                o.experiment_id,
                o.subject,
                o.input_tokens,
                o.output_tokens,
                o.latency_ms,
                o.cost_usd,
                o.success,
                o.score,
            )
            for o in outcomes
        ]
        try:
            await repository.insert_many(conn, records)
            await repository.add_to_totals(conn, agent.id, _sums(outcomes))
        except Exception as error:
            # The agent was purged after it was found (the batch takes no lock on it, so
            # ingestion never waits for the agent's writers): its rows are gone, say so.
            if (sqlstate(error) or getattr(error, "sqlstate", None)) == FOREIGN_KEY_VIOLATION:
                raise NotFound("Agent", agent_ref) from error
            raise
        return len(records)

    return await db.transaction(unit)


def _sums(outcomes: list[OutcomeIn]) -> dict[str, tuple[int, int, int]]:
    """The batch's (outcomes, input tokens, output tokens) per variant ("" for the base)."""
    sums: dict[str, tuple[int, int, int]] = {}
    for o in outcomes:
        n, inputs, outputs = sums.get(o.variant_id or "", (0, 0, 0))
        sums[o.variant_id or ""] = (n + 1, inputs + o.input_tokens, outputs + o.output_tokens)
    return sums


async def usage(db: Database, agent_ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)  # an archived agent's usage stays readable
        rows = await repository.usage_totals(conn, agent.id)
    return usage_of(rows)


async def results(
    db: Database, agent_ref: str, ref: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID
) -> dict[str, Any]:
    """The results of the agent's experiment in the environment."""
    # One snapshot: exact percentiles read the rows at the ranks the arm totals' counts give.
    async with db.snapshot() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)  # and its experiments' results
        env = await environments.named(conn, environment)
        experiment = await experiment_repository.get(conn, agent.id, ref, environment_id=env["id"])
        if experiment is None:
            raise NotFound("Experiment", ref)
        aggregates = await repository.arm_aggregates(conn, experiment["id"])
    return results_of(experiment, aggregates)
