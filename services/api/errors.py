"""How errors look over HTTP: one map from code to status, RFC 9457 problem+json bodies.

Every error the service returns passes through here, FastAPI's validation errors and
Starlette's routing errors included, so clients see one shape with a stable `code`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.db import sqlstate
from services.api.exceptions import DomainError, FieldError, NotFound
from services.shared.agent_config import AgentNotFound, VariantNotFound

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://agent-variants.dev/problems/"


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str


# The one map from code to HTTP status and title. docs/api.md explains each code.
PROBLEMS: dict[str, ProblemType] = {
    "malformed_json": ProblemType(400, "Malformed JSON"),
    "resource_missing": ProblemType(404, "Resource not found"),
    "route_not_found": ProblemType(404, "No such route"),
    "method_not_allowed": ProblemType(405, "Method not allowed"),
    "unauthorized": ProblemType(401, "Unauthorized"),
    "insufficient_scope": ProblemType(403, "Insufficient scope"),
    "slug_taken": ProblemType(409, "Slug already taken"),
    "key_name_taken": ProblemType(409, "API key name already taken"),
    "variant_active": ProblemType(409, "Variant is active"),
    "variant_in_experiment": ProblemType(409, "Variant is in an experiment"),
    "experiment_not_draft": ProblemType(409, "Experiment is not a draft"),
    "experiment_running": ProblemType(409, "An experiment is running"),
    "invalid_status": ProblemType(409, "Invalid status for this action"),
    "nothing_to_undo": ProblemType(409, "Nothing to undo"),
    "undo_conflict": ProblemType(409, "Undo conflicts with the current state"),
    "revision_not_restorable": ProblemType(409, "Revision cannot be restored"),
    "idempotency_key_reused": ProblemType(409, "Idempotency key reused"),
    "idempotency_key_in_use": ProblemType(409, "Idempotency key in use"),
    "precondition_failed": ProblemType(412, "Precondition failed"),
    "payload_too_large": ProblemType(413, "Payload too large"),
    "unsupported_media_type": ProblemType(415, "Unsupported media type"),
    "validation_error": ProblemType(422, "Invalid request"),
    "rate_limited": ProblemType(429, "Too many requests"),
    "invalid_cursor": ProblemType(422, "Invalid pagination cursor"),
    "inconsistent_config": ProblemType(422, "Inconsistent config"),
    "slug_reserved": ProblemType(422, "Slug reserved"),
    "service_unavailable": ProblemType(503, "Service unavailable"),
    "not_ready": ProblemType(503, "Not ready"),
    "internal_error": ProblemType(500, "Internal error"),
}

# Validation error types (raised as PydanticCustomError) that are codes of their own.
_SPECIFIC_VALIDATION_CODES = {"slug_reserved", "invalid_cursor"}

_HTTP_CODES = {400: "malformed_json", 404: "route_not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type"}


def problem(
    code: str,
    detail: str,
    *,
    request: Request | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    kind = PROBLEMS[code]
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = [{"param": e.param, "message": e.message} for e in errors]
    return JSONResponse(body, status_code=kind.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def param_of(loc: Iterable[Any]) -> str:
    """`("body", "config", "temperature")` -> `config.temperature`; list indexes as `[3]`."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic marks a bad dict key this way; the key names it
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "Unknown field"
    if error.get("type") == "missing":
        return "Field required"
    message = str(error.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


def field_errors(raw: Iterable[dict[str, Any]]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    result = []
    for error in raw:
        item = (param_of(error.get("loc", ())), _message(error))
        if item not in seen:
            seen.add(item)
            result.append(FieldError(*item))
    return result


def validation_detail(errors: Sequence[FieldError]) -> str:
    """One sentence naming every bad field and what is wrong with it."""
    return "Invalid request: " + "; ".join(f"{e.param}: {e.message}" for e in errors)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"Retry-After": "1"} if PROBLEMS[exc.code].status == 503 else None
    return problem(exc.code, exc.detail, request=request, errors=exc.errors, headers=headers)


async def _on_lookup_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentNotFound | VariantNotFound)
    return problem(NotFound.code, str(exc), request=request)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in raw):
        reason = next(str(e.get("ctx", {}).get("error", "")) for e in raw if e.get("type") == "json_invalid")
        return problem("malformed_json", f"The request body is not valid JSON: {reason}".rstrip(": "), request=request)
    body_unparsed = any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in raw)
    if body_unparsed and not _is_json(request):
        # FastAPI parses only JSON bodies; anything else reaches validation as raw bytes.
        sent = request.headers.get("content-type") or "no Content-Type"
        return problem("unsupported_media_type",
                       f"Send the body as JSON with Content-Type: application/json (got {sent})",
                       request=request)
    errors = field_errors(raw)
    # A failure that is only of one kind the contract names gets that code.
    kinds = {e.get("type") for e in raw}
    code = kinds.pop() if len(kinds) == 1 and kinds <= _SPECIFIC_VALIDATION_CODES else "validation_error"
    return problem(code, validation_detail(errors), request=request, errors=errors)


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code)
    if code is None:  # nothing in the service raises others; keep the status if one does
        body = {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code,
                "detail": str(exc.detail), "code": "http_error", "instance": request.url.path}
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_MEDIA_TYPE)
    detail = exc.detail if isinstance(exc.detail, str) else PROBLEMS[code].title
    if code == "route_not_found":
        detail = f"No route matches {request.method} {request.url.path}"
    elif code == "method_not_allowed":
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem(code, detail, request=request, headers=getattr(exc, "headers", None))


