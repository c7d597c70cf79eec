"""Queries on webhooks and their deliveries. Functions take a connection; the caller owns
the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Webhook, WebhookDelivery, table_of

webhooks = table_of(Webhook)
deliveries = table_of(WebhookDelivery)


async def get(conn: AsyncConnection, webhook_id: str, *, lock: bool = False) -> RowMapping | None:
    query = select(webhooks).where(webhooks.c.id == webhook_id)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).mappings().first()


async def list_page(conn: AsyncConnection, *, after: str | None, limit: int) -> list[RowMapping]:
    query = select(webhooks).order_by(webhooks.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(webhooks.c.id < after)
    return list((await conn.execute(query)).mappings())


async def insert_one(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(webhooks).values(**values))


async def update_fields(conn: AsyncConnection, webhook_id: str, values: dict[str, Any], *, at: datetime) -> None:
    await conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(**values, version=webhooks.c.version + 1, updated_at=at)
    )


async def delete_one(conn: AsyncConnection, webhook_id: str) -> None:
    await conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))


async def deliveries_page(conn: AsyncConnection, webhook_id: str, *, after: int | None, limit: int) -> list[RowMapping]:
    query = (
        select(deliveries).where(deliveries.c.webhook_id == webhook_id).order_by(deliveries.c.id.desc()).limit(limit)
    )
    if after is not None:
        query = query.where(deliveries.c.id < after)
    return list((await conn.execute(query)).mappings())


async def delivery(conn: AsyncConnection, message_id: str) -> RowMapping | None:
    return (await conn.execute(select(deliveries).where(deliveries.c.message_id == message_id))).mappings().first()


async def now(conn: AsyncConnection) -> datetime:
    at: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
    return at
