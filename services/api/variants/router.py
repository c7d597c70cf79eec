"""HTTP routes for variants."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, EnvironmentRef, Limit, VariantCursor, Write
from services.api.errors import responses
from services.api.http import object_response
from services.api.principal import current_key, seen_by
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
    responses=responses(400, 403, 404, 409, 413, 415, 422),
)
async def create_variant(
    request: Request, agent: str, body: VariantCreate, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Creates a variant of the agent. Without `clone_from` it stores exactly the given
    `overrides`, and every other field is inherited from the agent at resolve time.
    `clone_from: "base"` copies every field of the agent's current config first (a
    snapshot); `clone_from: <variant>` copies that variant's overrides; `overrides` apply on
    top. A new variant is never active. Answers 201 with the variant and its `Location`."""
    variant = await service.create_variant(db, agent, body, environment=environment, context=context)
    return object_response(
        request, variant, status_code=201, location=f"/v1/agents/{variant['agent_id']}/variants/{variant['id']}"
    )


@router.get(
    "",
    response_model=Page[VariantRead],
    summary="List an agent's variants, newest first",
    responses=responses(403, 404, 422),
)
async def list_variants(
    request: Request,
    agent: str,
    db: DB,
    environment: EnvironmentRef,
    limit: Limit = 20,
    after: VariantCursor = None,
    is_active: bool | None = Query(
        None, description="Only the active (true) or inactive (false) ones in the request's environment."
    ),
) -> Response:
    """The agent's variants, newest first, `limit` at a time; `after` pages on, `is_active`
    filters."""
    rows = await service.list_variants(
        db, agent, after=after, limit=limit + 1, is_active=is_active, environment=environment
    )
    key = current_key(request.scope)
    return JSONResponse(list_page([seen_by(key, item) for item in rows], limit=limit))


@router.get(
    "/{variant}", response_model=VariantRead, summary="Get a variant by id or slug", responses=responses(403, 404, 422)
)
async def get_variant(request: Request, agent: str, variant: str, db: DB, environment: EnvironmentRef) -> Response:
    """The variant named by its id (`var_...`) or its slug within the agent, with its `ETag`."""
    return object_response(request, await service.get_variant(db, agent, variant, environment=environment))


@router.patch(
    "/{variant}",
    response_model=VariantRead,
    summary="Update a variant (JSON merge patch)",
    responses=responses(400, 403, 404, 409, 412, 413, 415, 422),
)
async def update_variant(
    request: Request, agent: str, variant: str, body: VariantUpdate, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """A JSON merge patch over `variant_name`, `slug`, `description`, `metadata` and
    `overrides.<field>`: an override set to null is removed (the field is inherited again);
    fields left out keep their value. The resolved config must pass the cross-field rule
    (422 `inconsistent_config`). Honours `If-Match`."""
    return object_response(
        request, await service.update_variant(db, agent, variant, body, environment=environment, context=context)
    )


@router.delete(
    "/{variant}", status_code=204, summary="Delete an inactive variant", responses=responses(403, 404, 409, 412, 422)
)
async def delete_variant(agent: str, variant: str, db: DB, context: Write, environment: EnvironmentRef) -> Response:
    """Deletes a variant (204). One active in any environment cannot be deleted (409
    `variant_active`), nor one a targeting rule serves (409 `variant_in_rule`), nor one
    that an arm of a draft or running experiment names (409 `variant_in_experiment`).
    `undo` brings it back with the same id and slug."""
    await service.delete_variant(db, agent, variant, environment=environment, context=context)
    return Response(status_code=204)


@router.post(
    "/{variant}/activate",
    response_model=VariantRead,
    summary="Make this the agent's active variant",
    responses=responses(403, 404, 412, 422),
)
async def activate_variant(
    request: Request, agent: str, variant: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Makes this the agent's active variant in the environment (`?environment=`, default
    `production`), deactivating the previous one there in the same transaction: at most one
    variant per agent and environment is active, whatever the concurrency.
    Re-checks the cross-field rule. Activating the active variant changes nothing. Every
    replica serves the change within the propagation bound (1 s)."""
    return object_response(
        request, await service.activate_variant(db, agent, variant, environment=environment, context=context)
    )


@router.post(
    "/{variant}/deactivate",
    response_model=VariantRead,
    summary="Deactivate this variant",
    responses=responses(403, 404, 412, 422),
)
async def deactivate_variant(
    request: Request, agent: str, variant: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Deactivates the variant in the environment: the agent resolves to its base config there
    again. A no-op when it is not active there."""
    return object_response(
        request, await service.deactivate_variant(db, agent, variant, environment=environment, context=context)
    )


@router.post(
    "/{variant}/restore",
    response_model=VariantRead,
    summary="Set name, description, metadata and overrides as right after a revision",
    responses=responses(400, 403, 404, 409, 412, 413, 415, 422),
)
async def restore_variant(
    request: Request,
    agent: str,
    variant: str,
    body: RestoreRequest,
    db: DB,
    context: Write,
    environment: EnvironmentRef,
) -> Response:
    """Sets the variant's name, description, metadata and overrides as they were right after
    the given revision (which must concern this variant, else 422). A revision after which
    the variant did not exist is 409 `revision_not_restorable`. Writes a `restore` revision."""
    restored = await service.restore_variant(
        db, agent, variant, body.revision_id, environment=environment, context=context
    )
    return object_response(request, restored)


@router.get(
    "/{variant}/diff",
    response_model=DiffRead,
    summary="Resolved values of this variant against base, another variant or a revision",
    responses=responses(403, 404, 409, 422),
)
async def diff_variant(
    agent: str,
    variant: str,
    db: DB,
    environment: EnvironmentRef,
    against: str = Query(
        ..., min_length=1, max_length=64, description="`base`, a variant (id or slug), or a revision id (`rev_...`)."
    ),
) -> dict:
    """The fields whose resolved values differ between this variant and `against`: `base` (the
    agent's config alone), another variant, or a revision (the state right after it). `from`
    is the `against` side, `to` this variant."""
    return await service.diff_variant(db, agent, variant, against=against, environment=environment)
