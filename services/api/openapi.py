"""The OpenAPI document: FastAPI's, with shared error responses and merge-patch bodies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.api.access.rules import required_scope
from services.api.errors import PROBLEM_MEDIA_TYPE, RESPONSE_COMPONENTS

BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key (`avk_...`). Scopes nest: admin > write > read > resolve.",
}

IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry safely: the same key with the same request within 24 h returns the first "
    "response again (`Idempotent-Replayed: true`); with another request, 409 `idempotency_key_reused`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI 3.1 document, built once and cached on the app."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        app.openapi_schema = refactor_openapi(schema)
    return app.openapi_schema


def refactor_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Point every 4xx/5xx of every operation at a shared `components.responses` entry,
    document the merge-patch media type on PATCH operations, and the key each needs."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["apiKey"] = BEARER
    shared = components.setdefault("responses", {})
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, paths in schema.get("paths", {}).items():
        for method, operation in paths.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if method == "post" and path.startswith("/v1/"):
                # IdempotencyMiddleware handles the header before routing; document it here.
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY_PARAMETER)
                operation["responses"].setdefault("409", {})
            if path.startswith("/v1/"):
                operation["responses"].setdefault("422", {})  # an unknown query parameter (strict.py)
            needed = required_scope(method.upper(), path)
            if needed is not None:
                operation["security"] = [{"apiKey": []}]
                operation["x-required-scope"] = needed
                operation["description"] = (
                    operation.get("description", "") + f"\n\nNeeds an API key with scope `{needed}` or above."
                ).strip()
                for status in ("401", "403", "429"):
                    operation["responses"].setdefault(status, {})
            content = operation.get("requestBody", {}).get("content", {})
            if method == "patch" and "application/json" in content:
                # PATCH bodies are JSON merge patches (RFC 7396); both media types work.
                content["application/merge-patch+json"] = content["application/json"]
            for status in list(operation["responses"]):
                if not status.isdigit() or int(status) < 400:
                    continue
                name, description = RESPONSE_COMPONENTS[int(status)]
                shared[name] = {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}}
                operation["responses"][status] = {"$ref": f"#/components/responses/{name}"}
    schemas = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema
