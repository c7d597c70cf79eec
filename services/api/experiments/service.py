"""Experiment use cases: create (draft), read, list, patch, delete, start, stop.

Every write locks the agent's row first (like variant writes), so the checks below (one
running experiment, variants that exist, consistent arms) see a state nobody else is
changing; the partial unique index `uq_experiments_one_running_per_agent_environment`
still guarantees the running rule (one per agent and environment) on its own. Every change
is recorded as a revision of the agent, in the experiment's environment. A request sees and
changes the experiments of its environment only (`?environment=`, or the body's on create).

At start every arm's resolved config is snapshotted into the stored arm (`snapshot`): a
running experiment serves exactly those configs, whatever later happens to the base config
or the variants (contract 1.1), so its results compare what it started with and no later
write can make an arm serve a config that breaks the rule.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import slugs
from services.api.consistency import check_model_limits, check_resolved
from services.api.db import Database, constraint_name
from services.api.environments import repository as environments
from services.api.exceptions import (
    DuplicateArm,
    ExperimentNotDraft,
    ExperimentRunning,
    FieldError,
    InvalidStatus,
    NotFound,
    ValidationFailed,
)
from services.api.experiments import repository
from services.api.experiments.schemas import (
    ArmIn,
    ExperimentCreate,
    ExperimentUpdate,
    experiment_read,
    guardrail_figures_read,
)
from services.api.rollouts import figures as rollout_figures
from services.api.rollouts import repository as rollouts
from services.api.schemas import set_fields
from services.api.slugs import LIVE
from services.api.variants import repository as variants
from services.api.variants.schemas import overrides_of
from services.api.writes import announce
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.api.writes.locks import LockedAgent, find_agent, lock_agent
from services.api.writes.revisions import record
from services.shared.agent_config import BASE, CONFIG_FIELDS, coalesce, coalesce_keyed
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id

# The statuses in which a split serves its arms, and those that end it.
LIVE_STATUSES = frozenset({"running", "paused"})
FINAL_STATUSES = frozenset({"stopped", "completed", "rolled_back"})
DEFAULT_MIN_OUTCOMES = 100


def rollout_arms(variant_id: str, percent: int) -> list[dict[str, Any]]:
    """A rollout's two arms at `percent`: arm 0 `live` (what the environment serves at the
    start), arm 1 the variant. Their weights lay the buckets out as the contract's rollout
    does: arm 0 owns [0, 10000 - 100p), arm 1 the rest (`assignment.arm_sizes` gives weights
    summing to 10,000 exactly those sizes), so every path that serves weighted arms serves a
    rollout's step as it is, and a subject moved to arm 1 stays there as the percent rises."""
    return [
        {"arm": 0, "variant_id": None, "weight": 10_000 - 100 * percent, "live": True},
        {"arm": 1, "variant_id": variant_id, "weight": 100 * percent},
    ]


def at_percent(arms: list[dict[str, Any]], percent: int) -> list[dict[str, Any]]:
    """Started arms (with their snapshots) re-weighted for a step's percent."""
    return [{**arms[0], "weight": 10_000 - 100 * percent}, {**arms[1], "weight": 100 * percent}]


async def shown(conn: AsyncConnection, row: RowMapping) -> dict[str, Any]:
    """The experiment object; a started rollout's with its `progress`, as of now."""
    progress = None
    if row["kind"] == "rollout" and row["step"] is not None:
        now: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
        progress = rollout_figures.progress(row, await rollouts.step_totals(conn, row["id"]), now)
    return experiment_read(row, progress)


async def require(conn: AsyncConnection, agent_id: str, ref: str, *, environment_id: str) -> RowMapping:
    """The agent's experiment in the environment; 404 when it has none by that id or slug there."""
    row = await repository.get(conn, agent_id, ref, environment_id=environment_id)
    if row is None:
        raise NotFound("Experiment", ref)
    return row


