"""Model catalog use cases: list, read, put (create or replace), delete.

The catalog belongs to no agent, so its changes write no revision and announce nothing:
what an agent serves does not change with it. A change applies to the writes that come
after it (their checks read the catalog in their own transaction) and to the outcomes
ingested after it; configs already stored are not re-checked.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.catalog import repository
from services.api.catalog.schemas import ModelPut, model_read
from services.api.db import Database
from services.api.exceptions import NotFound, PreconditionFailed
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.shared.identifiers import new_id

# The `source` of a model written through the API.
API_SOURCE = "api"


def _not_found(provider: str, name: str) -> NotFound:
    return NotFound("Model", f"{provider}/{name}")


def _price(value: float | None) -> Decimal | None:
    """A price as the client wrote it (`0.15`, not the double nearest to it): the shortest
    decimal that reads back as the same double."""
    return None if value is None else Decimal(repr(value))


async def list_models(
    db: Database, *, after: str | None, limit: int, provider: str | None = None
) -> list[dict[str, Any]]:
    """Models newest first, of one provider or all."""
    async with db.read() as conn:
        rows = await repository.list_page(conn, after=after, limit=limit, provider=provider)
        return [model_read(row) for row in rows]


async def get_model(db: Database, provider: str, name: str) -> dict[str, Any]:
    async with db.read() as conn:
        row = await repository.get(conn, provider, name)
        if row is None:
            raise _not_found(provider, name)
        return model_read(row)


async def put_model(
    db: Database, provider: str, name: str, data: ModelPut, *, context: WriteContext = NO_CONTEXT
) -> tuple[dict[str, Any], bool]:
    """Create the model or replace its limits and prices (`source` becomes `api`): the model,
    and whether it was created. `If-Match` must name the current ETag of an existing model
    (412 otherwise, also when there is none; `*` matches any existing one). A PUT that
    changes nothing bumps nothing."""
    values = {
        "context_window": data.context_window,
        "max_output_tokens": data.max_output_tokens,
        "input_usd_per_mtok": _price(data.input_usd_per_mtok),
        "output_usd_per_mtok": _price(data.output_usd_per_mtok),
        "source": API_SOURCE,
    }

    async def unit(conn: AsyncConnection) -> tuple[dict[str, Any], bool]:
        for _ in range(2):  # a concurrent PUT may create it between our read and our insert
            row = await repository.get(conn, provider, name, lock=True)
            if row is None:
                if context.if_match is not None:  # not even `*`: there is no current model (RFC 9110)
                    raise PreconditionFailed(f"If-Match {context.if_match}: model '{provider}/{name}' does not exist")
                at = await repository.now(conn)
                model_id = new_id("model")
                if await repository.insert(
                    conn, {"id": model_id, "provider": provider, "name": name, "updated_at": at, **values}
                ):
                    created = await repository.get(conn, provider, name)
                    assert created is not None
                    return model_read(created), True
                continue
            context.check_version(row["version"], what="model")
            if all(row[key] == value for key, value in values.items()):
                return model_read(row), False
            await repository.replace(conn, row["id"], values, at=await repository.now(conn))
            replaced = await repository.get(conn, provider, name)
            assert replaced is not None
            return model_read(replaced), False
        raise AssertionError("the model was created and deleted again meanwhile")  # pragma: no cover

    return await db.transaction(unit)


async def delete_model(db: Database, provider: str, name: str, *, context: WriteContext = NO_CONTEXT) -> None:
    """Remove the model from the catalog: configs naming it are no longer checked against it,
    and outcomes no longer get a cost from it (those stored keep theirs). The seed does not
    bring it back (it inserts each source's models once)."""

    async def unit(conn: AsyncConnection) -> None:
        row = await repository.get(conn, provider, name, lock=True)
        if row is None:
            raise _not_found(provider, name)
        context.check_version(row["version"], what="model")
        await repository.remove(conn, row["id"])

    await db.transaction(unit)
