"""The webhook dispatcher: every replica sends due deliveries about once a second.

Each pass claims up to a batch of due deliveries with `FOR UPDATE SKIP LOCKED` (so two
replicas never send the same one at once), sends each signed per Standard Webhooks, and
records the outcome in the same transaction. A replica killed after sending but before
committing leaves the delivery pending: another sends it again with the same `webhook-id`
(at least once; receivers drop repeats by that id). A failed attempt is retried with
exponential backoff (5 s, 10 s, 20 s, ... at most an hour apart) until 24 hours after the
change, then the delivery is `failed`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from standardwebhooks import Webhook as Signer

from services.api import counters, failpoints
from services.api.db import Database
from services.api.models import Webhook, WebhookDelivery, table_of
from services.api.revisions import repository as revisions_repository
from services.api.revisions.schemas import revision_read
from services.api.webhooks.targets import TargetRefused, delivery_client

log = logging.getLogger(__name__)
webhooks = table_of(Webhook)
deliveries = table_of(WebhookDelivery)
BATCH = 10
TIMEOUT_SECONDS = 10.0
GIVE_UP_AFTER = timedelta(hours=24)
FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS = 5.0, 3600.0


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 5 s, 10 s, 20 s, ... at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), MAX_RETRY_SECONDS))


async def run_forever(db: Database, *, every_seconds: float, allow_private: bool) -> None:
    # The client holds the target policy: it connects only to addresses it has checked.
    async with delivery_client(allow_private=allow_private, timeout=TIMEOUT_SECONDS) as client:
        while True:
            try:
                while await dispatch(db, client) == BATCH:
                    pass  # a full batch: more may be due
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the next pass retries; the transaction rolled back
                log.warning("webhook dispatch failed: %r", error)
            await asyncio.sleep(every_seconds)


async def dispatch(db: Database, client: httpx.AsyncClient) -> int:
    """One pass: the deliveries this replica claimed and attempted, sent through `client`
    (`targets.delivery_client`, which refuses targets as the operator's settings say)."""
    return await db.transaction(functools.partial(_pass, client=client))


async def _pass(conn: AsyncConnection, *, client: httpx.AsyncClient) -> int:
    claimed = (
        (
            await conn.execute(
                select(deliveries, webhooks.c.url, webhooks.c.secret)
                .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= func.clock_timestamp())
                .order_by(deliveries.c.next_attempt_at)
                .limit(BATCH)
                .with_for_update(of=deliveries, skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    for row in claimed:
        payload = await _expanded(conn, row["payload"], agent_id=row["agent_id"])
        status, error = await _send(client, row, payload)
        failpoints.hit("webhook.after_send")  # a test kills the sending replica here: the event must not be lost
        now: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]
        attempts = row["attempts"] + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": status,
            "last_error": error,
            "payload": payload,
        }
        if status is not None and 200 <= status < 300:
            values |= {"status": "delivered", "delivered_at": now, "last_error": None}
        elif now + retry_delay(attempts) > row["created_at"] + GIVE_UP_AFTER:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = now + retry_delay(attempts)
        counters.webhook_attempt(values.get("status", "retrying"))
        await conn.execute(update(deliveries).where(deliveries.c.id == row["id"]).values(**values))
    return len(claimed)


async def _expanded(conn: AsyncConnection, payload: dict[str, Any], *, agent_id: str | None) -> dict[str, Any]:
    """The payload as sent: a revision's id (what the outbox stores) becomes the revision object."""
    data = payload.get("data") or {}
    if "revision_id" not in data:
        return payload
    row = await revisions_repository.get(conn, agent_id, data["revision_id"]) if agent_id is not None else None
    shown = revision_read(row) if row is not None else None
    return {**payload, "data": {"revision": shown}}


async def _send(client: httpx.AsyncClient, row: Any, payload: dict[str, Any]) -> tuple[int | None, str | None]:
    """POST one delivery: (the answer's status, why it failed) or (None, why) without one."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    sent_at = datetime.now().astimezone()
    headers = {
        "content-type": "application/json",
        "user-agent": "agent-variants-webhooks",
        "webhook-id": row["message_id"],
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Signer(row["secret"]).sign(row["message_id"], sent_at, body),
    }
    try:
        response = await client.post(row["url"], content=body, headers=headers)
    except TargetRefused as refused:  # checked as the connection opened: a name may now resolve elsewhere
        return None, f"refused: {refused}"
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:1000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"answered {response.status_code}"
