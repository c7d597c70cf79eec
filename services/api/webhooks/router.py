"""HTTP routes for webhooks (admin scope: see `services.api.access.rules`)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, Limit, Write
from services.api.errors import responses
from services.api.http import object_response
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute
from services.api.webhooks import service
from services.api.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookRead, WebhookUpdate

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=StrictRoute)
NO_STORE = {"Cache-Control": "no-store"}


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.webhooks_allow_private)


@router.post(
    "",
    status_code=201,
    response_model=WebhookRead,
    summary="Subscribe a URL to events (its signing secret is in this response only)",
    responses=responses(400, 403, 413, 415, 422),
)
async def create_webhook(request: Request, body: WebhookCreate, db: DB) -> Response:
    """Events matching `events` are POSTed to `url` from now on, signed per Standard Webhooks
    with the `secret` in this response (the only one that shows it). A private, loopback or
    link-local target is 422 naming `url`, unless the operator allows them."""
    webhook = await service.create_webhook(db, body, allow_private=_allow_private(request))
    return JSONResponse(
        webhook,
        status_code=201,
        headers={**NO_STORE, "Location": f"/v1/webhooks/{webhook['id']}", "ETag": f'"{webhook["version"]}"'},
    )


@router.get("", response_model=Page[WebhookRead], summary="List webhooks, newest first", responses=responses(403, 422))
async def list_webhooks(
    db: DB, limit: Limit = 20, after: str | None = Query(None, pattern=r"^whk_[0-9A-HJKMNP-TV-Z]{26}$")
) -> Response:
    """Webhooks, newest first, `limit` at a time; never their secrets."""
    return JSONResponse(list_page(await service.list_webhooks(db, after=after, limit=limit + 1), limit=limit))


@router.get("/{webhook}", response_model=WebhookRead, summary="Get a webhook", responses=responses(403, 404))
async def get_webhook(request: Request, webhook: str, db: DB) -> Response:
    """One webhook, with its `ETag`; never its secret."""
    return object_response(request, await service.get_webhook(db, webhook))


@router.patch(
    "/{webhook}",
    response_model=WebhookRead,
    summary="Change a webhook",
    responses=responses(400, 403, 404, 412, 413, 415, 422),
)
async def update_webhook(request: Request, webhook: str, body: WebhookUpdate, db: DB, context: Write) -> Response:
    """A merge patch of `url`, `events` and `description`; `If-Match` honoured."""
    changed = await service.update_webhook(db, webhook, body, allow_private=_allow_private(request), context=context)
    return object_response(request, changed)


@router.delete("/{webhook}", status_code=204, summary="Delete a webhook", responses=responses(403, 404, 412))
async def delete_webhook(webhook: str, db: DB, context: Write) -> Response:
    """Deletes it and its delivery log; what was pending is never sent."""
    await service.delete_webhook(db, webhook, context=context)
    return Response(status_code=204)


@router.post(
    "/{webhook}/rotate_secret",
    response_model=WebhookRead,
    summary="Give a webhook a new signing secret (in this response only)",
    responses=responses(403, 404, 412),
)
async def rotate_secret(webhook: str, db: DB, context: Write) -> Response:
    """A new `secret`; every delivery from now on, retries included, is signed with it."""
    return JSONResponse(await service.rotate_secret(db, webhook, context=context), headers=NO_STORE)


@router.get(
    "/{webhook}/deliveries",
    response_model=Page[DeliveryRead],
    summary="A webhook's delivery log, newest first",
    responses=responses(403, 404, 422),
)
async def list_deliveries(
    webhook: str, db: DB, limit: Limit = 20, after: str | None = Query(None, pattern=r"^[0-9]{1,18}$")
) -> Response:
    """Each event sent or to be sent: its `message_id` (the `webhook-id`), status, attempts and last answer."""
    rows = await service.deliveries(db, webhook, after=int(after) if after else None, limit=limit + 1)
    return JSONResponse(list_page(rows, limit=limit))


@router.post(
    "/{webhook}/test",
    response_model=DeliveryRead,
    summary="Send the webhook a `webhook.test` event",
    responses=responses(403, 404),
)
async def test_webhook(webhook: str, db: DB) -> Response:
    """Queues a `webhook.test` event for this webhook (whatever its `events`) and returns its
    delivery; the dispatcher sends it within a second or so."""
    return JSONResponse(await service.send_test(db, webhook))
