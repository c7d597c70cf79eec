"""Resolution: every way to ask for an agent's config behind one function.

The modes (`GET .../resolved`, `POST .../resolve`), each in an environment: plain (no
context: the rules on the empty context, else the active variant over the base config), a
context (a subject and attributes: rules, the running experiment, then plain), preview
(`variant=`), time travel (`at=`), each with or without `explain` (provenance). Plain and
context answers are cached; the cache's plain and subject hits are served before FastAPI
runs (`fast_path.py`), and its misses come here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from services.api.agents import repository as agents
from services.api.db import Database
from services.api.environments import repository as environments
from services.api.exceptions import FieldError, ValidationFailed
from services.api.http import etag
from services.api.resolution import plan
from services.api.resolution.cache import ResolveCache
from services.api.resolution.schemas import to_body
from services.api.resolution.time_travel import resolve_at
from services.shared.agent_config import ResolvedAgentConfig, resolve_agent_config
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID


class Rendered(NamedTuple):
    """A resolution as sent: the JSON body and its ETag (a hash of the body)."""

    body: bytes
    etag: str


# What `json.dumps(..., separators=(",", ":"))` builds on every call, made once.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def render(resolved: ResolvedAgentConfig, *, explain: bool) -> Rendered:
    """The response body and its ETag: one rendering for every path that answers."""
    payload = _ENCODER.encode(to_body(resolved, explain=explain)).encode()
    return Rendered(payload, etag(payload))


async def resolve(
    db: Database,
    cache: ResolveCache | None,
    agent: str,
    *,
    environment: str = PRODUCTION_ENVIRONMENT_ID,
    variant: str | None = None,
    subject: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    explain: bool = False,
) -> Rendered:
    """The agent's resolution in the environment (id or slug) in the one mode the arguments
    ask for: a context (`subject`, `attributes`), a preview (`variant`) or time travel
    (`at`), which the caller keeps apart. Raises `AgentNotFound`, `EnvironmentNotFound`,
    `VariantNotFound` or `NotFound` (no agent at `at`)."""
    # Read once, before the database is: an answer computed from a read that an
    # invalidation may have overtaken is not stored (the cache compares generations).
    generation = cache.generation if cache is not None else 0
    if subject is not None or attributes:
        return await _for_context(db, cache, generation, agent, environment, subject, attributes or {}, explain=explain)
    if variant is None and at is None:  # the hot one: one statement on asyncpg's own pool
        async with db.driver_read() as driver:
            resolved = await resolve_agent_config(driver, agent, environment=environment)
    else:
        async with db.read() as conn:
            if at is not None:
                resolved = await resolve_at(conn, agent, at, environment=environment)
            else:
                resolved = await resolve_agent_config(conn, agent, variant=variant, environment=environment)
    rendered = render(resolved, explain=explain)
    if cache is not None and at is None and variant is None:  # plain: what the fast path serves
        cache.put(agent, environment, explain, resolved.agent_id, rendered.body, rendered.etag, generation=generation)
    return rendered


async def live_agents(db: Database) -> list[str]:
    """The slugs of the agents a bulk evaluation covers when it names none: every agent
    not archived, in slug order."""
    async with db.read() as conn:
        return await agents.live_slugs(conn)


async def body_environment(db: Database, named: str | None, sent: str) -> str:
    """The environment a body names (`sent`), as its id, when the query `named` none or the
    same one (by slug or id). Unknown: 404 naming `environment`; another than the query's:
    422, since the request would be ambiguous."""
    async with db.read() as conn:
        chosen = await environments.named(conn, sent)
        if named is not None and (await environments.named(conn, named))["id"] != chosen["id"]:
            message = f"names '{chosen['slug']}', but ?environment= names '{named}'"
            raise ValidationFailed(
                f"Invalid request: environment {message}", errors=[FieldError("environment", message)]
            )
    return str(chosen["id"])


async def _for_context(
    db: Database,
    cache: ResolveCache | None,
    generation: int,
    agent: str,
    environment: str,
    subject: str | None,
    attributes: Mapping[str, Any],
    *,
    explain: bool,
) -> Rendered:
    """The config this context gets in the environment. What it takes is cached together
    (the plan: rules, the running experiment's salt and weights, and every config's
    response), so a context costs a hash and the rules' conditions, not a query."""
    entry = cache.get_context(agent, environment, explain) if cache is not None else None
    if entry is not None:
        body, tag, _, _ = entry.responses[entry.plan.pick(subject, attributes)]
        return Rendered(body, tag)
    async with db.read() as conn:
        found = await plan.build(conn, agent, environment)
    rendered = tuple(render(config, explain=explain) for config in found.configs)
    if cache is not None:
        cache.put_context(
            agent,
            environment,
            explain,
            found,
            tuple((one.body, one.etag) for one in rendered),
            generation=generation,
        )
    return rendered[found.pick(subject, attributes)]
