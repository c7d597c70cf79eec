"""HTTP routes for API keys (admin scope: see `services.api.access.rules`)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, Caller, KeyCursor, Limit
from services.api.errors import responses
from services.api.keys import service
from services.api.keys.schemas import CREATED_KEY_EXAMPLE, KeyCreate, KeyRead
from services.api.principal import current_key
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/keys", tags=["keys"], route_class=StrictRoute)
log = logging.getLogger(__name__)
# A secret is in one response only: no cache or proxy may keep any of these.
NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "",
    status_code=201,
    response_model=KeyRead,
    summary="Create an API key (its secret is in this response only)",
    responses={
        **responses(400, 404, 409, 413, 415, 422),
        201: {"content": {"application/json": {"example": CREATED_KEY_EXAMPLE}}},
    },
)
async def create_key(request: Request, body: KeyCreate, db: DB, caller: Caller) -> Response:
    """Creates an API key with a scope: `resolve` (what an agent in production needs), `read`,
    `write` or `admin`, bound to an `environment` (by slug or id; 404 `resource_missing` when
    unknown) or to none. A key bound to an environment binds keys to its own only: without
    `environment`, the new key is bound to it; naming another is 403 `environment_forbidden`.
    The response is the only one that carries its `secret`: store it."""
    key = await service.create_key(db, body, caller=caller)
    # An audit line (never the secret): key management writes no agent revision.
    log.info(
        "API key '%s' (%s, scope %s, environment %s) created by %s",
        key["name"],
        key["id"],
        key["scope"],
        key["environment"] or "none",
        _caller(request),
    )
    return JSONResponse(key, status_code=201, headers={**NO_STORE, "Location": f"/v1/keys/{key['id']}"})


@router.get(
    "", response_model=Page[KeyRead], summary="List API keys, newest first (no secrets)", responses=responses(422)
)
async def list_keys(db: DB, caller: Caller, limit: Limit = 20, after: KeyCursor = None) -> Response:
    """API keys, newest first, revoked and expired ones included; never their secrets. A key
    bound to an environment lists only the keys bound to it."""
    rows = await service.list_keys(db, after=after, limit=limit + 1, caller=caller)
    return JSONResponse(list_page(rows, limit=limit), headers=NO_STORE)


@router.get(
    "/{key}", response_model=KeyRead, summary="Get an API key by id or name (no secret)", responses=responses(404)
)
async def get_key(key: str, db: DB, caller: Caller) -> Response:
    """One API key, by its id (`key_...`) or its name; never its secret. To a key bound to an
    environment, a key bound elsewhere (or to none) is 404, as an unknown one."""
    return JSONResponse(await service.get_key(db, key, caller=caller), headers=NO_STORE)


@router.delete(
    "/{key}",
    status_code=204,
    summary="Revoke an API key, on every replica within the propagation bound",
    responses=responses(404, 409),
)
async def revoke_key(request: Request, key: str, db: DB, caller: Caller) -> Response:
    """Revokes the key at once on this replica and on every other within the propagation bound;
    its open watch streams and console sessions end. The last live admin key bound to no
    environment cannot be revoked (409 `last_admin_key`). A key bound to an environment
    revokes only keys bound to it (others are 404, as unknown ones)."""
    revoked = await service.revoke_key(db, key, caller=caller)
    log.info("API key '%s' (%s) revoked by %s", revoked["name"], revoked["id"], _caller(request))
    return Response(status_code=204, headers=NO_STORE)


def _caller(request: Request) -> str:
    key = current_key(request.scope)
    return f"key '{key.name}'" if key is not None else "a caller without a key (auth disabled)"
