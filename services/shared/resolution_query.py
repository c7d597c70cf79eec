"""The SQL behind `resolve_agent_config`.

One statement: a LEFT JOIN of the agent with the environment named, the variant to apply
(the one active in that environment, the one being previewed, or none to preview the base
config) with a COALESCE per field, and the environment's rule set. Sixteen forms of it
exist (agent by id or slug, times environment by id or slug, times active / base / preview
by id / preview by slug); each is built once here and SQLAlchemy caches its compiled form,
and asyncpg caches the prepared statement per connection, so a call is one Bind/Execute
round trip. A context that a rule serves, or a subject under a running experiment, costs
a second one (`RUNNING`, or the preview form for the rule's variant).
"""

from __future__ import annotations

import json
from typing import Any

# From the SDK's definitions, as `agent_config` re-exports them: `agent_config` imports
# this module, never the other way round.
from agent_variants.config import (
    BASE,
    CONFIG_FIELDS,
    KEYED_FIELDS,
    ResolvedAgentConfig,
    Source,
    VariantNotFound,
    coalesce_keyed,
)
from sqlalchemy import and_, bindparam, column, exists, false, func, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncConnection

_VARIANT_KEYED = (*KEYED_FIELDS, "params_unset")
_agents = table(
    "agents",
    column("id"),
    column("slug"),
    column("archived_at"),
    *(column(f) for f in (*CONFIG_FIELDS, *KEYED_FIELDS)),
)
_variants = table(
    "variants",
    column("id"),
    column("agent_id"),
    column("slug"),
    *(column(f) for f in (*CONFIG_FIELDS, *_VARIANT_KEYED)),
)
_environments = table("environments", column("id"), column("slug"))
_activations = table("activations", column("agent_id"), column("environment_id"), column("variant_id"))
_rule_sets = table("rule_sets", column("agent_id"), column("environment_id"), column("rules"))
_experiments = table(
    "experiments",
    column("id"),
    column("agent_id"),
    column("environment_id"),
    column("status"),
    column("salt"),
    column("arms"),
    column("kind"),
)


def _build(agent_key: str, environment_key: str, variant_key: str | None):
    """The statement for one form: the agent, the environment, the variant to apply, each
    field coalesced and whether the variant set it, the keyed fields of both, and the
    environment's rule set."""
    join = _agents.outerjoin(_environments, _environments.c[environment_key] == bindparam("environment"))
    if variant_key is None:  # the variant active in the environment
        join = join.outerjoin(
            _activations,
            and_(_activations.c.agent_id == _agents.c.id, _activations.c.environment_id == _environments.c.id),
        ).outerjoin(_variants, _variants.c.id == _activations.c.variant_id)
    else:
        which: Any
        if variant_key == "base":  # preview of the base config: join no variant at all
            which = false()
        else:
            which = _variants.c[variant_key] == bindparam("variant")
        join = join.outerjoin(_variants, and_(_variants.c.agent_id == _agents.c.id, which))
    join = join.outerjoin(
        _rule_sets, and_(_rule_sets.c.agent_id == _agents.c.id, _rule_sets.c.environment_id == _environments.c.id)
    )
    return (
        select(
            _agents.c.id,
            _agents.c.slug,
            _variants.c.id,
            _variants.c.slug,
            _environments.c.id,
            _environments.c.slug,
            _rule_sets.c.rules,
            *(func.coalesce(_variants.c[f], _agents.c[f]) for f in CONFIG_FIELDS),
            *(_variants.c[f].is_not(None) for f in CONFIG_FIELDS),
            # The keyed fields, merged by key in Python (`coalesce_keyed`): the agent's, then
            # the variant's with its `params_unset` (NULL when no variant applies).
            *(_agents.c[f] for f in KEYED_FIELDS),
            *(_variants.c[f] for f in _VARIANT_KEYED),
        )
        .select_from(join)
        # An archived agent resolves to nothing, as a deleted one did.
        .where(_agents.c[agent_key] == bindparam("agent"), _agents.c.archived_at.is_(None))
    )


# (agent by id|slug, environment by id|slug, variant: None|base|id|slug), or RUNNING.
Form = tuple[str, ...] | tuple[str, str, str | None]

_STATEMENTS: dict[Any, Any] = {
    (agent_key, environment_key, variant_key): _build(agent_key, environment_key, variant_key)
    for agent_key in ("id", "slug")
    for environment_key in ("id", "slug")
    for variant_key in (None, "base", "id", "slug")
}

# The split serving an agent (by id) in an environment (by id): a running experiment or a
# running or paused rollout, with its id, salt, arms, kind and status.
RUNNING = ("running",)
_STATEMENTS[RUNNING] = select(
    _experiments.c.id, _experiments.c.salt, _experiments.c.arms, _experiments.c.kind, _experiments.c.status
).where(
    _experiments.c.agent_id == bindparam("agent"),
    _experiments.c.environment_id == bindparam("environment"),
    # A paused rollout keeps serving its step. Inline: the driver path binds by name.
    _experiments.c.status.in_([literal_column("'running'"), literal_column("'paused'")]),
)

