"""HTTP routes for history: revisions and undo."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.api.deps import DB, Limit, RevisionCursor, Write
from services.api.errors import responses
from services.api.revisions import service
from services.api.schemas import Page, list_page

router = APIRouter(prefix="/v1/agents/{agent}", tags=["history"])


class RevisionRead(BaseModel):
    object: Literal["revision"]
    id: str
    agent_id: str
    target: Literal["agent", "variant", "experiment"]
    target_id: str
    action: str
    actor: str | None
    api_key: str | None
    active_variant_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: str


class UndoRead(BaseModel):
    object: Literal["undo"]
    reverted_revision_id: str
    revision: RevisionRead


@router.get("/revisions", response_model=Page[RevisionRead], summary="The agent's history, newest first",
            responses=responses(404, 422))
async def list_revisions(
    agent: str,
    db: DB,
    limit: Limit = 20,
    after: RevisionCursor = None,
    target_id: str | None = Query(None, max_length=64, description="Only the revisions of this agent or variant id."),
) -> Response:
    rows = await service.list_revisions(db, agent, after=after, limit=limit + 1, target_id=target_id)
    return JSONResponse(list_page(rows, limit=limit))


@router.get("/revisions/{revision}", response_model=RevisionRead, summary="One revision",
            responses=responses(404, 422))
async def get_revision(agent: str, revision: str, db: DB) -> dict[str, Any]:
    return await service.get_revision(db, agent, revision)


@router.post("/undo", response_model=UndoRead, summary="Revert the agent's newest change not yet undone",
             responses=responses(404, 409, 412, 422))
async def undo(agent: str, db: DB, context: Write) -> dict[str, Any]:
    return await service.undo(db, agent, context=context)
