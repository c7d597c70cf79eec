"""How errors look over HTTP: one map from code to status, RFC 9457 problem+json bodies.

Every error the service returns passes through here, FastAPI's validation errors and
Starlette's routing errors included, so clients see one shape with a stable `code`.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path, get_route_path

from services.api.db import sqlstate
from services.api.exceptions import DomainError, FieldError, NotFound
from services.api.routes import every_route
from services.shared.agent_config import AgentNotFound, EnvironmentNotFound, VariantNotFound

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
    "environment_forbidden": ProblemType(403, "Environment forbidden"),
    "slug_taken": ProblemType(409, "Slug already taken"),
    "key_name_taken": ProblemType(409, "API key name already taken"),
    "last_admin_key": ProblemType(409, "Last admin key"),
    "variant_active": ProblemType(409, "Variant is active"),
    "variant_in_experiment": ProblemType(409, "Variant is in an experiment"),
    "variant_in_rule": ProblemType(409, "Variant is served by a rule"),
    "experiment_not_draft": ProblemType(409, "Experiment is not a draft"),
    "experiment_running": ProblemType(409, "An experiment is running"),
    "duplicate_arm": ProblemType(409, "Two arms serve the same config"),
    "agent_not_archived": ProblemType(409, "Agent is not archived"),
    "environment_protected": ProblemType(409, "Environment is protected"),
    "environment_in_use": ProblemType(409, "Environment is in use"),
    "environment_limit_reached": ProblemType(409, "Too many environments"),
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
    "unknown_parameter": ProblemType(422, "Unknown query parameter"),
    "inconsistent_config": ProblemType(422, "Inconsistent config"),
    "invalid_template": ProblemType(422, "Invalid template"),
    "undeclared_variable": ProblemType(422, "Undeclared template variable"),
    "invalid_schema": ProblemType(422, "Invalid JSON Schema"),
    "missing_variable": ProblemType(422, "Missing template variable"),
    "unknown_variable": ProblemType(422, "Unknown template variable"),
    "model_limit": ProblemType(422, "Over the model's limit"),
    "slug_reserved": ProblemType(422, "Slug reserved"),
    "service_unavailable": ProblemType(503, "Service unavailable"),
    "not_ready": ProblemType(503, "Not ready"),
    "internal_error": ProblemType(500, "Internal error"),
}

# Validation error types (raised as PydanticCustomError) that are codes of their own.
_SPECIFIC_VALIDATION_CODES = {"slug_reserved", "invalid_cursor"}

_HTTP_CODES = {
    400: "malformed_json",
    404: "route_not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


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


def ofrep_general_error(status: int, details: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """OpenFeature's (OFREP) general error, `{"errorDetails"}`: what its clients read instead of
    problem+json, from the OFREP routes, the access gate and the deadline alike."""
    return JSONResponse({"errorDetails": details}, status_code=status, headers=dict(headers) if headers else None)


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


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "Unknown field"
    if error.get("type") == "missing":
        return "Field required"
    message = str(error.get("msg", "Invalid value"))
    return message.removeprefix("Value error, ")


# A model validator that finds several bad fields at once raises this type with
# `{"errors": [(param, message), ...]}` in its context: each is named on its own.
SEVERAL_FIELDS = "several_fields"


def field_errors(raw: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    result = []
    for error in raw:
        items = [(param_of(error.get("loc", ())), _message(error))]
        found = (error.get("ctx") or {}).get("errors")
        if error.get("type") == SEVERAL_FIELDS and isinstance(found, list):
            where = items[0][0]
            items = [(param if where == "body" else f"{where}.{param}", message) for param, message in found]
        for item in items:
            if item not in seen:
                seen.add(item)
                result.append(FieldError(*item))
    return result


def validation_detail(errors: Sequence[FieldError]) -> str:
    """One sentence naming every bad field and what is wrong with it."""
    return "Invalid request: " + "; ".join(f"{e.param}: {e.message}" for e in errors)


# What answers an error on a route that serves HTML (the console): its page for the
# problem's status, title and detail. errors.py names no page; the app hands one in.
HtmlPage = Callable[[Request, int, str, str], Response]


class _Handlers:
    """The exception handlers. Each builds its problem, and `answer` gives it as
    problem+json or, on a path under the HTML prefix, as that page with the same status."""

    def __init__(self, html_pages: tuple[str, HtmlPage] | None) -> None:
        self.html_prefix: str | None = html_pages[0] if html_pages is not None else None
        self.html_page: HtmlPage | None = html_pages[1] if html_pages is not None else None

    def _html(self, request: Request) -> HtmlPage | None:
        if self.html_prefix is not None and request.url.path.startswith(self.html_prefix + "/"):
            return self.html_page
        return None

    def answer(
        self,
        request: Request,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        page = self._html(request)
        if page is not None:
            kind = PROBLEMS[code]
            response = page(request, kind.status, kind.title, detail)
            response.headers.update(headers or {})  # `Allow` on a 405, `Retry-After` on a 503
            return response
        return problem(code, detail, request=request, errors=errors, headers=headers)

    async def domain_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        headers = {"Retry-After": "1"} if PROBLEMS[exc.code].status == 503 else None
        return self.answer(request, exc.code, exc.detail, errors=exc.errors, headers=headers)

    async def lookup_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AgentNotFound | VariantNotFound | EnvironmentNotFound)
        if isinstance(exc, EnvironmentNotFound):
            return self.answer(request, NotFound.code, str(exc), errors=[FieldError("environment", str(exc))])
        return self.answer(request, NotFound.code, str(exc))

    async def validation_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        raw = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in raw):
            reason = next(str(e.get("ctx", {}).get("error", "")) for e in raw if e.get("type") == "json_invalid")
            return self.answer(request, "malformed_json", f"The request body is not valid JSON: {reason}".rstrip(": "))
        body_unparsed = any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in raw)
        if body_unparsed and not _is_json(request):
            # FastAPI parses only JSON bodies; anything else reaches validation as raw bytes.
            sent = request.headers.get("content-type") or "no Content-Type"
            return self.answer(
                request,
                "unsupported_media_type",
                f"Send the body as JSON with Content-Type: application/json (got {sent})",
            )
        errors = field_errors(raw)
        # A failure that is only of one kind the contract names gets that code.
        kinds = {e.get("type") for e in raw}
        code = kinds.pop() if len(kinds) == 1 and kinds <= _SPECIFIC_VALIDATION_CODES else "validation_error"
        return self.answer(request, str(code), validation_detail(errors), errors=errors)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code)
        if code is None:  # nothing in the service raises others; keep the status if one does
            page = self._html(request)
            if page is not None:
                return page(request, exc.status_code, str(exc.detail), str(exc.detail))
            body = {
                "type": "about:blank",
                "title": str(exc.detail),
                "status": exc.status_code,
                "detail": str(exc.detail),
                "code": "http_error",
                "instance": request.url.path,
            }
            return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_MEDIA_TYPE)
        detail = exc.detail if isinstance(exc.detail, str) else PROBLEMS[code].title
        if code == "route_not_found":
            detail = f"No route matches {request.method} {request.url.path}"
        headers = getattr(exc, "headers", None)
        if code == "method_not_allowed":
            detail = f"{request.method} is not allowed on {request.url.path}"
            # Routing names the methods of the first route whose path matched; a path served
            # by several routes (GET and PATCH on /v1/agents/{agent}) takes all of theirs.
            headers = dict(headers or {})
            headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        return self.answer(request, code, detail, headers=headers)

    async def infrastructure_error(self, request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):
            log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
            return self.answer(
                request,
                "service_unavailable",
                "The database is unavailable; retry shortly",
                headers={"Retry-After": "1"},
            )
        return await self.unexpected(request, exc)

    async def unexpected(self, request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return self.answer(request, "internal_error", "An unexpected error occurred; it has been logged")


_METHOD_ORDER = {
    method: rank for rank, method in enumerate(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
}
# Per app, each route's path regex and methods: built at the first 405, not per request.
_ROUTE_METHODS: weakref.WeakKeyDictionary[Any, list[tuple[re.Pattern[str], frozenset[str]]]] = (
    weakref.WeakKeyDictionary()
)


def allowed_methods(request: Request) -> str:
    """Every method some route of the app takes on this request's path, for `Allow`."""
    app = request.app
    table = _ROUTE_METHODS.get(app)
    if table is None:
        table = [(compile_path(path)[0], methods) for path, methods in every_route(app.routes) if methods]
        _ROUTE_METHODS[app] = table
    path = get_route_path(request.scope)
    methods = {method for regex, route_methods in table if regex.match(path) for method in route_methods}
    return ", ".join(sorted(methods, key=lambda method: (_METHOD_ORDER.get(method, len(_METHOD_ORDER)), method)))


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


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