_N = len(CONFIG_FIELDS)


_SQL: dict[Form, tuple[str, tuple[str, ...]]] = {}


def _sql(key: Form) -> tuple[str, tuple[str, ...]]:
    """The statement as asyncpg SQL text ($1, $2 ...) and the order of its parameters."""
    found = _SQL.get(key)
    if found is None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        compiled = _STATEMENTS[key].compile(dialect=dialect())
        found = _SQL[key] = (str(compiled), tuple(compiled.positiontup or ()))
    return found


async def fetch(conn: Any, key: Form, params: dict[str, str]):
    """Run the statement, on the driver itself when that is safe. `conn` is an
    AsyncConnection, or an asyncpg connection (the service's `Database.driver_read`).

    SQLAlchemy's execution layer costs more CPU than the query does (a third of an uncached
    `/resolved`), so on an autocommit connection, or inside a transaction the driver has
    already begun, the statement goes straight to asyncpg, which prepares it once per
    connection. A transaction SQLAlchemy has yet to begin on the driver goes through
    SQLAlchemy, so the statement runs inside it.
    """
    if not isinstance(conn, AsyncConnection):  # asyncpg's own
        sql, names = _sql(key)
        return await conn.fetchrow(sql, *(params[name] for name in names))
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None  # a checked-out connection always has one
    if driver.is_in_transaction() or getattr(raw.dbapi_connection, "autocommit", False):
        sql, names = _sql(key)
        return await driver.fetchrow(sql, *(params[name] for name in names))
    return (await conn.execute(_STATEMENTS[key], params)).first()


_FIRST = 7  # the first config field's column


def environment_of(row: Any) -> tuple[str | None, str | None]:
    """(id, slug) of the environment a row was resolved in; (None, None) when it is unknown."""
    return row[4], row[5]


# What PostgreSQL writes for an empty JSONB object and array (the keyed fields' defaults),
# each made afresh: `json.loads` costs a resolution miss about 0.8 us a column, and a row
# holds seven of them, most often empty.
_EMPTY_JSON = {"{}": dict, "[]": list}


def json_value(value: Any) -> Any:
    """A JSONB column's value: asyncpg's own connection returns it as text."""
    if isinstance(value, str):
        empty = _EMPTY_JSON.get(value)
        return empty() if empty is not None else json.loads(value)
    return json.loads(value) if isinstance(value, bytes) else value


def rules_of(row: Any) -> list[Any]:
    """The environment's rule set as the row holds it ([] for a set never written)."""
    return list(json_value(row[6]) or [])


def to_resolved(row: Any, *, source: Source, variant: str | None = None, **extra: Any) -> ResolvedAgentConfig:
    """The row as a resolution. A preview (`variant` named) of a variant the agent lacks
    raises `VariantNotFound`."""
    agent_id, agent_slug, variant_id, variant_slug = row[0], row[1], row[2], row[3]
    if variant is not None and variant_id is None and variant != BASE:
        raise VariantNotFound(variant)
    values = row[_FIRST : _FIRST + _N]
    flags = row[_FIRST + _N : _FIRST + 2 * _N]
    keyed = [json_value(value) for value in row[_FIRST + 2 * _N :]]
    base = dict(zip(KEYED_FIELDS, keyed, strict=False))
    overrides = keyed[len(KEYED_FIELDS) :]
    if any(overrides):
        resolved, given = coalesce_keyed(dict(zip(_VARIANT_KEYED, overrides, strict=True)), base)
    else:  # no variant, or one that sets, unsets and disables nothing: the agent's own, as `coalesce_keyed` gives
        resolved, given = {kind: dict(value or {}) for kind, value in base.items()}, frozenset()
    if source == "variant" and variant_id is None:
        source = "agent"
    return ResolvedAgentConfig(
        agent_id=agent_id,
        variant_id=variant_id,
        agent_slug=agent_slug,
        variant_slug=variant_slug,
        source=source,
        environment=row[5],
        overridden=frozenset(f for f, overridden in zip(CONFIG_FIELDS, flags, strict=True) if overridden) | given,
        **extra,
        **dict(zip(CONFIG_FIELDS, values, strict=True)),
        params=resolved["params"],
        tools=resolved["tools"],
        variables=resolved["variables"],
    )


async def agent_exists(conn: AsyncConnection, agent_key: str, agent: str) -> bool:
    query = select(exists().where(_agents.c[agent_key] == agent, _agents.c.archived_at.is_(None)))
    return bool(await conn.scalar(query))
