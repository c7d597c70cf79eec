"""POST /v1/agents/{agent}/undo."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.api.deps import DB, Write
from services.api.errors import responses
from services.api.strict import StrictRoute
from services.api.undo import use_case
from services.api.undo.schemas import UndoRead

router = APIRouter(prefix="/v1/agents/{agent}", tags=["history"], route_class=StrictRoute)


@router.post(
    "/undo",
    response_model=UndoRead,
    summary="Revert the agent's newest change not yet undone",
    responses=responses(404, 409, 412, 422),
)
async def undo(agent: str, db: DB, context: Write) -> dict[str, Any]:
    return await use_case.undo(db, agent, context=context)
