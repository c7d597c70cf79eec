"""Storing outcomes, and what they add up to: usage per variant, results per arm.

Outcomes arrive in batches of up to 1,000 and go in with one COPY (asyncpg's binary
copy), so ingestion costs one round trip per batch, not one per row. The same transaction
adds them to their experiment's arm totals and latency bins (triggers on outcomes) and to
the agent's usage totals per environment (`repository.add_to_totals`), so /usage and /results read a few
rows, not every outcome (`repository`); means, variances, percentiles of large arms and the
final statistics are computed from those (`figures`, which the console shares).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal, Inexact
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import counters
from services.api.catalog import repository as catalog
from services.api.db import Database, sqlstate
from services.api.environments import repository as environments
from services.api.exceptions import EnvironmentForbidden, FieldError, NotFound, ValidationFailed
from services.api.experiments import repository as experiment_repository
from services.api.outcomes import repository
from services.api.outcomes.figures import results_of, usage_of
from services.api.outcomes.schemas import OutcomeIn
from services.api.principal import Principal, request_environment
from services.api.rollouts import repository as rollouts
from services.api.writes.locks import find_agent
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

FOREIGN_KEY_VIOLATION = "23503"


async def store(
    db: Database,
    agent_ref: str,
    outcomes: list[OutcomeIn],
    *,
    batch: bool,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    key: Principal | None = None,
) -> int:
    """Store every outcome or none, each in its environment: the one it names (by slug or
    id), else its experiment's, else the request's (`environment`, a ref from
    `deps.EnvironmentRef`: `?environment=`, the key's, else production's).

    Checked before anything is stored, every bad item named (`data[3].environment`): a key
    bound to an environment may name no other (403 `environment_forbidden`, before any
    lookup) nor report for an experiment of another; an `experiment_id` must name an
    experiment of this agent (404); an environment must exist (422; the request's own, 404
    `param` `environment`). A `variant_id` is kept as reported, since an agent may report
    runs of a variant deleted meanwhile."""
    refused = [i for i, o in enumerate(outcomes) if o.environment is not None and _refused(key, o.environment)]
    if refused:
        items = [(_param(i, "environment", batch), outcomes[i].environment) for i in refused]
        raise _forbidden(key, items, "in environment(s) {}")

    async def unit(conn: AsyncConnection) -> int:
        agent = await find_agent(conn, agent_ref)
        named = {o.experiment_id for o in outcomes if o.experiment_id is not None}
        in_environment = await experiment_repository.environments_of(conn, agent.id, named) if named else {}
        unknown = named - set(in_environment)
        if unknown:
            errors = [
                FieldError(_param(i, "experiment_id", batch), f"Experiment '{o.experiment_id}' not found")
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
        if key is not None and key.environment_id is not None:
            elsewhere = [
                (_param(i, "experiment_id", batch), o.experiment_id)
                for i, o in enumerate(outcomes)
                if o.experiment_id is not None and in_environment[o.experiment_id] != key.environment_id
            ]
            if elsewhere:
                raise _forbidden(key, elsewhere, "for experiment(s) {} of another environment")
        attributed = await _by_arm(conn, agent.id, outcomes, batch=batch)
        found = await environments.by_refs(conn, {environment} | {o.environment for o in attributed if o.environment})
        if environment not in found:
            raise NotFound("Environment", environment, param="environment")
        missing = [(i, o.environment) for i, o in enumerate(attributed) if o.environment and o.environment not in found]
        if missing:
            raise ValidationFailed(
                "Environment " + ", ".join(sorted({f"'{ref}'" for _, ref in missing})) + " not found",
                errors=[
                    FieldError(_param(i, "environment", batch), f"Environment '{ref}' not found") for i, ref in missing
                ],
            )
        default = str(found[environment]["id"])

        def place(o: OutcomeIn) -> str:
            if o.environment:
                return str(found[o.environment]["id"])
            if o.experiment_id is not None:
                return in_environment[o.experiment_id]
            return default

        places = [place(o) for o in attributed]
        # Contract 1.1: a cost left out is estimated from the prices of the model served.
        unpriced = {o.variant_id or "" for o in attributed if o.cost_usd is None}
        prices = await catalog.prices_served(conn, agent.id, unpriced - {""}) if unpriced else {}
        # An experiment's arm serves the config snapshotted at its start: its model prices it.
        served = await _snapshot_models(conn, agent.id, [o for o in attributed if o.cost_usd is None])
        snapshot_prices = await catalog.prices_of(conn, set(served.values()))
        estimates = [_estimate(o, prices, served, snapshot_prices) for o in attributed]
        # Contract 1.1: a live rollout's outcomes count toward its guardrails, per arm and step.
        live = await rollouts.live_states(conn, named) if named else {}
        steps = [_rollout_step(o, live) for o in attributed]
        records = [
            (
                agent.id,
                o.variant_id,
                o.experiment_id,
                environment_id,
                o.subject,
                o.input_tokens,
                o.output_tokens,
                o.latency_ms,
                o.cost_usd if estimate is None else float(estimate),
                o.success,
                o.score,
                estimate,
                step[1] if step is not None else None,
            )
            for o, environment_id, estimate, step in zip(attributed, places, estimates, steps, strict=True)
        ]
        try:
            await repository.insert_many(conn, records)
            await repository.add_to_totals(conn, agent.id, _sums(attributed, places, estimates))
            await rollouts.add(conn, _step_sums(attributed, steps, records))
        except Exception as error:
            # The agent was purged after it was found (the batch takes no lock on it, so
            # ingestion never waits for the agent's writers): its rows are gone, say so.
            if (sqlstate(error) or getattr(error, "sqlstate", None)) == FOREIGN_KEY_VIOLATION:
                raise NotFound("Agent", agent_ref) from error
            raise
        return len(records)

    stored = await db.transaction(unit)
    counters.outcomes_ingested(stored)
    return stored


async def _by_arm(conn: AsyncConnection, agent_id: str, outcomes: list[OutcomeIn], *, batch: bool) -> list[OutcomeIn]:
    """Contract 1.1: an outcome's `arm` wins over its `variant_id` for attribution: it counts
    for the config that arm of its experiment serves (422 naming `arm` for one it lacks)."""
    named = {o.experiment_id for o in outcomes if o.arm is not None and o.experiment_id is not None}
    if not named:
        return outcomes
    arms = await experiment_repository.arms_of(conn, agent_id, named)
    errors = [
        FieldError(
            _param(i, "arm", batch), f"experiment {o.experiment_id} has arms 0 to {len(arms[o.experiment_id]) - 1}"
        )
        for i, o in enumerate(outcomes)
        if o.arm is not None and o.experiment_id is not None and o.arm >= len(arms[o.experiment_id])
    ]
    if errors:
        raise ValidationFailed(
            "Invalid request: " + "; ".join(f"{e.param}: {e.message}" for e in errors), errors=errors
        )
    return [
        o
        if o.arm is None or o.experiment_id is None
        else o.model_copy(update={"variant_id": arms[o.experiment_id][o.arm]["variant_id"]})
        for o in outcomes
    ]


def _rollout_step(o: OutcomeIn, live: dict[str, tuple[int, dict[str, int]]]) -> tuple[int, int] | None:
    """(arm, step) of an outcome of a live rollout whose config is one of its arms, else None."""
    state = live.get(o.experiment_id or "")
    if state is None:
        return None
    step, arms = state
    arm = arms.get(o.variant_id or "")
    return None if arm is None else (arm, step)


def _step_sums(
    outcomes: list[OutcomeIn], steps: list[tuple[int, int] | None], records: list[tuple[Any, ...]]
) -> rollouts.Sums:
    """A batch's outcomes of live rollouts summed per (experiment, arm, step): what each
    guardrail's metric counts (`repository.COUNTERS` order). Cost is the stored one
    (reported, or estimated from the catalog)."""
    sums: rollouts.Sums = {}
    cost_at = repository.COLUMNS.index("cost_usd")
    for o, step, record in zip(outcomes, steps, records, strict=True):
        if step is None:
            continue
        assert o.experiment_id is not None
        row = sums.setdefault((o.experiment_id, *step), [0.0] * len(rollouts.COUNTERS))
        if o.success is not None:
            row[0] += 1
            row[1] += 1 if o.success else 0
        for index, value in enumerate((o.score, o.latency_ms, record[cost_at], o.output_tokens)):
            if value is not None:
                row[2 + 3 * index] += 1
                row[3 + 3 * index] += float(value)
                row[4 + 3 * index] += float(value) ** 2
    return {key: [int(v) if i in (0, 1, 2, 5, 8, 11) else v for i, v in enumerate(row)] for key, row in sums.items()}


def _param(index: int, field: str, batch: bool) -> str:
    return f"data[{index}].{field}" if batch else field


def _refused(key: Principal | None, ref: str) -> bool:
    """Whether a bound key names another environment than its own (`principal.request_environment`)."""
    try:
        request_environment(key, ref)
    except EnvironmentForbidden:
        return True
    return False


def _forbidden(key: Principal | None, items: Sequence[tuple[str, str | None]], what: str) -> EnvironmentForbidden:
    """403 `environment_forbidden` naming every item (param, what it named) a bound key may
    not use; `what` says what they name, `{}` standing for their names."""
    assert key is not None
    names = ", ".join(sorted({f"'{ref}'" for _, ref in items}))
    return EnvironmentForbidden(
        f"The API key '{key.name}' is bound to environment '{key.environment_slug}'; "
        f"it cannot report outcomes {what.format(names)}",
        errors=[FieldError(param, f"the key is bound to '{key.environment_slug}'") for param, _ in items],
    )


# Exact arithmetic: tokens (up to 10**12) times prices, divided by a power of ten, never rounds here.
_EXACT = Context(prec=100, traps=[Inexact])
_MILLION = Decimal(1_000_000)


def estimated_cost(
    input_tokens: int, output_tokens: int, input_usd_per_mtok: Decimal, output_usd_per_mtok: Decimal
) -> Decimal:
    """input_tokens × input price / 10**6 + output_tokens × output price / 10**6, exactly."""
    return _EXACT.add(
        _EXACT.divide(_EXACT.multiply(Decimal(input_tokens), input_usd_per_mtok), _MILLION),
        _EXACT.divide(_EXACT.multiply(Decimal(output_tokens), output_usd_per_mtok), _MILLION),
    )


async def _snapshot_models(
    conn: AsyncConnection, agent_id: str, outcomes: list[OutcomeIn]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(experiment id, variant key) -> (provider, name) of the model each started arm of the
    outcomes' experiments serves, from its snapshot."""
    named = {o.experiment_id for o in outcomes if o.experiment_id is not None}
    if not named:
        return {}
    served = {}
    for experiment_id, arms in (await experiment_repository.arms_of(conn, agent_id, named)).items():
        for arm in arms:
            snapshot = arm.get("snapshot")
            if snapshot is not None:
                config = snapshot["config"]
                served[(experiment_id, arm["variant_id"] or "")] = (config["model_provider"], config["model_name"])
    return served


