"""/ (to the console), /healthz, /readyz and /v1/inspect/routes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api import migrate
from services.api.deadline import within
from services.api.deps import DB
from services.api.errors import responses
from services.api.exceptions import NotReady
from services.api.strict import StrictRoute

log = logging.getLogger(__name__)
# /readyz answers within 2 s: its check of the database gives up after this long.
READY_CHECK_SECONDS = 1.5
router = APIRouter(tags=["service"], route_class=StrictRoute)


@router.get(
    "/healthz",
    summary="Liveness: 200 while the process lives",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict[str, str]:
    """Answers as long as the process serves requests; it checks nothing else (not the
    database), so a load balancer restarts only a process that is really stuck."""
    return {"status": "ok"}


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root(request: Request) -> Response:
    """A browser landing on the service goes to the console; the body and `Link` (RFC 8631)
    name the API's docs and its OpenAPI document, for whoever reads instead of following."""
    prefix = request.scope.get("root_path", "")  # behind a proxy that mounts us under a path
    console, docs, description = f"{prefix}/console", f"{prefix}/docs", f"{prefix}/openapi.json"
    return JSONResponse(
        {"console": console, "docs": docs, "openapi": description},
        status_code=307,
        headers={"Location": console, "Link": f'<{docs}>; rel="service-doc", <{description}>; rel="service-desc"'},
    )


@router.get(
    "/readyz",
    summary="Readiness: the database answers and migrations are at head",
    responses={
        **responses(),
        200: {"content": {"application/json": {"example": {"status": "ok", "migration": "f6c8d0e2b4a6"}}}},
    },
)
async def readyz(db: DB) -> dict[str, str]:
    """200 with the migration the database is at when it answers and is at the code's head
    migration; else 503 `not_ready`, with the reason. Send traffic only to ready replicas."""

    async def current_revision() -> str | None:
        async with db.read() as conn:
            return await migrate.current_revision(conn)

    try:
        # Bounded: a database that stops answering makes this a prompt 503, not a hang.
        current = await within(asyncio.get_running_loop().time() + READY_CHECK_SECONDS, current_revision())
    except Exception as error:  # noqa: BLE001 - any failure to reach the database is "not ready"
        log.warning("readiness check failed: %s", error)
        raise NotReady(f"The database does not answer: {type(error).__name__}") from error
    head = migrate.head_revision()
    if current != head:
        raise NotReady(f"Migrations are at {current or 'nothing'}, head is {head}")
    return {"status": "ok", "migration": current}


class RouteInfo(BaseModel):
    """One operation."""

    route: str = Field(description="The path template (`/v1/agents/{agent}`).")
    methods: list[str] = Field(description="Its HTTP method.")
    summary: str | None = Field(description="What it does, in a line.")


class RouteList(BaseModel):
    """Every operation of the OpenAPI document."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "object": "list",
                    "data": [
                        {"route": "/v1/agents", "methods": ["POST"], "summary": "Create an agent"},
                        {"route": "/v1/agents", "methods": ["GET"], "summary": "List agents, newest first"},
                    ],
                }
            ]
        }
    )

    object: str = Field(description="Always `list`.")
    data: list[RouteInfo] = Field(description="One entry per path and method.")


@router.get("/v1/inspect/routes", response_model=RouteList, summary="Every route the service serves")
async def inspect_routes(request: Request) -> dict:
    """Each path and method of the OpenAPI document with its summary: a quick map of the API."""
    # Read from the OpenAPI document, which FastAPI builds from every included router
    # (how routers appear in `app.routes` differs between FastAPI versions).
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    data = [
        {"route": path, "methods": [method.upper()], "summary": operation.get("summary")}
        for path, operations in paths.items()
        for method, operation in operations.items()
    ]
    return {"object": "list", "data": data}
