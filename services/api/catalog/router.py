"""HTTP routes for the model catalog (reads `read`, writes `admin`: see `services.api.access.rules`)."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.base_types import NO_NUL_PATTERN
from services.api.catalog import service
from services.api.catalog.schemas import ModelPut, ModelRead
from services.api.deps import DB, Limit, ModelCursor, Precondition, unbound_key
from services.api.errors import responses
from services.api.http import object_response
from services.api.models import MODEL_NAME_MAX, MODEL_PROVIDER_RE
from services.api.principal import current_key
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=StrictRoute)
# The catalog is shared by every environment: a key bound to one cannot write it, whatever its scope.
UNBOUND_KEYS_ONLY = [Depends(unbound_key)]
log = logging.getLogger(__name__)

Provider = Annotated[
    str,
    Path(
        pattern=MODEL_PROVIDER_RE,
        description="Who serves the model, as configs name it in `model_provider` (`openai`): lowercase letters, "
        "digits, `.`, `_` and `-`, at most 64 characters.",
        examples=["openai"],
    ),
]
Name = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MODEL_NAME_MAX,
        pattern=NO_NUL_PATTERN,
        description="The model's name at the provider, as configs name it in `model_name`; it may hold `/` "
        "(`meta-llama/Llama-3.1-8B-Instruct`), sent as it is.",
        examples=["gpt-4o-mini"],
    ),
]


def _location(model: dict[str, str]) -> str:
    return f"/v1/models/{quote(model['provider'])}/{quote(model['name'], safe='/')}"


@router.get(
    "", response_model=Page[ModelRead], summary="List the model catalog, newest first", responses=responses(422)
)
async def list_models(
    db: DB,
    limit: Limit = 20,
    after: ModelCursor = None,
    provider: Annotated[
        str | None, Query(pattern=MODEL_PROVIDER_RE, description="Only this provider's models (`openai`).")
    ] = None,
) -> Response:
    """The catalog's models, newest first, `limit` at a time (1-100, default 20); pass the
    last id of a page as `after` for the next. `provider` keeps one provider's."""
    found = await service.list_models(db, after=after, limit=limit + 1, provider=provider)
    return JSONResponse(list_page(found, limit=limit))


@router.get(
    "/{provider}/{name:path}",
    response_model=ModelRead,
    summary="Get a model of the catalog",
    responses=responses(404, 422),
)
async def get_model(request: Request, provider: Provider, name: Name, db: DB) -> Response:
    """The model, with its `ETag`; 304 for a matching `If-None-Match`. 404 when the catalog
    has no such model (configs may still name it: unknown models are not checked)."""
    return object_response(request, await service.get_model(db, provider, name))


@router.put(
    "/{provider}/{name:path}",
    response_model=ModelRead,
    status_code=200,
    summary="Create or replace a model of the catalog",
    dependencies=UNBOUND_KEYS_ONLY,
    responses={
        201: {"description": "The model was created (with its `Location`).", "model": ModelRead},
        **responses(400, 404, 412, 413, 415, 422),
    },
)
async def put_model(
    request: Request, provider: Provider, name: Name, body: ModelPut, db: DB, context: Precondition
) -> Response:
    """Creates the model (201, with its `Location`) or replaces its limits and prices (200);
    fields left out or null are unknown. Its `source` becomes `api`, and the seed never
    overwrites it. A PUT that changes nothing bumps nothing. Honours `If-Match` (412 when
    stale, or when the model does not exist). Writes that come after it check configs
    naming the model against its limits (422 `model_limit`), and outcomes reported without
    a cost get one from its prices. Scope `admin`, not with a bound key (403
    `environment_forbidden`)."""
    model, created = await service.put_model(db, provider, name, body, context=context)
    log.info("Model %s/%s %s by %s", provider, name, "created" if created else "written", _caller(request))
    if created:
        return object_response(request, model, status_code=201, location=_location(model))
    return object_response(request, model)


@router.delete(
    "/{provider}/{name:path}",
    status_code=204,
    summary="Delete a model from the catalog",
    dependencies=UNBOUND_KEYS_ONLY,
    responses=responses(404, 412, 422),
)
async def delete_model(request: Request, provider: Provider, name: Name, db: DB, context: Precondition) -> Response:
    """Removes the model from the catalog: configs naming it are no longer checked against
    it, and outcomes no longer get a cost from it (those stored keep theirs). The seed does
    not bring it back. Honours `If-Match` (412 when stale). Scope `admin`, not with a bound
    key (403 `environment_forbidden`)."""
    await service.delete_model(db, provider, name, context=context)
    log.info("Model %s/%s deleted by %s", provider, name, _caller(request))
    return Response(status_code=204)


def _caller(request: Request) -> str:
    key = current_key(request.scope)
    return f"key '{key.name}'" if key is not None else "a caller without a key (auth disabled)"