# SQLSTATE classes that mean "the database cannot serve now", not "this request is bad":
# connection exceptions, insufficient resources, operator intervention (shutdown, startup),
# and 57014, a statement cancelled by `statement_timeout` (DB_STATEMENT_TIMEOUT_SECONDS).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P", "57014")


def database_unavailable(exc: BaseException) -> bool:
    """True for failures to reach or use the database, which a retry may cure."""
    if isinstance(exc, OSError | sqlalchemy.exc.TimeoutError | asyncpg.InterfaceError):
        return True  # refused, unreachable, pool exhausted, connection lost
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    state = sqlstate(exc) or getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
    return isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)


async def _on_infrastructure_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem("service_unavailable", "The database is unavailable; retry shortly",
                       request=request, headers={"Retry-After": "1"})
    return await _on_unexpected(request, exc)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem("internal_error", "An unexpected error occurred; it has been logged", request=request)


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(AgentNotFound, _on_lookup_error)
    app.add_exception_handler(VariantNotFound, _on_lookup_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for infrastructure in (OSError, sqlalchemy.exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError):
        app.add_exception_handler(infrastructure, _on_infrastructure_error)
    app.add_exception_handler(Exception, _on_unexpected)


# --- OpenAPI: shared error responses -------------------------------------------------


class ProblemFieldError(BaseModel):
    param: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[ProblemFieldError] | None = None


# Component name and description for each error status an operation may list.
RESPONSE_COMPONENTS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON (`malformed_json`)."),
    401: ("Unauthorized", "No API key, or one that is not valid, revoked or expired (`unauthorized`); "
                          "see `WWW-Authenticate`."),
    403: ("Forbidden", "The API key's scope does not allow this (`insufficient_scope`)."),
    404: ("NotFound", "The agent or variant does not exist (`resource_missing`)."),
    409: ("Conflict", "The request conflicts with the current state (`slug_taken`, `variant_active`, ...)."),
    412: ("PreconditionFailed", "`If-Match` did not match the current ETag (`precondition_failed`)."),
    413: ("PayloadTooLarge", "The body is over 4 MiB (`payload_too_large`)."),
    415: ("UnsupportedMediaType", "The body is not JSON (`unsupported_media_type`)."),
    429: ("TooManyRequests", "The API key is over its rate limit (`rate_limited`); retry after `Retry-After`."),
    422: ("ValidationError",
          "Invalid input; `errors` names every bad field (`validation_error`, `inconsistent_config`, ...)."),
    503: ("ServiceUnavailable",
          "The database is unreachable, not ready, or kept refusing the transaction; retry after `Retry-After`."),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that uses the database: each status, and 503 (the
    database unreachable or busy), becomes a `$ref` in `openapi.json`."""
    return {
        status: {"description": RESPONSE_COMPONENTS[status][1], "model": Problem}
        for status in (*statuses, 503)
    }
