"""HTTP routes for environments (reads `read`, writes `admin`: see `services.api.access.rules`)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, EnvironmentCursor, Limit, Precondition, unbound_key
from services.api.environments import service
from services.api.environments.schemas import EnvironmentCreate, EnvironmentRead, EnvironmentUpdate
from services.api.errors import responses
from services.api.http import object_response
from services.api.principal import current_key
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/environments", tags=["environments"], route_class=StrictRoute)
# Contract 1.1: a key bound to an environment cannot write environments, whatever its scope.
UNBOUND_KEYS_ONLY = [Depends(unbound_key)]
log = logging.getLogger(__name__)


@router.post(
    "",
    status_code=201,
    response_model=EnvironmentRead,
    summary="Create an environment",
    dependencies=UNBOUND_KEYS_ONLY,
    responses=responses(400, 409, 413, 415, 422),
)
async def create_environment(request: Request, body: EnvironmentCreate, db: DB) -> Response:
    """Creates an environment. Without `slug`, one is derived from `name` (`-2`, `-3`, ...
    when taken); an explicit slug already taken is 409 `slug_taken`; a name that gives no
    slug (`"!!!"`) needs an explicit one (422). An installation has at most 100 environments,
    `production` included (409 `environment_limit_reached`). Answers 201 with the environment,
    its `Location` and its `ETag`. A key bound to an environment cannot write environments
    (403 `environment_forbidden`)."""
    environment = await service.create_environment(db, body)
    # An audit line: environments belong to no agent, so their changes write no revision.
    log.info("Environment '%s' (%s) created by %s", environment["slug"], environment["id"], _caller(request))
    return object_response(request, environment, status_code=201, location=f"/v1/environments/{environment['id']}")


@router.get(
    "", response_model=Page[EnvironmentRead], summary="List environments, newest first", responses=responses(422)
)
async def list_environments(db: DB, limit: Limit = 20, after: EnvironmentCursor = None) -> Response:
    """Environments, newest first (`production` last), `limit` at a time (1-100, default 20);
    pass the last id of a page as `after` for the next."""
    found = await service.list_environments(db, after=after, limit=limit + 1)
    return JSONResponse(list_page(found, limit=limit))


@router.get(
    "/{environment}",
    response_model=EnvironmentRead,
    summary="Get an environment by id or slug",
    responses=responses(404, 422),
)
async def get_environment(request: Request, environment: str, db: DB) -> Response:
    """The environment named by its id (`env_...`) or its slug, with its `ETag`; 304 for a
    matching `If-None-Match`."""
    return object_response(request, await service.get_environment(db, environment))


@router.patch(
    "/{environment}",
    response_model=EnvironmentRead,
    summary="Rename an environment or change its description (JSON merge patch)",
    dependencies=UNBOUND_KEYS_ONLY,
    responses=responses(400, 404, 412, 413, 415, 422),
)
async def update_environment(
    request: Request, environment: str, body: EnvironmentUpdate, db: DB, context: Precondition
) -> Response:
    """A JSON merge patch (RFC 7396) over `name` and `description`: fields left out keep their
    value; `name` cannot be null, a null `description` empties it. The slug never changes (a
    `slug` in the patch is 422). A patch that changes nothing bumps nothing. Honours
    `If-Match` (412 when stale). Not with a bound key (403 `environment_forbidden`)."""
    updated = await service.update_environment(db, environment, body, context=context)
    log.info("Environment '%s' (%s) updated by %s", updated["slug"], updated["id"], _caller(request))
    return object_response(request, updated)


@router.delete(
    "/{environment}",
    status_code=204,
    summary="Delete an environment",
    dependencies=UNBOUND_KEYS_ONLY,
    responses=responses(404, 409, 412, 422),
)
async def delete_environment(request: Request, environment: str, db: DB, context: Precondition) -> Response:
    """Deletes the environment. `production` cannot be deleted (409 `environment_protected`),
    nor an environment in which anything is active, ruled or running, or to which a live API
    key is bound (409 `environment_in_use`). Honours `If-Match` (412 when stale). Not with a
    bound key (403 `environment_forbidden`)."""
    deleted = await service.delete_environment(db, environment, context=context)
    log.info("Environment '%s' (%s) deleted by %s", deleted["slug"], deleted["id"], _caller(request))
    return Response(status_code=204)


def _caller(request: Request) -> str:
    key = current_key(request.scope)
    return f"key '{key.name}'" if key is not None else "a caller without a key (auth disabled)"