async def _arms(
    conn: AsyncConnection, agent_id: str, arms: list[ArmIn], *, environment_id: str
) -> list[dict[str, Any]]:
    """The arms as stored: each variant reference looked up (404 naming `arms[i].variant`);
    a `live` arm is marked, its variant chosen at start."""
    stored: list[dict[str, Any]] = []
    seen: dict[str | None, int] = {}
    for index, arm in enumerate(arms):
        variant_id, key = None, None
        if arm.variant == LIVE:
            key = LIVE
        elif arm.variant != BASE:
            row = await variants.get(conn, agent_id, arm.variant, environment_id=environment_id)
            if row is None:
                raise NotFound("Variant", arm.variant, param=f"arms[{index}].variant")
            variant_id = key = row["id"]
        if key in seen:  # the same variant by id and by slug, or `live` twice
            message = f"the same {'arm' if key == LIVE else 'variant'} as arms[{seen[key]}].variant"
            raise ValidationFailed(
                f"Invalid request: arms[{index}].variant: {message}",
                errors=[FieldError(f"arms[{index}].variant", message)],
            )
        seen[key] = index
        stored.append(
            {"arm": index, "variant_id": variant_id, "weight": arm.weight, **({"live": True} if key == LIVE else {})}
        )
    return stored


def _as_created(arm: dict[str, Any]) -> tuple[Any, ...]:
    """An arm as its experiment was created with it: what a patch compares (a started arm
    also holds its snapshot, and a `live` one the variant it took)."""
    live = bool(arm.get("live"))
    return arm["arm"], live, None if live else arm["variant_id"], arm["weight"]


async def _snapshots(
    conn: AsyncConnection, agent: LockedAgent, arms: list[dict[str, Any]], *, environment_id: str
) -> list[dict[str, Any]]:
    """The arms as a started experiment serves them: each with its resolved config frozen
    (`snapshot`), so what later happens to the base config or the variants changes nothing
    it serves. A `live` arm takes the variant active now in the experiment's environment.
    Each must pass the rule, and no two may serve the same config source (409 `duplicate_arm`)."""
    active = await variants.active(conn, agent.id, environment_id=environment_id)
    started: list[dict[str, Any]] = []
    for arm in arms:
        variant = active if arm.get("live") else None
        if not arm.get("live") and arm["variant_id"] is not None:
            variant = await variants.get(conn, agent.id, arm["variant_id"], environment_id=environment_id)
            if variant is None:  # deleting a variant an arm names is refused; kept as a guard
                raise NotFound("Variant", arm["variant_id"], param=f"arms[{arm['arm']}].variant")
        overrides = overrides_of(variant) if variant is not None else {}
        check_resolved(
            agent.config,
            overrides=overrides,
            subject=f"config of arm {arm['arm']}",
            params_schema=agent.params_schema,
        )
        await check_model_limits(conn, [(agent.config, overrides, f"config of arm {arm['arm']}")])
        keyed, given = coalesce_keyed(overrides, agent.config)
        snapshot = {
            "variant_id": variant["id"] if variant is not None else None,
            "variant_slug": variant["slug"] if variant is not None else None,
            "overridden": sorted({name for name in overrides if name in CONFIG_FIELDS} | given),
            "config": {**coalesce(overrides, agent.config), **keyed},
        }
        started.append({**arm, "variant_id": snapshot["variant_id"], "snapshot": snapshot})
    sources: dict[str | None, int] = {}
    for arm in started:
        other = sources.setdefault(arm["variant_id"], arm["arm"])
        if other != arm["arm"]:
            live = arm if arm.get("live") else started[other]
            served = f"variant '{live['snapshot']['variant_slug']}'" if arm["variant_id"] else "the base config"
            message = f"arms {other} and {arm['arm']} would both serve {served}"
            raise DuplicateArm(
                f"Arm {live['arm']} is live, and {message}; change an arm or activate another variant",
                errors=[FieldError(f"arms[{live['arm']}].variant", message)],
            )
    return started


