"""The one SQL statement behind `resolve_agent_config`.

A LEFT JOIN of the agent with the variant to apply (its active one, the one being
previewed, or none to preview the base config) and a COALESCE per field. Eight forms of
the statement exist (agent by id or slug, times active / base / preview by id / preview
by slug); each is built once here and SQLAlchemy caches its compiled form, and asyncpg
caches the prepared statement per connection, so a call is one Bind/Execute round trip.
"""

from __future__ import annotations

from typing import Any

# From the SDK's definitions, as `agent_config` re-exports them: `agent_config` imports
# this module, never the other way round.
from agent_variants.config import BASE, CONFIG_FIELDS, ResolvedAgentConfig, VariantNotFound
from sqlalchemy import and_, bindparam, column, exists, false, func, select, table, true
from sqlalchemy.ext.asyncio import AsyncConnection

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_SLUG

_agents = table("agents", column("id"), column("slug"), column("archived_at"), *(column(f) for f in CONFIG_FIELDS))
_variants = table(
    "variants",
    column("id"),
    column("agent_id"),
    column("slug"),
    column("is_active"),
    *(column(f) for f in CONFIG_FIELDS),
)


def _build(agent_key: str, variant_key: str | None):
    if variant_key is None:
        which = _variants.c.is_active == true()
    elif variant_key == "base":  # preview of the base config: join no variant at all
        which = false()
    else:
        which = _variants.c[variant_key] == bindparam("variant")
    join = _agents.outerjoin(_variants, and_(_variants.c.agent_id == _agents.c.id, which))
    return (
        select(
            _agents.c.id,
            _agents.c.slug,
            _variants.c.id,
            _variants.c.slug,
            *(func.coalesce(_variants.c[f], _agents.c[f]) for f in CONFIG_FIELDS),
            *(_variants.c[f].is_not(None) for f in CONFIG_FIELDS),
        )
        .select_from(join)
        # An archived agent resolves to nothing, as a deleted one did.
        .where(_agents.c[agent_key] == bindparam("agent"), _agents.c.archived_at.is_(None))
    )


_STATEMENTS = {
    (agent_key, variant_key): _build(agent_key, variant_key)
    for agent_key in ("id", "slug")
    for variant_key in (None, "base", "id", "slug")
}

_N = len(CONFIG_FIELDS)


_SQL: dict[tuple[str, str | None], tuple[str, tuple[str, ...]]] = {}


def _sql(agent_key: str, variant_key: str | None) -> tuple[str, tuple[str, ...]]:
    """The statement as asyncpg SQL text ($1, $2 ...) and the order of its parameters."""
    key = (agent_key, variant_key)
    found = _SQL.get(key)
    if found is None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        compiled = _STATEMENTS[key].compile(dialect=dialect())
        found = _SQL[key] = (str(compiled), tuple(compiled.positiontup or ()))
    return found


async def fetch(conn: Any, agent_key: str, variant_key: str | None, params: dict[str, str]):
    """Run the statement, on the driver itself when that is safe. `conn` is an
    AsyncConnection, or an asyncpg connection (the service's `Database.driver_read`).

    SQLAlchemy's execution layer costs more CPU than the query does (a third of an uncached
    `/resolved`), so on an autocommit connection, or inside a transaction the driver has
    already begun, the statement goes straight to asyncpg, which prepares it once per
    connection. A transaction SQLAlchemy has yet to begin on the driver goes through
    SQLAlchemy, so the statement runs inside it.
    """
    if not isinstance(conn, AsyncConnection):  # asyncpg's own
        sql, names = _sql(agent_key, variant_key)
        return await conn.fetchrow(sql, *(params[name] for name in names))
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None  # a checked-out connection always has one
    if driver.is_in_transaction() or getattr(raw.dbapi_connection, "autocommit", False):
        sql, names = _sql(agent_key, variant_key)
        return await driver.fetchrow(sql, *(params[name] for name in names))
    return (await conn.execute(_STATEMENTS[(agent_key, variant_key)], params)).first()


def to_resolved(row: Any, *, preview: bool, variant: str | None) -> ResolvedAgentConfig:
    agent_id, agent_slug, variant_id, variant_slug = row[0], row[1], row[2], row[3]
    if preview and variant_id is None and variant != BASE:
        raise VariantNotFound(variant or "")
    values = row[4 : 4 + _N]
    flags = row[4 + _N :]
    return ResolvedAgentConfig(
        agent_id=agent_id,
        variant_id=variant_id,
        agent_slug=agent_slug,
        variant_slug=variant_slug,
        source="preview" if preview else ("variant" if variant_id is not None else "agent"),
        # Every resolution is production's until activations are per environment (issue 18).
        environment=PRODUCTION_ENVIRONMENT_SLUG,
        overridden=frozenset(f for f, overridden in zip(CONFIG_FIELDS, flags, strict=True) if overridden),
        **dict(zip(CONFIG_FIELDS, values, strict=True)),
    )


async def agent_exists(conn: AsyncConnection, agent_key: str, agent: str) -> bool:
    query = select(exists().where(_agents.c[agent_key] == agent, _agents.c.archived_at.is_(None)))
    return bool(await conn.scalar(query))