def _estimate(
    o: OutcomeIn,
    prices: dict[str, tuple[Decimal, Decimal]],
    served: dict[tuple[str, str], tuple[str, str]] | None = None,
    snapshot_prices: dict[tuple[str, str], tuple[Decimal, Decimal]] | None = None,
) -> Decimal | None:
    """The estimated cost of an outcome reported without one, from the catalog's prices of the
    model its config serves: an experiment arm's snapshot when the outcome names a started
    experiment and one of its arms, else its `variant_id`'s now (null: the base); None when
    it reported its cost or the catalog prices no such model (or the variant no longer exists)."""
    if o.cost_usd is not None:
        return None
    model = (served or {}).get((o.experiment_id or "", o.variant_id or ""))
    if model is not None:
        price = (snapshot_prices or {}).get(model)
        return None if price is None else estimated_cost(o.input_tokens, o.output_tokens, *price)
    price = prices.get(o.variant_id or "")
    return None if price is None else estimated_cost(o.input_tokens, o.output_tokens, *price)


def reported_cost(cost_usd: float) -> Decimal:
    """A reported cost (a double) as the totals count it: its 15-significant-digit decimal,
    what PostgreSQL's numeric cast gives, as the arm totals' triggers read it."""
    return Decimal(f"{cost_usd:.15g}")