def install(app: FastAPI, *, html_pages: tuple[str, HtmlPage] | None = None) -> None:
    """Every error handler of the app, in one place. With `html_pages=(prefix, page)`, an
    error on a path under `prefix + "/"` is that page (same status, title and detail)
    instead of problem+json: the console's routes get the console's error page."""
    handlers = _Handlers(html_pages)
    app.add_exception_handler(DomainError, handlers.domain_error)
    app.add_exception_handler(AgentNotFound, handlers.lookup_error)
    app.add_exception_handler(EnvironmentNotFound, handlers.lookup_error)
    app.add_exception_handler(VariantNotFound, handlers.lookup_error)
    app.add_exception_handler(RequestValidationError, handlers.validation_error)
    app.add_exception_handler(StarletteHTTPException, handlers.http_error)
    for infrastructure in (OSError, sqlalchemy.exc.SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError):
        app.add_exception_handler(infrastructure, handlers.infrastructure_error)
    app.add_exception_handler(Exception, handlers.unexpected)


# --- OpenAPI: shared error responses -------------------------------------------------


class ProblemFieldError(BaseModel):
    """One bad field or parameter."""

    param: str = Field(description="Its path: `config.temperature`, `data[3].input_tokens`, `after`, ...")
    message: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="A URI per `code`, documented with it in the API docs.")
    title: str = Field(description="A short, fixed summary of the `code`.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="A sentence about this occurrence, naming what was wrong.")
    code: str = Field(description="The stable, snake_case code to act on (`slug_taken`, `validation_error`, ...).")
    instance: str | None = Field(None, description="The path of the request.")
    errors: list[ProblemFieldError] | None = Field(
        None, description="Validation failures only: every bad field or parameter, not just the first."
    )


# Component name and description for each error status an operation may list.
RESPONSE_COMPONENTS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed JSON (`malformed_json`)."),
    401: (
        "Unauthorized",
        "No API key, or one that is not valid, revoked or expired (`unauthorized`); see `WWW-Authenticate`.",
    ),
    403: (
        "Forbidden",
        "The API key's scope does not allow this (`insufficient_scope`), or its environment does not "
        "(`environment_forbidden`).",
    ),
    404: ("NotFound", "The agent, variant, environment, ... named does not exist (`resource_missing`)."),
    409: ("Conflict", "The request conflicts with the current state (`slug_taken`, `variant_active`, ...)."),
    412: ("PreconditionFailed", "`If-Match` did not match the current ETag (`precondition_failed`)."),
    413: ("PayloadTooLarge", "The body is over 4 MiB (`payload_too_large`)."),
    415: ("UnsupportedMediaType", "The body is not JSON (`unsupported_media_type`)."),
    429: ("TooManyRequests", "The API key is over its rate limit (`rate_limited`); retry after `Retry-After`."),
    422: (
        "ValidationError",
        "Invalid input; `errors` names every bad field or unknown query parameter "
        "(`validation_error`, `unknown_parameter`, `inconsistent_config`, ...).",
    ),
    503: (
        "ServiceUnavailable",
        "The database is unreachable, not ready, or kept refusing the transaction; retry after `Retry-After`.",
    ),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that uses the database: each status, and 503 (the
    database unreachable or busy), becomes a `$ref` in `openapi.json`."""
    return {status: {"description": RESPONSE_COMPONENTS[status][1], "model": Problem} for status in (*statuses, 503)}
