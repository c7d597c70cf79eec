"""HTTP routes for agents."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.agents import service
from services.api.agents.schemas import AgentCreate, AgentRead, AgentUpdate
from services.api.deps import DB, AgentCursor, EnvironmentRef, Limit, Write
from services.api.errors import responses
from services.api.exceptions import InsufficientScope
from services.api.http import object_response
from services.api.principal import RANK, current_key, seen_by
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents", tags=["agents"], route_class=StrictRoute)


@router.post(
    "",
    status_code=201,
    response_model=AgentRead,
    summary="Create an agent",
    responses=responses(400, 403, 404, 409, 413, 415, 422),
)
async def create_agent(
    request: Request, body: AgentCreate, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Creates an agent with its base config: `model_provider` and `model_name` are required,
    every other field of `config` takes its default when left out. Without `slug`, one is
    derived from `name` (`-2`, `-3`, ... when taken); an explicit slug already taken is 409
    `slug_taken`. The config must pass the cross-field rule (`input_token_limit + max_tokens
    <= context_window` when `context_window > 0`, else 422 `inconsistent_config`). Answers
    201 with the agent, its `Location` and its `ETag`; writes a `create` revision."""
    agent = await service.create_agent(db, body, environment=environment, context=context)
    return object_response(request, agent, status_code=201, location=f"/v1/agents/{agent['id']}")


@router.get("", response_model=Page[AgentRead], summary="List agents, newest first", responses=responses(403, 404, 422))
async def list_agents(
    request: Request,
    db: DB,
    environment: EnvironmentRef,
    limit: Limit = 20,
    after: AgentCursor = None,
    archived: bool = Query(False, description="Also list archived agents (their `archived_at` is set)."),
) -> Response:
    """Agents, newest first, `limit` at a time (1-100, default 20); pass the last id of a page
    as `after` for the next. Archived agents are left out unless `archived=true`."""
    found = await service.list_agents(db, after=after, limit=limit + 1, archived=archived, environment=environment)
    key = current_key(request.scope)
    return JSONResponse(list_page([seen_by(key, item) for item in found], limit=limit))


@router.get(
    "/{agent}", response_model=AgentRead, summary="Get an agent by id or slug", responses=responses(403, 404, 422)
)
async def get_agent(request: Request, agent: str, db: DB, environment: EnvironmentRef) -> Response:
    """The agent named by its id (`agt_...`) or its slug, with its `ETag`; 304 for a matching
    `If-None-Match`."""
    body = await service.get_agent(db, agent, environment=environment)
    return object_response(request, body)


@router.patch(
    "/{agent}",
    response_model=AgentRead,
    summary="Update an agent (JSON merge patch)",
    responses=responses(400, 403, 404, 409, 412, 413, 415, 422),
)
async def update_agent(
    request: Request, agent: str, body: AgentUpdate, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """A JSON merge patch (RFC 7396) over `name`, `slug`, `description`, `metadata` and
    `config.<field>`: fields left out keep their value; config fields cannot be null. The
    result, and every environment's active variant over it, must pass the cross-field rule (422
    `inconsistent_config`). A patch that changes nothing bumps nothing. Honours `If-Match`
    (412 when stale)."""
    updated = await service.update_agent(db, agent, body, environment=environment, context=context)
    return object_response(request, updated)


@router.delete(
    "/{agent}",
    status_code=204,
    summary="Archive an agent (its history stays; unarchive brings it back), or erase an archived one",
    responses=responses(403, 404, 409, 412, 422),
)
async def delete_agent(
    request: Request,
    agent: str,
    db: DB,
    context: Write,
    environment: EnvironmentRef,
    purge: bool = Query(
        False, description="Erase an archived agent with everything it had (`admin`; 409 `agent_not_archived` else)."
    ),
) -> Response:
    """Archives the agent: it answers 404 everywhere from then on, except its revisions, `?at=`
    before the archive, `/usage`, results and `unarchive`; its slug stays taken. While an
    experiment runs it is 409 `experiment_running`. With `purge=true` (an `admin` key, an
    archived agent only, else 409 `agent_not_archived`), erases it with everything it had.
    Honours `If-Match`."""
    if not purge:
        await service.archive_agent(db, agent, environment=environment, context=context)
        return Response(status_code=204)
    key = current_key(request.scope)
    if key is not None and key.rank < RANK["admin"]:  # None: auth is off
        raise InsufficientScope(f"Purging needs an admin key; the API key '{key.name}' has the scope '{key.scope}'")
    await service.purge_agent(db, agent, context=context)
    return Response(status_code=204)


@router.post(
    "/{agent}/unarchive",
    response_model=AgentRead,
    summary="Bring an archived agent back, as it was",
    responses=responses(403, 404, 412, 422),
)
async def unarchive_agent(
    request: Request, agent: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Brings an archived agent back as it was archived: its variants, active variant and
    history. Writes an `unarchive` revision."""
    return object_response(request, await service.unarchive_agent(db, agent, environment=environment, context=context))