async def create_experiment(
    db: Database,
    agent_ref: str,
    data: ExperimentCreate,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    named: bool = False,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    """A draft in the body's `environment`, else the request's (`environment`; `named` when
    the request named it with `?environment=`: a body naming another is 422)."""
    experiment_id = new_id("experiment")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        if data.environment is not None:
            chosen = await environments.hold(conn, data.environment)
            if named and chosen["id"] != env["id"]:
                message = f"names '{chosen['slug']}', but ?environment= names '{env['slug']}'"
                raise ValidationFailed(
                    f"Invalid request: environment {message}", errors=[FieldError("environment", message)]
                )
            env = chosen
        rollout: dict[str, Any] = {}
        if data.kind == "rollout":
            assert data.variant is not None and data.steps is not None  # ExperimentCreate checked it
            variant = await variants.get(conn, agent.id, data.variant, environment_id=env["id"])
            if variant is None:
                raise NotFound("Variant", data.variant, param="variant")
            steps = [step.model_dump() for step in data.steps]
            arms = rollout_arms(variant["id"], steps[0]["percent"])
            rollout = {
                "steps": steps,
                "guardrails": [guardrail.model_dump() for guardrail in data.guardrails or []],
                "min_outcomes": data.min_outcomes if data.min_outcomes is not None else DEFAULT_MIN_OUTCOMES,
            }
        else:
            assert data.arms is not None  # ExperimentCreate checked it
            arms = await _arms(conn, agent.id, data.arms, environment_id=env["id"])
        stem = slugs.slugify(data.name) or "experiment"
        slug = await slugs.first_free(stem, lambda chunk: repository.slugs_taken(conn, agent.id, chunk))
        at = agent.at
        await repository.insert_one(
            conn,
            {
                "id": experiment_id,
                "agent_id": agent.id,
                "environment_id": env["id"],
                "slug": slug,
                "name": data.name,
                "description": data.description or "",
                "status": "draft",
                "salt": data.salt if data.salt is not None else experiment_id,
                "arms": arms,
                "created_at": at,
                "updated_at": at,
                "kind": data.kind,
                **rollout,
            },
        )
        experiment = await shown(conn, await require(conn, agent.id, experiment_id, environment_id=env["id"]))
        await record(
            conn,
            agent_id=agent.id,
            target="experiment",
            target_id=experiment_id,
            action="create",
            before=None,
            after=experiment,
            context=context,
            at=at,
            environment_id=env["id"],
            shared=False,
        )
        await announce.agent_changed(conn, agent.id, env)
        return experiment

    return await db.transaction(unit)


async def get_experiment(
    db: Database, agent_ref: str, ref: str, *, environment: str = PRODUCTION_ENVIRONMENT_ID
) -> dict[str, Any]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        env = await environments.named(conn, environment)
        return await shown(conn, await require(conn, agent.id, ref, environment_id=env["id"]))


async def list_experiments(
    db: Database, agent_ref: str, *, after: str | None, limit: int, status: str | None, environment: str
) -> list[dict[str, Any]]:
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        env = await environments.named(conn, environment)
        rows = await repository.list_page(
            conn, agent.id, after=after, limit=limit, status=status, environment_id=env["id"]
        )
        return [await shown(conn, row) for row in rows]


async def write_change(
    conn: AsyncConnection,
    agent: LockedAgent,
    row: RowMapping,
    changes: dict[str, Any],
    *,
    action: str,
    context: WriteContext,
) -> dict[str, Any]:
    try:
        await repository.update_fields(conn, row["id"], changes, at=agent.at)
    except IntegrityError as error:
        if constraint_name(error) == "uq_experiments_one_running_per_agent_environment":
            raise _running_elsewhere(row["environment"]) from None
        raise
    after = await shown(conn, await require(conn, agent.id, row["id"], environment_id=row["environment_id"]))
    await record(
        conn,
        agent_id=agent.id,
        target="experiment",
        target_id=row["id"],
        action=action,
        before=await shown(conn, row),
        after=after,
        context=context,
        at=agent.at,
        environment_id=row["environment_id"],
        shared=False,
    )
    return after


def _running_elsewhere(environment: str) -> ExperimentRunning:
    return ExperimentRunning(f"Another experiment of this agent is running in '{environment}'; stop it first")


async def update_experiment(
    db: Database,
    agent_ref: str,
    ref: str,
    patch: ExperimentUpdate,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    sent = set_fields(patch)

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="experiment")
        changes: dict[str, Any] = {}
        if "name" in sent and sent["name"] != row["name"]:
            changes["name"] = sent["name"]
        if "description" in sent and (sent["description"] or "") != row["description"]:
            changes["description"] = sent["description"] or ""
        if "salt" in sent and sent["salt"] != row["salt"]:
            changes["salt"] = sent["salt"]
        if "arms" in sent and row["kind"] == "rollout":
            message = "a rollout's arms are derived (live, then its variant): they cannot be set"
            raise ValidationFailed(f"Invalid request: arms: {message}", errors=[FieldError("arms", message)])
        if "arms" in sent:
            arms = await _arms(conn, agent.id, patch.arms, environment_id=env["id"])
            if [_as_created(arm) for arm in arms] != [_as_created(arm) for arm in row["arms"]]:
                changes["arms"] = arms
        frozen = sorted({"arms", "salt"} & changes.keys())
        if frozen and row["status"] != "draft":
            raise ExperimentNotDraft(
                f"Experiment '{ref}' is {row['status']}: its {' and '.join(frozen)} change only while it is a draft"
            )
        if not changes:
            return await shown(conn, row)
        after = await write_change(conn, agent, row, changes, action="update", context=context)
        await announce.agent_changed(conn, agent.id, env)
        return after

    return await db.transaction(unit)


async def delete_experiment(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> None:
    async def unit(conn: AsyncConnection) -> None:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="experiment")
        if row["status"] != "draft":
            raise ExperimentNotDraft(f"Experiment '{ref}' is {row['status']}; only drafts can be deleted")
        await repository.delete_one(conn, row["id"])
        await record(
            conn,
            agent_id=agent.id,
            target="experiment",
            target_id=row["id"],
            action="delete",
            before=await shown(conn, row),
            after=None,
            context=context,
            at=agent.at,
            environment_id=env["id"],
            shared=False,
        )
        await announce.agent_changed(conn, agent.id, env)

    await db.transaction(unit)


async def start_experiment(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict:
    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="experiment")
        if row["status"] in LIVE_STATUSES:
            return await shown(conn, row)  # like activating the active variant: a no-op
        if row["status"] in FINAL_STATUSES:
            raise InvalidStatus(f"Experiment '{ref}' is {row['status']}; it cannot start again")
        other = await repository.running(conn, agent.id, environment_id=env["id"])
        if other is not None:
            raise ExperimentRunning(
                f"Experiment '{other['slug']}' of this agent is running in '{env['slug']}'; stop it first"
            )
        arms = await _snapshots(conn, agent, row["arms"], environment_id=env["id"])
        changes: dict[str, Any] = {"status": "running", "started_at": agent.at, "arms": arms}
        if row["kind"] == "rollout":
            changes |= {"step": 0, "step_started_at": agent.at}
        after = await write_change(conn, agent, row, changes, action="start", context=context)
        await announce.agent_changed(conn, agent.id, env)
        return after

    return await db.transaction(unit)


async def stop_experiment(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict:
    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="experiment")
        if row["status"] == "stopped":
            return await shown(conn, row)
        if row["status"] not in LIVE_STATUSES:
            raise InvalidStatus(f"Experiment '{ref}' is {row['status']}; only a running or paused split can be stopped")
        after = await write_change(
            conn, agent, row, {"status": "stopped", "stopped_at": agent.at}, action="stop", context=context
        )
        await announce.agent_changed(conn, agent.id, env)
        return after

    return await db.transaction(unit)


async def pause_or_resume(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    pause: bool,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    context: WriteContext = NO_CONTEXT,
) -> dict[str, Any]:
    """`POST .../pause` and `.../resume`, for rollouts only (409 `invalid_status` otherwise):
    a paused rollout keeps serving and guarding its step but does not advance. Pausing a
    paused rollout, or resuming a running one, changes nothing."""
    wanted, action = ("paused", "pause") if pause else ("running", "resume")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        env = await environments.hold(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        context.check_version(row["version"], what="experiment")
        if row["kind"] != "rollout":
            raise InvalidStatus(f"Experiment '{ref}' is not a rollout; only rollouts {action}")
        if row["status"] == wanted:
            return await shown(conn, row)
        if row["status"] not in LIVE_STATUSES:
            raise InvalidStatus(f"Rollout '{ref}' is {row['status']}; only a running or paused rollout can {action}")
        after = await write_change(
            conn, agent, row, {"status": wanted, "status_reason": None}, action=action, context=context
        )
        await announce.agent_changed(conn, agent.id, env)
        return after

    return await db.transaction(unit)


async def guardrail_history(
    db: Database,
    agent_ref: str,
    ref: str,
    *,
    after: int | None,
    limit: int,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
) -> list[dict[str, Any]]:
    """A page of the rollout's guardrail figures, newest first (none for an experiment)."""
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref, archived=True)
        env = await environments.named(conn, environment)
        row = await require(conn, agent.id, ref, environment_id=env["id"])
        return [
            guardrail_figures_read(one)
            for one in await rollouts.history_page(conn, row["id"], after=after, limit=limit)
        ]
