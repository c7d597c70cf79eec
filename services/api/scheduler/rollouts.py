"""The rollout scheduler: every replica ticks about once a second; each due transition
(advance, complete, roll back, pause on a changed config) is performed by exactly one.

A tick lists the live rollouts, then for each takes its agent's row lock with `SKIP
LOCKED` (every write to an agent takes that lock first, so the lock order is the writes'):
a replica that finds the agent locked leaves it to whoever holds it, and a replica that
gets it reads the rollout as the lock left it, so a transition already made by another is
seen and never made twice. Each transition is one transaction with its revision and its
NOTIFY (`announce`): a replica killed in the middle leaves nothing half done, and the next
tick of any replica takes it up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import counters, failpoints
from services.api.db import Database
from services.api.diffs import resolved_values
from services.api.environments import repository as environments
from services.api.exceptions import DomainError
from services.api.experiments import repository as experiment_repository
from services.api.experiments import service as experiments
from services.api.models import Agent, table_of
from services.api.rollouts import figures, repository
from services.api.variants import repository as variant_repository
from services.api.variants import service as variants
from services.api.variants.schemas import overrides_of
from services.api.writes import announce
from services.api.writes.context import WriteContext
from services.api.writes.locks import LockedAgent, lock_agent

log = logging.getLogger(__name__)
agents = table_of(Agent)
# Figures are recorded for `guardrail_history` when they change, at most this often.
HISTORY_EVERY_SECONDS = 5.0


async def run_forever(db: Database, *, every_seconds: float) -> None:
    """Tick until cancelled; a failed tick is logged and the next one tries again."""
    while True:
        try:
            await tick(db)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the next tick retries; the transaction rolled back
            log.warning("rollout tick failed: %r", error)
        await asyncio.sleep(every_seconds)


async def tick(db: Database) -> list[str]:
    """One pass over the live rollouts; the transitions this replica made (`advance`,
    `complete`, `roll_back`, `pause`), for the logs and the tests."""
    async with db.read() as conn:
        live = await repository.live(conn)
    done = []
    for one in live:
        try:
            action = await db.transaction(functools.partial(_step, agent_id=one["agent_id"], experiment_id=one["id"]))
        except Exception as error:  # noqa: BLE001 - one rollout's trouble must not hold up the others
            log.warning("rollout %s: its tick failed: %r", one["id"], error)
            continue
        if action is not None:
            log.info("rollout %s: %s", one["id"], action)
            done.append(action)
            counters.split_transition(action)
    return done


async def _step(conn: AsyncConnection, *, agent_id: str, experiment_id: str) -> str | None:
    claimed = await conn.scalar(
        select(agents.c.id)
        .where(agents.c.id == agent_id, agents.c.archived_at.is_(None))
        .with_for_update(skip_locked=True, key_share=True)  # as `lock_agent`: outcome inserts do not hold it up
    )
    if claimed is None:
        return None  # another replica (or a write) holds the agent: its turn
    agent = await lock_agent(conn, agent_id)  # held already: reads the config and the instant
    row = await experiment_repository.by_id(conn, experiment_id)
    if row is None or row["status"] not in experiments.LIVE_STATUSES:
        return None  # ended since the list was read
    env = await environments.hold(conn, row["environment_id"])  # the writes' lock order: agent, then environment
    totals = await repository.step_totals(conn, experiment_id)
    progress = figures.progress(row, totals, agent.at)
    assert progress is not None
    await _record_history(conn, row, progress, agent.at)
    context = WriteContext(actor=f"rollout:{experiment_id}", api_key=await repository.starter_key(conn, experiment_id))
    breached = [guardrail for guardrail in progress["guardrails"] if guardrail["breached"]]
    if breached:
        reason = "; ".join(_breach(guardrail) for guardrail in breached)
        changes: dict[str, Any] = {"status": "rolled_back", "stopped_at": agent.at, "status_reason": reason}
        return await _transition(conn, agent, row, env, changes, "roll_back", context)
    due = agent.at >= row["step_started_at"] + _hold(row)
    if row["status"] != "running" or not due or progress["waiting_for"] is not None:
        return None
    if row["step"] + 1 < len(row["steps"]):
        percent = row["steps"][row["step"] + 1]["percent"]
        changes = {
            "step": row["step"] + 1,
            "step_started_at": agent.at,
            "arms": experiments.at_percent(row["arms"], percent),
            "status_reason": None,
        }
        return await _transition(conn, agent, row, env, changes, "advance", context)
    return await _complete(conn, agent, row, env, context)


def _hold(row: RowMapping) -> timedelta:
    return timedelta(seconds=row["steps"][row["step"]]["hold_seconds"])


def _breach(guardrail: dict[str, Any]) -> str:
    low, high = guardrail["cs"]
    return (
        f"{guardrail['metric']} got worse by more than {guardrail['max_degradation']:g}: the variant's difference "
        f"is {guardrail['estimate']:.4g} (95% confidence sequence [{low:.4g}, {high:.4g}], below "
        f"-{guardrail['max_degradation']:g}) over {guardrail['n'][1]} outcomes against {guardrail['n'][0]}"
    )


async def _complete(
    conn: AsyncConnection, agent: LockedAgent, row: RowMapping, env: RowMapping, context: WriteContext
) -> str:
    """The last step held: activate the variant in the environment, unless it no longer
    resolves as its snapshot (then pause, `config_changed`) or can no longer be served (a
    check refuses it now: pause, saying why)."""
    arm = row["arms"][1]
    variant = await variant_repository.get_by_id(conn, arm["variant_id"], environment_id=row["environment_id"])
    now = resolved_values(overrides_of(variant), agent.config) if variant is not None else None
    if now is None or any(now.get(name) != value for name, value in arm["snapshot"]["config"].items()):
        changed: dict[str, Any] = {"status": "paused", "status_reason": "config_changed"}
        return await _transition(conn, agent, row, env, changed, "pause", context)
    assert variant is not None
    try:
        async with conn.begin_nested():  # a refused check leaves the transaction usable
            await variants.set_active(
                conn,
                agent,
                row["environment_id"],
                variant,
                action="activate",
                context=context,
                target=variant,
                by_rollout=True,
            )
    except DomainError as refused:
        blocked: dict[str, Any] = {"status": "paused", "status_reason": f"cannot_activate: {refused.detail}"}
        return await _transition(conn, agent, row, env, blocked, "pause", context)
    changes: dict[str, Any] = {"status": "completed", "stopped_at": agent.at}
    return await _transition(conn, agent, row, env, changes, "complete", context)


async def _transition(
    conn: AsyncConnection,
    agent: LockedAgent,
    row: RowMapping,
    env: RowMapping,
    changes: dict[str, Any],
    action: str,
    context: WriteContext,
) -> str:
    await experiments.write_change(conn, agent, row, changes, action=action, context=context)
    await announce.agent_changed(conn, agent.id, env)
    failpoints.hit("rollout.before_commit")  # a test kills the acting replica here: nothing may be half done
    return action


async def _record_history(conn: AsyncConnection, row: RowMapping, progress: dict[str, Any], at: datetime) -> None:
    """The guardrails' figures, when they changed since the last record (at most every few seconds)."""
    if not progress["guardrails"]:
        return
    last = await repository.last_history(conn, row["id"])
    if last is not None:
        if last["guardrails"] == progress["guardrails"] and last["step"] == progress["step"]:
            return
        if (at - last["at"]).total_seconds() < HISTORY_EVERY_SECONDS and not any(
            guardrail["breached"] for guardrail in progress["guardrails"]
        ):
            return
    await repository.record_history(
        conn, row["id"], at=at, step=progress["step"], percent=progress["percent"], figures=progress["guardrails"]
    )
