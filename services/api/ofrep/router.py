"""OpenFeature Remote Evaluation Protocol: `POST /ofrep/v1/evaluate/flags/{agent}` and the
bulk `POST /ofrep/v1/evaluate/flags`, an agent's resolution as an OpenFeature flag.

Each evaluation is `POST /v1/agents/{agent}/resolve` under the protocol's names (the same
service, plan and cache): `targetingKey` is the subject, every other context key an
attribute. Errors take the protocol's shapes and codes, not problem+json: `OfrepRoute`
turns whatever a request raises into them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from services.api.deps import DB, EnvironmentRef
from services.api.errors import database_unavailable, ofrep_general_error, validation_detail
from services.api.errors import field_errors as validation_errors
from services.api.exceptions import EnvironmentForbidden, NotFound, ServiceBusy
from services.api.http import etag, if_none_match, not_modified
from services.api.ofrep import schemas
from services.api.ofrep.schemas import OfrepFailure, failure
from services.api.resolution import service
from services.api.resolution.cache import ResolveCache
from services.shared.agent_config import AgentNotFound, EnvironmentNotFound

log = logging.getLogger(__name__)

PREFIX = "/ofrep/v1"
BULK_PATH = f"{PREFIX}/evaluate/flags"


def _environment_missing(error: Exception) -> bool:
    return isinstance(error, EnvironmentNotFound) or (
        isinstance(error, NotFound) and getattr(error, "param", None) == "environment"
    )


def answer_failure(request: Request, error: Exception, *, bulk: bool) -> Response:
    """The protocol's answer to what an evaluation request raised: its shapes (a failure
    with `key` for one flag, without for the bulk form; `{"errorDetails"}` where the
    protocol gives a status no body), never problem+json."""
    key = None if bulk else request.path_params.get("agent", "")
    if isinstance(error, OfrepFailure):
        return JSONResponse(failure(key, error.code, error.details), status_code=error.status)
    if _environment_missing(error):
        # A flag is evaluated in an environment: none by that name, no flag there.
        detail = str(getattr(error, "detail", error))
        return JSONResponse(failure(key, "GENERAL" if bulk else "FLAG_NOT_FOUND", detail), status_code=404)
    if isinstance(error, AgentNotFound | NotFound):
        return JSONResponse(failure(key, "FLAG_NOT_FOUND", f"Agent '{key}' not found"), status_code=404)
    if isinstance(error, EnvironmentForbidden):
        return ofrep_general_error(403, error.detail)
    if isinstance(error, RequestValidationError):  # `?environment=` out of its bounds
        detail = validation_detail(validation_errors(error.errors()))
        return JSONResponse(failure(key, "GENERAL", detail), status_code=400)
    if isinstance(error, HTTPException):  # a body over MAX_BODY_BYTES (413)
        return ofrep_general_error(error.status_code, str(error.detail))
    if isinstance(error, ServiceBusy) or database_unavailable(error):
        log.warning("OFREP evaluation failed, database unavailable: %s", error)
        return ofrep_general_error(503, "The database is unavailable; retry shortly", {"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(failure(key, "GENERAL", "An unexpected error occurred; it has been logged"), status_code=500)


class OfrepRoute(APIRoute):
    """A route whose every failure is answered in OFREP's shapes (`answer_failure`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        bulk = self.path == BULK_PATH

        async def ofrep_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # noqa: BLE001 - every failure gets the protocol's shape
                return answer_failure(request, error, bulk=bulk)

        return ofrep_handler


router = APIRouter(prefix=PREFIX, tags=["openfeature"], route_class=OfrepRoute)


async def _context(request: Request, *, bulk: bool) -> schemas.Context:
    return schemas.parse_context(await request.body(), request.headers.get("content-type"), bulk=bulk)


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@router.post(
    "/evaluate/flags/{agent}",
    summary="OpenFeature (OFREP): evaluate one agent's config as a flag",
    responses=schemas.single_responses(),
    openapi_extra={"requestBody": schemas.request_body(bulk=False)},
)
async def evaluate_flag(request: Request, agent: str, db: DB, environment: EnvironmentRef) -> Response:
    """The OFREP single evaluation of the flag `agent` (an agent's id or slug): its value
    is what `POST /v1/agents/{agent}/resolve` answers for the context, whose `targetingKey`
    is the subject and whose other keys are attributes. `reason`: `TARGETING_MATCH` (a
    rule), `SPLIT` (an experiment or rollout), `STATIC` (the active variant), `DEFAULT`
    (the base config); `variant`: the variant's slug or `base`. An unknown or archived
    agent is 404 `FLAG_NOT_FOUND`; a bad body 400 `PARSE_ERROR` or `INVALID_CONTEXT`."""
    context = await _context(request, bulk=False)
    cache: ResolveCache | None = getattr(request.app.state, "resolve_cache", None)
    payload, _ = await service.resolve(
        db, cache, agent, environment=environment, subject=context.subject, attributes=context.attributes
    )
    return Response(_json(schemas.evaluation(agent, json.loads(payload))), media_type="application/json")


@router.post(
    "/evaluate/flags",
    summary="OpenFeature (OFREP): evaluate every agent's config (or those named) as flags",
    responses=schemas.bulk_responses(),
    openapi_extra={"requestBody": schemas.request_body(bulk=True)},
)
async def evaluate_flags(
    request: Request,
    db: DB,
    environment: EnvironmentRef,
    _if_none_match: Annotated[
        str | None,
        Header(
            alias="If-None-Match",
            description="The ETag of an earlier answer: 304 while the evaluations are unchanged.",
        ),
    ] = None,
) -> Response:
    """The OFREP bulk evaluation: each agent's flag for one context, as the single form
    evaluates it, for the agents `context.agents` names (ids or slugs, in that order; an
    unknown or archived one is a `FLAG_NOT_FOUND` entry) or else every agent not archived,
    by slug. Carries an `ETag` (a hash of the answer): 304 for a matching `If-None-Match`."""
    context = await _context(request, bulk=True)
    cache: ResolveCache | None = getattr(request.app.state, "resolve_cache", None)
    refs = context.agents if context.agents is not None else await service.live_agents(db)
    flags = []
    for ref in refs:
        try:
            payload, _ = await service.resolve(
                db, cache, ref, environment=environment, subject=context.subject, attributes=context.attributes
            )
        except AgentNotFound:
            if context.agents is not None:  # (unasked, it was archived meanwhile: left out)
                flags.append(failure(ref, "FLAG_NOT_FOUND", f"Agent '{ref}' not found"))
            continue
        flags.append(schemas.evaluation(ref, json.loads(payload)))
    if len(flags) == sum("errorCode" in flag for flag in flags):
        # No agent found (or none to find): only now is an unknown environment a 404 to find
        # out about, as resolve found it out otherwise (a query saved on the usual path).
        await service.body_environment(db, None, environment)
    body = _json({"flags": flags})
    tag = etag(body)
    if if_none_match(request, tag):
        return not_modified(tag)
    return Response(body, media_type="application/json", headers={"ETag": tag})
