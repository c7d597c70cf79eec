"""Seeding the model catalog from a dated, cited data source: the `genai-prices` package
(Pydantic's open price data: https://github.com/pydantic/genai-prices), pinned in
pyproject.toml and read from the installed package, never from the network.

Run by `migrate.upgrade` right after the migrations, in their transaction (so by
`agent-variants serve` and `agent-variants migrate`, and once per test database): the
catalog is ready before any process serves, and replicas starting together seed it once
(Alembic's advisory lock serializes them). Each source is seeded once (`model_seeds`
records it): it inserts the models missing then, never overwrites one, and a later start
finds the source recorded and does nothing, without even loading the data, so a model an
admin replaced or deleted stays as the admin left it. Installing a newer package (a new
`source`) inserts the models it adds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import version
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import (
    MODEL_CONTEXT_WINDOW_MAX,
    MODEL_NAME_MAX,
    MODEL_PROVIDER_RE,
    ModelSeed,
    table_of,
)
from services.shared.identifiers import new_id

PACKAGE = "genai-prices"
# The package's prices may change on a date (introductory rates, announced changes): the
# catalog takes those in force on this day, so the same package always seeds the same prices.
PRICES_OF = date(2026, 12, 6)

seeds = table_of(ModelSeed)
_PROVIDER = re.compile(MODEL_PROVIDER_RE)


@dataclass(frozen=True, slots=True)
class SeedModel:
    """A model as a source describes it (None: the source does not say)."""

    provider: str
    name: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_usd_per_mtok: Decimal | None = None
    output_usd_per_mtok: Decimal | None = None


def package_source() -> str:
    """The `source` of the rows the installed package seeds: its name, version and the date
    of its prices (`genai-prices 0.2.5 (prices of 2026-12-06)`)."""
    return f"{PACKAGE} {version(PACKAGE)} (prices of {PRICES_OF.isoformat()})"


def _per_mtok(price: Any) -> Decimal | None:
    """A price per million tokens: a flat one as it is, a tiered one's base (its price up to
    its first tier, e.g. prompts under 200k tokens)."""
    if price is None:
        return None
    if isinstance(price, Decimal):
        return price
    base = getattr(price, "base", None)
    return base if isinstance(base, Decimal) else None


def package_models() -> list[SeedModel]:
    """Every model of the installed `genai-prices` whose provider id the contract's pattern
    allows (`huggingface_groq` does not) and whose id fits a `model_name`: its context
    window, and its input and output prices per million tokens on `PRICES_OF`. The package
    gives no output limits, so `max_output_tokens` stays unknown (null) until an admin sets it."""
    from genai_prices.data import providers  # 1.6 MB of data: loaded only to seed

    at = datetime(PRICES_OF.year, PRICES_OF.month, PRICES_OF.day, 12, tzinfo=UTC)
    found: dict[tuple[str, str], SeedModel] = {}
    for provider in providers:
        if not _PROVIDER.match(provider.id):
            continue
        for model in provider.models:
            if not 1 <= len(model.id) <= MODEL_NAME_MAX or "\x00" in model.id:
                continue
            prices = model.get_prices(at)
            window = model.context_window
            found.setdefault(
                (provider.id, model.id),
                SeedModel(
                    provider=provider.id,
                    name=model.id,
                    context_window=window if window is not None and 1 <= window <= MODEL_CONTEXT_WINDOW_MAX else None,
                    input_usd_per_mtok=_per_mtok(getattr(prices, "input_mtok", None)),
                    output_usd_per_mtok=_per_mtok(getattr(prices, "output_mtok", None)),
                ),
            )
    return list(found.values())


INSERT_MISSING = text(
    "INSERT INTO models (id, provider, name, context_window, max_output_tokens,"
    "                    input_usd_per_mtok, output_usd_per_mtok, source)"
    " SELECT id, provider, name, context_window, max_output_tokens, input_price, output_price, :source"
    " FROM unnest(CAST(:ids AS text[]), CAST(:providers AS text[]), CAST(:names AS text[]),"
    "             CAST(:windows AS integer[]), CAST(:outputs AS integer[]),"
    "             CAST(:input_prices AS numeric[]), CAST(:output_prices AS numeric[]))"
    "      AS seed(id, provider, name, context_window, max_output_tokens, input_price, output_price)"
    " ORDER BY provider, name"
    " ON CONFLICT (provider, name) DO NOTHING"
)


async def seed(conn: AsyncConnection, *, source: str, models: Callable[[], Iterable[SeedModel]]) -> int | None:
    """Insert the models from `models()` that the catalog lacks, once per `source`: how many
    were inserted, or None when this source was seeded before (then `models` is not called).
    A model the catalog holds, whoever wrote it, is left as it is."""
    claimed = await conn.scalar(
        pg_insert(seeds).values(source=source, inserted=0).on_conflict_do_nothing().returning(seeds.c.source)
    )
    if claimed is None:
        return None
    rows = list(models())
    result = await conn.execute(
        INSERT_MISSING,
        {
            "source": source,
            "ids": [new_id("model") for _ in rows],
            "providers": [row.provider for row in rows],
            "names": [row.name for row in rows],
            "windows": [row.context_window for row in rows],
            "outputs": [row.max_output_tokens for row in rows],
            "input_prices": [row.input_usd_per_mtok for row in rows],
            "output_prices": [row.output_usd_per_mtok for row in rows],
        },
    )
    inserted = max(result.rowcount, 0)
    await conn.execute(seeds.update().where(seeds.c.source == source).values(inserted=inserted))
    return inserted


async def seed_from_package(conn: AsyncConnection) -> int | None:
    """`seed` from the installed `genai-prices` (see the module's docstring)."""
    return await seed(conn, source=package_source(), models=package_models)