def _sums(outcomes: list[OutcomeIn], places: list[str], estimates: list[Decimal | None]) -> repository.Sums:
    """The batch's sums per environment and variant ("" for the base)."""
    sums: repository.Sums = {}
    for o, place, estimate in zip(outcomes, places, estimates, strict=True):
        key = (place, o.variant_id or "")
        was = sums.get(key, repository.Sum())
        cost = estimate if estimate is not None else reported_cost(o.cost_usd) if o.cost_usd is not None else 0
        sums[key] = repository.Sum(
            outcomes=was.outcomes + 1,
            input_tokens=was.input_tokens + o.input_tokens,
            output_tokens=was.output_tokens + o.output_tokens,
            cost_usd=_EXACT.add(was.cost_usd, cost),
            estimated_cost_usd=_EXACT.add(was.estimated_cost_usd, estimate or 0),
        )
    return sums


async def usage(db: Database, agent_ref: str, *, environment: str | None = None) -> dict[str, Any]:
    """The agent's usage in the environment this ref names (`deps.EnvironmentFilter`: 404
    `param` `environment` when unknown), or (None) summed over every environment."""
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)  # an archived agent's usage stays readable
        env = None if environment is None else await environments.named(conn, environment)
        rows = await repository.usage_totals(conn, agent.id, environment_id=None if env is None else env["id"])
    return usage_of(rows, None if env is None else env["slug"])


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
