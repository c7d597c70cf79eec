"""Webhook use cases: create (the secret shown once), read, list, patch, delete, rotate the
secret, the delivery log, and a test event. Admin scope (`access.rules`)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database
from services.api.exceptions import FieldError, NotFound, ValidationFailed
from services.api.schemas import set_fields
from services.api.webhooks import repository
from services.api.webhooks.schemas import WebhookCreate, WebhookUpdate, delivery_read, webhook_read
from services.api.webhooks.targets import TargetRefused, check
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.api.writes.outbox import enqueue_event
from services.shared.identifiers import is_id, new_id


def new_secret() -> str:
    """Standard Webhooks' form: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _allowed(url: str, *, allow_private: bool) -> None:
    try:
        await check(url, allow_private=allow_private)
    except TargetRefused as error:
        raise ValidationFailed(f"Invalid field: url ({error})", errors=[FieldError("url", str(error))]) from None


async def _require(conn: AsyncConnection, ref: str, *, lock: bool = False) -> Any:
    row = await repository.get(conn, ref, lock=lock) if is_id("webhook", ref) else None
    if row is None:
        raise NotFound("Webhook", ref)
    return row


async def create_webhook(db: Database, data: WebhookCreate, *, allow_private: bool) -> dict[str, Any]:
    await _allowed(data.url, allow_private=allow_private)
    webhook_id = new_id("webhook")

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        at = await repository.now(conn)
        await repository.insert_one(
            conn,
            {
                "id": webhook_id,
                "url": data.url,
                "events": data.events,
                "description": data.description or "",
                "secret": new_secret(),
                "created_at": at,
                "updated_at": at,
            },
        )
        return webhook_read(await _require(conn, webhook_id), secret=True)

    return await db.transaction(unit)


async def get_webhook(db: Database, ref: str) -> dict[str, Any]:
    async with db.read() as conn:
        return webhook_read(await _require(conn, ref))


async def list_webhooks(db: Database, *, after: str | None, limit: int) -> list[dict[str, Any]]:
    async with db.read() as conn:
        return [webhook_read(row) for row in await repository.list_page(conn, after=after, limit=limit)]


async def update_webhook(
    db: Database, ref: str, patch: WebhookUpdate, *, allow_private: bool, context: WriteContext = NO_CONTEXT
) -> dict[str, Any]:
    sent = set_fields(patch)
    if sent.get("url") is not None:
        await _allowed(sent["url"], allow_private=allow_private)

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await _require(conn, ref, lock=True)
        context.check_version(row["version"], what="webhook")
        changes = {name: value for name, value in sent.items() if name in ("url", "events") and value != row[name]}
        if "description" in sent and (sent["description"] or "") != row["description"]:
            changes["description"] = sent["description"] or ""
        if not changes:
            return webhook_read(row)
        await repository.update_fields(conn, row["id"], changes, at=await repository.now(conn))
        return webhook_read(await _require(conn, row["id"]))

    return await db.transaction(unit)


async def delete_webhook(db: Database, ref: str, *, context: WriteContext = NO_CONTEXT) -> None:
    """Deletes it with its delivery log; its pending deliveries are never sent."""

    async def unit(conn: AsyncConnection) -> None:
        row = await _require(conn, ref, lock=True)
        context.check_version(row["version"], what="webhook")
        await repository.delete_one(conn, row["id"])

    await db.transaction(unit)


async def rotate_secret(db: Database, ref: str, *, context: WriteContext = NO_CONTEXT) -> dict[str, Any]:
    """A new secret, shown in this response only; deliveries from now on are signed with it."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await _require(conn, ref, lock=True)
        context.check_version(row["version"], what="webhook")
        await repository.update_fields(conn, row["id"], {"secret": new_secret()}, at=await repository.now(conn))
        return webhook_read(await _require(conn, row["id"]), secret=True)

    return await db.transaction(unit)


async def send_test(db: Database, ref: str) -> dict[str, Any]:
    """A `webhook.test` event to this webhook alone (whatever its events): the delivery queued."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        row = await _require(conn, ref)
        (message_id,) = await enqueue_event(
            conn, "webhook.test", {"webhook_id": row["id"]}, agent_id=None, webhook_id=row["id"]
        )
        found = await repository.delivery(conn, message_id)
        assert found is not None
        return delivery_read(found)

    return await db.transaction(unit)


async def deliveries(db: Database, ref: str, *, after: int | None, limit: int) -> list[dict[str, Any]]:
    async with db.read() as conn:
        row = await _require(conn, ref)
        return [
            delivery_read(one) for one in await repository.deliveries_page(conn, row["id"], after=after, limit=limit)
        ]
