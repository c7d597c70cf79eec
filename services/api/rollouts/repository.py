"""Queries of rollouts: their step totals, their guardrails' history, the live ones.
Functions take a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import (
    ROLLOUT_METRICS,
    Experiment,
    Revision,
    RolloutGuardrailHistory,
    RolloutStepTotal,
    table_of,
)

experiments = table_of(Experiment)
totals = table_of(RolloutStepTotal)
history = table_of(RolloutGuardrailHistory)
revisions = table_of(Revision)

# (experiment, arm, step) -> [judged, successes, score n, sum, sumsq, latency ..., cost ..., output ...]
Sums = dict[tuple[str, int, int], list[float]]
COUNTERS = ("judged", "successes", *(f"{m}_{part}" for m in ROLLOUT_METRICS for part in ("n", "sum", "sumsq")))

_ADD = text(
    "INSERT INTO rollout_step_totals AS t (experiment_id, arm, step, "
    + ", ".join(COUNTERS)
    + ") SELECT * FROM unnest(CAST(:experiments AS text[]), CAST(:arms AS int[]), CAST(:steps AS int[]), "
    + ", ".join(
        f"CAST(:{name} AS {'bigint' if name in ('judged', 'successes') or name.endswith('_n') else 'float8'}[])"
        for name in COUNTERS
    )
    + ") AS batch ORDER BY 1, 2, 3"  # one order in every transaction: concurrent batches cannot deadlock
    + " ON CONFLICT (experiment_id, arm, step) DO UPDATE SET "
    + ", ".join(f"{name} = t.{name} + EXCLUDED.{name}" for name in COUNTERS)
)


async def live_states(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, tuple[int, dict[str, int]]]:
    """Of these experiment ids, the live rollouts (running or paused): the step in force and
    which arm each config serves (`variant_id`, "" for the base config)."""
    query = select(experiments.c.id, experiments.c.step, experiments.c.arms).where(
        experiments.c.id.in_(sorted(ids)),
        experiments.c.kind == "rollout",
        experiments.c.status.in_(("running", "paused")),
    )
    return {
        row.id: (row.step, {(arm["variant_id"] or ""): arm["arm"] for arm in row.arms})
        for row in await conn.execute(query)
    }


async def add(conn: AsyncConnection, sums: Sums) -> None:
    """Add a batch's sums to the step totals."""
    if not sums:
        return
    keys = sorted(sums)
    params: dict[str, Any] = {
        "experiments": [key[0] for key in keys],
        "arms": [key[1] for key in keys],
        "steps": [key[2] for key in keys],
    }
    for index, name in enumerate(COUNTERS):
        params[name] = [sums[key][index] for key in keys]
    await conn.execute(_ADD, params)


async def step_totals(conn: AsyncConnection, experiment_id: str) -> list[RowMapping]:
    query = select(totals).where(totals.c.experiment_id == experiment_id).order_by(totals.c.step, totals.c.arm)
    return list((await conn.execute(query)).mappings())


async def live(conn: AsyncConnection) -> list[RowMapping]:
    """Every running or paused rollout: (id, agent_id). A partial index holds just these."""
    query = select(experiments.c.id, experiments.c.agent_id).where(
        experiments.c.kind == "rollout", experiments.c.status.in_(("running", "paused"))
    )
    return list((await conn.execute(query)).mappings())


async def record_history(
    conn: AsyncConnection,
    experiment_id: str,
    *,
    at: datetime,
    step: int,
    percent: int,
    figures: list[Mapping[str, Any]],
) -> None:
    await conn.execute(
        history.insert().values(
            experiment_id=experiment_id, at=at, step=step, percent=percent, guardrails=list(figures)
        )
    )


async def last_history(conn: AsyncConnection, experiment_id: str) -> RowMapping | None:
    query = select(history).where(history.c.experiment_id == experiment_id).order_by(history.c.at.desc()).limit(1)
    return (await conn.execute(query)).mappings().first()


async def history_page(conn: AsyncConnection, experiment_id: str, *, after: int | None, limit: int) -> list[RowMapping]:
    """Up to `limit` figures newest first, below the one with id `after`."""
    query = select(history).where(history.c.experiment_id == experiment_id).order_by(history.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(history.c.id < after)
    return list((await conn.execute(query)).mappings())


async def starter_key(conn: AsyncConnection, experiment_id: str) -> str | None:
    """The name of the API key that started the rollout (what its own transitions record)."""
    query = (
        select(revisions.c.api_key)
        .where(revisions.c.target_id == experiment_id, revisions.c.action == "start")
        .order_by(revisions.c.created_at.desc())
        .limit(1)
    )
    return await conn.scalar(query)
