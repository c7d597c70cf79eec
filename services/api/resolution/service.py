"""Resolution: every way to ask for an agent's config behind one function.

The modes (`GET .../resolved`): plain (the active variant over the base config), preview
(`variant=`), a subject's arm of the running experiment (`subject=`), time travel (`at=`),
each with or without `explain` (provenance). Plain and subject answers are cached; the
cache's hits are served before FastAPI runs (`fast_path.py`), and its misses come here.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple

from services.api.db import Database
from services.api.http import etag
from services.api.resolution.cache import ResolveCache
from services.api.resolution.experiments import running_arms
from services.api.resolution.schemas import to_body
from services.api.resolution.time_travel import resolve_at
from services.shared.agent_config import ResolvedAgentConfig, resolve_agent_config
from services.shared.assignment import assign


class Rendered(NamedTuple):
    """A resolution as sent: the JSON body and its ETag (a hash of the body)."""

    body: bytes
    etag: str


def render(resolved: ResolvedAgentConfig, *, explain: bool) -> Rendered:
    """The response body and its ETag: one rendering for every path that answers."""
    payload = json.dumps(to_body(resolved, explain=explain), separators=(",", ":")).encode()
    return Rendered(payload, etag(payload))


async def resolve(
    db: Database,
    cache: ResolveCache | None,
    agent: str,
    *,
    variant: str | None = None,
    subject: str | None = None,
    at: datetime | None = None,
    explain: bool = False,
) -> Rendered:
    """The agent's resolution in the one mode the arguments ask for (at most one of
    `variant`, `subject`, `at`; the caller checks). Raises `AgentNotFound`,
    `VariantNotFound` or `NotFound` (no agent at `at`)."""
    # Read once, before the database is: an answer computed from a read that an
    # invalidation may have overtaken is not stored (the cache compares generations).
    generation = cache.generation if cache is not None else 0
    if subject is not None:
        return await _for_subject(db, cache, generation, agent, subject, explain=explain)
    if variant is None and at is None:  # the hot one: one statement on asyncpg's own pool
        async with db.driver_read() as driver:
            resolved = await resolve_agent_config(driver, agent)
    else:
        async with db.read() as conn:
            if at is not None:
                resolved = await resolve_at(conn, agent, at)
            else:
                resolved = await resolve_agent_config(conn, agent, variant=variant)
    rendered = render(resolved, explain=explain)
    if cache is not None and at is None and variant is None:  # plain: what the fast path serves
        cache.put(agent, explain, resolved.agent_id, rendered.body, rendered.etag, generation=generation)
    return rendered


async def _for_subject(
    db: Database, cache: ResolveCache | None, generation: int, agent: str, subject: str, *, explain: bool
) -> Rendered:
    """This subject's arm of the agent's running experiment, or the plain resolution when
    none runs. What it takes is cached together (the experiment's salt and weights and
    every arm's response), so a subject costs a hash, not a query."""
    entry = cache.get_experiment(agent, explain) if cache is not None else None
    if entry is not None:
        body, tag, _, _ = entry.arms[assign(entry.salt, subject, entry.weights)]
        return Rendered(body, tag)
    async with db.read() as conn:
        agent_id, experiment_id, salt, weights, arms = await running_arms(conn, agent)
    rendered = tuple(render(arm, explain=explain) for arm in arms)
    if cache is not None:
        cache.put_experiment(
            agent,
            explain,
            agent_id,
            experiment_id,
            salt,
            weights,
            tuple((arm.body, arm.etag) for arm in rendered),
            generation=generation,
        )
    return rendered[assign(salt, subject, weights)]
