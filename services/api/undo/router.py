"""POST /v1/agents/{agent}/undo."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.api.deps import DB, EnvironmentRef, Write
from services.api.errors import responses
from services.api.principal import current_key
from services.api.strict import StrictRoute
from services.api.undo import use_case
from services.api.undo.schemas import UndoRead

router = APIRouter(prefix="/v1/agents/{agent}", tags=["history"], route_class=StrictRoute)


@router.post(
    "/undo",
    response_model=UndoRead,
    summary="Revert the agent's newest change not yet undone",
    responses=responses(403, 404, 409, 412, 422),
)
async def undo(request: Request, agent: str, db: DB, context: Write, environment: EnvironmentRef) -> dict[str, Any]:
    """Reverts the agent's newest change that is not undone yet and is not itself an undo, and
    records the reversal as an `undo` revision: an activation restores the previously active
    variant (or none), a delete brings the variant back with its id and slug, an update
    restores the state before it. The agent's creation and experiment revisions are never
    undone. Nothing left: 409 `nothing_to_undo`; a reversal that would break a rule: 409
    `undo_conflict`, and nothing changes. With `?environment=E`, the newest change made in E
    or to shared definitions (the agent, its variants); naming none, the newest of all."""
    # Naming none, an unbound key undoes the newest change of all (v1); a bound key's request
    # names its environment all the same.
    key = current_key(request.scope)
    named = "environment" in request.query_params or (key is not None and key.bound)
    bound = key is not None and key.bound
    return await use_case.undo(db, agent, environment=environment, named=named, bound=bound, context=context)
