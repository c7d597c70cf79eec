"""HTTP routes for variants."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, Limit, VariantCursor, Write
from services.api.errors import responses
from services.api.http import object_response
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute
from services.api.variants import service
from services.api.variants.schemas import DiffRead, RestoreRequest, VariantCreate, VariantRead, VariantUpdate

router = APIRouter(prefix="/v1/agents/{agent}/variants", tags=["variants"], route_class=StrictRoute)


@router.post(
    "",
    status_code=201,
    response_model=VariantRead,
    summary="Create or clone a variant",
    responses=responses(400, 404, 409, 413, 415, 422),
)
async def create_variant(request: Request, agent: str, body: VariantCreate, db: DB, context: Write) -> Response:
    variant = await service.create_variant(db, agent, body, context=context)
    return object_response(
        request, variant, status_code=201, location=f"/v1/agents/{variant['agent_id']}/variants/{variant['id']}"
    )


@router.get(
    "",
    response_model=Page[VariantRead],
    summary="List an agent's variants, newest first",
    responses=responses(404, 422),
)
async def list_variants(
    agent: str,
    db: DB,
    limit: Limit = 20,
    after: VariantCursor = None,
    is_active: bool | None = Query(None, description="Only the active (true) or inactive (false) ones."),
) -> Response:
    rows = await service.list_variants(db, agent, after=after, limit=limit + 1, is_active=is_active)
    return JSONResponse(list_page(rows, limit=limit))


@router.get(
    "/{variant}", response_model=VariantRead, summary="Get a variant by id or slug", responses=responses(404, 422)
)
async def get_variant(request: Request, agent: str, variant: str, db: DB) -> Response:
    return object_response(request, await service.get_variant(db, agent, variant))


@router.patch(
    "/{variant}",
    response_model=VariantRead,
    summary="Update a variant (JSON merge patch)",
    responses=responses(400, 404, 409, 412, 413, 415, 422),
)
async def update_variant(
    request: Request, agent: str, variant: str, body: VariantUpdate, db: DB, context: Write
) -> Response:
    return object_response(request, await service.update_variant(db, agent, variant, body, context=context))


@router.delete(
    "/{variant}", status_code=204, summary="Delete an inactive variant", responses=responses(404, 409, 412, 422)
)
async def delete_variant(agent: str, variant: str, db: DB, context: Write) -> Response:
    await service.delete_variant(db, agent, variant, context=context)
    return Response(status_code=204)


@router.post(
    "/{variant}/activate",
    response_model=VariantRead,
    summary="Make this the agent's active variant",
    responses=responses(404, 412, 422),
)
async def activate_variant(request: Request, agent: str, variant: str, db: DB, context: Write) -> Response:
    return object_response(request, await service.activate_variant(db, agent, variant, context=context))


@router.post(
    "/{variant}/deactivate",
    response_model=VariantRead,
    summary="Deactivate this variant",
    responses=responses(404, 412, 422),
)
async def deactivate_variant(request: Request, agent: str, variant: str, db: DB, context: Write) -> Response:
    return object_response(request, await service.deactivate_variant(db, agent, variant, context=context))


@router.post(
    "/{variant}/restore",
    response_model=VariantRead,
    summary="Set name, description, metadata and overrides as right after a revision",
    responses=responses(400, 404, 409, 412, 413, 415, 422),
)
async def restore_variant(
    request: Request, agent: str, variant: str, body: RestoreRequest, db: DB, context: Write
) -> Response:
    restored = await service.restore_variant(db, agent, variant, body.revision_id, context=context)
    return object_response(request, restored)


@router.get(
    "/{variant}/diff",
    response_model=DiffRead,
    summary="Resolved values of this variant against base, another variant or a revision",
    responses=responses(404, 409, 422),
)
async def diff_variant(
    agent: str,
    variant: str,
    db: DB,
    against: str = Query(
        ..., min_length=1, max_length=64, description="`base`, a variant (id or slug), or a revision id (`rev_...`)."
    ),
) -> dict:
    return await service.diff_variant(db, agent, variant, against=against)
