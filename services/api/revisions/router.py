"""HTTP routes for history: the agent's revisions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, Caller, EnvironmentRef, Limit, RevisionCursor
from services.api.errors import responses
from services.api.revisions import service
from services.api.revisions.schemas import RevisionRead
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents/{agent}", tags=["history"], route_class=StrictRoute)


@router.get(
    "/revisions",
    response_model=Page[RevisionRead],
    summary="The agent's history, newest first",
    responses=responses(403, 404, 422),
)
async def list_revisions(
    agent: str,
    db: DB,
    environment: EnvironmentRef,
    caller: Caller,
    limit: Limit = 20,
    after: RevisionCursor = None,
    target_id: str | None = Query(None, max_length=64, description="Only the revisions of this agent or variant id."),
) -> Response:
    """Every change to the agent, its variants and experiments, newest first (as they
    committed): the action, who made it and the objects before and after. `target_id`
    filters to one variant, experiment or the agent. Each names the environment it was made
    in (null for shared definitions); `active_variant_id` is the request environment's."""
    bound = caller is not None and caller.bound
    rows = await service.list_revisions(
        db, agent, after=after, limit=limit + 1, target_id=target_id, environment=environment, bound=bound
    )
    return JSONResponse(list_page(rows, limit=limit))


@router.get(
    "/revisions/{revision}", response_model=RevisionRead, summary="One revision", responses=responses(403, 404, 422)
)
async def get_revision(
    agent: str, revision: str, db: DB, environment: EnvironmentRef, caller: Caller
) -> dict[str, Any]:
    """One revision of the agent, by its id (`rev_...`)."""
    bound = caller is not None and caller.bound
    return await service.get_revision(db, agent, revision, environment=environment, bound=bound)
