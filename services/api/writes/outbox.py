"""The webhook outbox: every change's events, written in the change's own transaction
(`record` calls `enqueue` with the revision it wrote), so an event exists exactly when its
change committed. The dispatcher (`scheduler.webhooks`) sends them.

Events (contract 1.1): `agent.{created,updated,archived,unarchived,purged}`,
`variant.{created,updated,deleted,activated,deactivated,restored}`, `rule_set.updated`,
`experiment.{created,updated,deleted,started,stopped}`,
`rollout.{started,advanced,paused,resumed,completed,rolled_back,stopped}`, `change.undone`,
`webhook.test`; data `{"revision": <the revision>}` (stored as its id until first sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.models import Webhook, WebhookDelivery, table_of
from services.shared.identifiers import new_id
from services.shared.webhook_events import event_of, matches

webhooks = table_of(Webhook)
deliveries = table_of(WebhookDelivery)


async def enqueue(conn: AsyncConnection, revision: Mapping[str, Any]) -> None:
    """A delivery of the revision's event to each webhook that wants it."""
    event = event_of(revision)
    if event is None:
        return
    # The revision object itself is rendered when the event is first sent (`scheduler.webhooks`:
    # the revisions package is built on this one, not the other way round).
    await enqueue_event(conn, event, {"revision_id": revision["id"]}, agent_id=revision["agent_id"])


async def enqueue_event(
    conn: AsyncConnection, event: str, data: dict[str, Any], *, agent_id: str | None, webhook_id: str | None = None
) -> list[str]:
    """Deliveries of `event` (to `webhook_id` alone, else to every webhook it matches): the
    message ids. The payload is Standard Webhooks' `{"type", "timestamp", "data"}`."""
    query = select(webhooks.c.id, webhooks.c.events)
    if webhook_id is not None:
        query = query.where(webhooks.c.id == webhook_id)
    targets = [row.id for row in await conn.execute(query) if webhook_id is not None or matches(row.events, event)]
    if not targets:
        return []
    now: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
    rows = []
    for target in targets:
        message_id = new_id("message")
        payload = {"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
        rows.append(
            {"webhook_id": target, "agent_id": agent_id, "message_id": message_id, "event": event, "payload": payload}
        )
    await conn.execute(insert(deliveries), rows)
    return [row["message_id"] for row in rows]
