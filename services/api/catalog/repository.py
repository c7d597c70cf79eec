"""Queries on the model catalog. Functions take a connection; the caller owns the transaction.

Other packages read the catalog through this module: outcome ingestion the prices of the
model a variant serves (`prices_served`). The write checks read its limits in
`services.api.consistency.check_model_limits`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Model, table_of

models = table_of(Model)


async def get(conn: AsyncConnection, provider: str, name: str, *, lock: bool = False) -> RowMapping | None:
    """A model by provider and name; with `lock`, its row locked until the transaction ends."""
    query = select(models).where(models.c.provider == provider, models.c.name == name)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def list_page(
    conn: AsyncConnection, *, after: str | None, limit: int, provider: str | None = None
) -> Sequence[RowMapping]:
    """Up to `limit` models newest first (by id), after the id `after`, of one provider or all."""
    query = select(models).order_by(models.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(models.c.id < after)
    if provider is not None:
        query = query.where(models.c.provider == provider)
    return (await conn.execute(query)).mappings().all()


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert a model unless one of that provider and name exists (a concurrent PUT): False then."""
    statement = pg_insert(models).values(values).on_conflict_do_nothing(index_elements=["provider", "name"])
    return (await conn.execute(statement.returning(models.c.id))).first() is not None


async def replace(conn: AsyncConnection, model_id: str, values: dict[str, Any], *, at: datetime) -> None:
    """Replace a model's limits, prices and source; +1 version."""
    await conn.execute(
        update(models).where(models.c.id == model_id).values(**values, version=models.c.version + 1, updated_at=at)
    )


async def remove(conn: AsyncConnection, model_id: str) -> None:
    await conn.execute(delete(models).where(models.c.id == model_id))


async def now(conn: AsyncConnection) -> datetime:
    at: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
    return at


# The model each config of an agent serves, with its prices: the base config ("") and each
# named variant (its override coalesced over the base), joined to the catalog. Variants that
# no longer exist, and models without both prices, give no row.
PRICES_SERVED = text(
    "SELECT k.variant_key, m.input_usd_per_mtok, m.output_usd_per_mtok"
    " FROM (SELECT '' AS variant_key, a.model_provider AS provider, a.model_name AS name"
    "         FROM agents a WHERE a.id = :agent"
    "       UNION ALL"
    "       SELECT v.id, coalesce(v.model_provider, a.model_provider), coalesce(v.model_name, a.model_name)"
    "         FROM variants v JOIN agents a ON a.id = v.agent_id"
    "        WHERE v.agent_id = :agent AND v.id = ANY(CAST(:variants AS text[]))) AS k"
    " JOIN models m ON m.provider = k.provider AND m.name = k.name"
    " WHERE m.input_usd_per_mtok IS NOT NULL AND m.output_usd_per_mtok IS NOT NULL"
)


async def prices_served(
    conn: AsyncConnection, agent_id: str, variant_ids: Collection[str]
) -> dict[str, tuple[Decimal, Decimal]]:
    """(input, output) US dollars per million tokens of the model each config serves now, by
    variant id ("" for the base config), for those whose model the catalog prices."""
    rows = await conn.execute(PRICES_SERVED, {"agent": agent_id, "variants": sorted(variant_ids)})
    return {key: (inputs, outputs) for key, inputs, outputs in rows}


async def prices_of(
    conn: AsyncConnection, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """(input, output) US dollars per million tokens of each (provider, name) the catalog prices."""
    if not pairs:
        return {}
    query = select(models.c.provider, models.c.name, models.c.input_usd_per_mtok, models.c.output_usd_per_mtok).where(
        tuple_(models.c.provider, models.c.name).in_(sorted(pairs)),
        models.c.input_usd_per_mtok.is_not(None),
        models.c.output_usd_per_mtok.is_not(None),
    )
    return {
        (row.provider, row.name): (row.input_usd_per_mtok, row.output_usd_per_mtok) for row in await conn.execute(query)
    }
