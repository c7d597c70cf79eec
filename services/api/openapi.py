"""The OpenAPI document: FastAPI's, with shared error responses, merge-patch bodies and examples."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from services.api.access.rules import required_scope
from services.api.errors import PROBLEM_MEDIA_TYPE, PROBLEMS, RESPONSE_COMPONENTS, TYPE_BASE
from services.api.idempotency import is_read

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


# An example of each problem code: the request path, the detail and, for validation errors,
# `errors`. The shared error responses show one per code of their status (from errors.py's
# map, so a new code shows with its title alone until it gets a line here).
A = "/v1/agents/support-bot"
PROBLEM_EXAMPLES: dict[str, tuple[str, str, list[dict[str, str]] | None]] = {
    "malformed_json": (
        "/v1/agents",
        "The request body is not valid JSON: Expecting ',' delimiter: line 1 column 18",
        None,
    ),
    "unauthorized": ("/v1/agents", "An API key is required: send it as `Authorization: Bearer <key>`", None),
    "insufficient_scope": (
        "/v1/agents",
        "The API key 'support-bot-prod' has scope 'resolve'; this needs 'write' or above",
        None,
    ),
    "environment_forbidden": (
        f"{A}/resolved?environment=production",
        "The API key 'staging-ci' is bound to environment 'staging'; it cannot name 'production'",
        [{"param": "environment", "message": "the key is bound to 'staging'"}],
    ),
    "resource_missing": (A, "Agent 'support-bot' not found", None),
    "route_not_found": ("/v1/agent", "No route matches GET /v1/agent", None),
    "slug_taken": (
        "/v1/agents",
        "Slug 'support-bot' is already taken by another agent",
        [{"param": "slug", "message": "already taken"}],
    ),
    "key_name_taken": ("/v1/keys", "An API key named 'ci' already exists (revoked keys keep their names)", None),
    "last_admin_key": ("/v1/keys/ops", "The API key 'ops' is the last live admin key: create another one first", None),
    "variant_active": (
        f"{A}/variants/concise",
        "Variant 'concise' is active; activate another variant or deactivate it first",
        None,
    ),
    "variant_in_experiment": (
        f"{A}/variants/concise",
        "Variant 'concise' is an arm of experiment 'concise-vs-base' (running);"
        " delete the draft or wait until it is stopped",
        None,
    ),
    "experiment_not_draft": (
        f"{A}/experiments/concise-vs-base",
        "Experiment 'concise-vs-base' is running; only drafts can be deleted",
        None,
    ),
    "experiment_running": (A, "Experiment 'concise-vs-base' of agent 'support-bot' is running; stop it first", None),
    "duplicate_arm": (
        f"{A}/experiments/concise-vs-base/start",
        "Arm 1 is live, and arms 0 and 1 would both serve the base config; change an arm or activate another variant",
        [{"param": "arms[1].variant", "message": "arms 0 and 1 would both serve the base config"}],
    ),
    "agent_not_archived": (A, "Agent 'support-bot' is not archived; archive it (DELETE without purge) first", None),
    "environment_protected": (
        "/v1/environments/production",
        "Environment 'production' cannot be deleted: every installation has it",
        None,
    ),
    "environment_in_use": (
        "/v1/environments/staging",
        "Environment 'staging' is in use: variant 'concise' of agent 'support-bot' is active in it",
        None,
    ),
    "environment_limit_reached": (
        "/v1/environments",
        "There are 100 environments already, the most an installation may have; delete one first",
        None,
    ),
    "invalid_status": (
        f"{A}/experiments/concise-vs-base/stop",
        "Experiment 'concise-vs-base' is a draft; only a running experiment can be stopped",
        None,
    ),
    "nothing_to_undo": (
        f"{A}/undo",
        "Nothing to undo on agent 'support-bot': every change since its creation is undone",
        None,
    ),
    "undo_conflict": (f"{A}/undo", "Variant 'concise' is active now; deactivate it before undoing its creation", None),
    "revision_not_restorable": (
        f"{A}/variants/concise/restore",
        "The variant did not exist right after revision rev_01JDQ3W5A9C1E3G5J7K9M1P3R5",
        None,
    ),
    "idempotency_key_reused": ("/v1/agents", "Idempotency key 'K' was previously used with different parameters", None),
    "idempotency_key_in_use": (
        "/v1/agents",
        "A request with idempotency key 'K' is still in flight; retry when it has finished",
        None,
    ),
    "unsupported_media_type": (
        "/v1/agents",
        "Send the body as JSON with Content-Type: application/json (got text/plain)",
        None,
    ),
    "validation_error": (
        "/v1/agents",
        "Invalid request: config.temperature: Input should be less than or equal to 2; name: Field required",
        [
            {"param": "config.temperature", "message": "Input should be less than or equal to 2"},
            {"param": "name", "message": "Field required"},
        ],
    ),
    "rate_limited": ("/v1/agents", "The API key 'support-bot-prod' is over its rate limit; retry in 1 s", None),
    "invalid_cursor": (
        "/v1/agents",
        "Invalid request: after: must be the id of an agent (agt_ and a ULID)",
        [{"param": "after", "message": "must be the id of an agent (agt_ and a ULID)"}],
    ),
    "unknown_parameter": (
        "/v1/agents",
        "Invalid request: starting_after: unknown query parameter; did you mean `after`?",
        [{"param": "starting_after", "message": "unknown query parameter; did you mean `after`?"}],
    ),
    "invalid_template": (
        f"{A}/variants",
        "overrides.system_prompt: '{{user.name}}' at character 14 is not a placeholder: write {{name}} with a "
        "name of letters, digits and _ (not starting with a digit)",
        [
            {
                "param": "overrides.system_prompt",
                "message": "'{{user.name}}' at character 14 is not a placeholder: write {{name}} with a name of "
                "letters, digits and _ (not starting with a digit)",
            }
        ],
    ),
    "undeclared_variable": (
        f"{A}/variants",
        "Undeclared template variable in the config of the variant: overrides.system_prompt: '{{tone}}' uses the "
        "variable 'tone', which is not declared in variables",
        [
            {
                "param": "overrides.system_prompt",
                "message": "'{{tone}}' uses the variable 'tone', which is not declared in variables",
            }
        ],
    ),
    "invalid_schema": (
        f"{A}/variants",
        "Invalid tool parameters in the config of the variant: overrides.tools.search.parameters.properties.q.type: "
        "'strin' is not valid under any of the given schemas",
        [
            {
                "param": "overrides.tools.search.parameters.properties.q.type",
                "message": "'strin' is not valid under any of the given schemas",
            }
        ],
    ),
    "missing_variable": (
        f"{A}/render",
        "Cannot render the prompts: variables.question: required, and has no default",
        [{"param": "variables.question", "message": "required, and has no default"}],
    ),
    "unknown_variable": (
        f"{A}/render",
        "Cannot render the prompts: variables.questoin: not a declared variable",
        [{"param": "variables.questoin", "message": "not a declared variable"}],
    ),
    "model_limit": (
        f"{A}/variants",
        "The resolved config of the variant is over its model's limit: max_tokens (20000) exceeds the "
        "max_output_tokens of openai/gpt-4o-mini in the model catalog (16384)",
        [
            {
                "param": "overrides.max_tokens",
                "message": "max_tokens (20000) exceeds the max_output_tokens of openai/gpt-4o-mini in the model "
                "catalog (16384)",
            }
        ],
    ),
    "inconsistent_config": (
        f"{A}/variants",
        "The resolved config breaks the rule input_token_limit + max_tokens <= context_window: "
        "input_token_limit (8000) + max_tokens (130000) = 138000 exceeds context_window (128000)",
        [
            {
                "param": "config.context_window",
                "message": "input_token_limit (8000) + max_tokens (130000) = 138000 exceeds context_window (128000)",
            },
            {
                "param": "config.input_token_limit",
                "message": "input_token_limit (8000) + max_tokens (130000) = 138000 exceeds context_window (128000)",
            },
            {
                "param": "overrides.max_tokens",
                "message": "input_token_limit (8000) + max_tokens (130000) = 138000 exceeds context_window (128000)",
            },
        ],
    ),
    "slug_reserved": (
        f"{A}/variants",
        "Invalid request: slug: 'base' is reserved ('base' and 'live' name configs, not variants)",
        [{"param": "slug", "message": "'base' is reserved ('base' and 'live' name configs, not variants)"}],
    ),
    "service_unavailable": ("/v1/agents", "The database is unavailable; retry shortly", None),
    "not_ready": ("/readyz", "Migrations are at e4b6c8d0f2a4, head is f6c8d0e2b4a6", None),
}


def problem_examples(status: int) -> dict[str, dict[str, Any]]:
    """One example problem per code of this status, named by the code."""
    examples = {}
    for code, kind in PROBLEMS.items():
        if kind.status != status:
            continue
        instance, detail, errors = PROBLEM_EXAMPLES.get(code, ("/v1/agents", kind.title, None))
        value: dict[str, Any] = {
            "type": TYPE_BASE + code,
            "title": kind.title,
            "status": status,
            "detail": detail,
            "code": code,
            "instance": instance,
        }
        if errors:
            value["errors"] = errors
        examples[code] = {"summary": kind.title, "value": value}
    return examples


def _schema_examples(schema: dict[str, Any] | None, components: dict[str, Any]) -> list[Any]:
    """The `examples` of a schema, following a `$ref` to its component."""
    while schema is not None and "$ref" in schema:
        schema = components.get(schema["$ref"].removeprefix("#/components/schemas/"))
    return list(schema.get("examples", [])) if schema else []


def add_examples(content: dict[str, Any], components: dict[str, Any]) -> None:
    """Give each JSON media type without an example its schema's first, so Swagger UI and
    ReDoc show (and prefill) a real object rather than one made of `"string"` and `0`."""
    for media_type, media in content.items():
        if not media_type.endswith("json") or "example" in media or "examples" in media:
            continue
        examples = _schema_examples(media.get("schema"), components)
        if examples:
            media["example"] = examples[0]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI 3.1 document, built once and cached on the app."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        restore_examples(schema, app)
        app.openapi_schema = refactor_openapi(schema)
    return app.openapi_schema


def _models() -> Iterator[type[BaseModel]]:
    """Every pydantic model of the service (parametrized generics such as `Page[AgentRead]` included)."""
    seen: set[type[BaseModel]] = set()
    pending = [BaseModel]
    while pending:
        for model in pending.pop().__subclasses__():
            if model not in seen:
                seen.add(model)
                pending.append(model)
                if model.__module__.startswith("services."):
                    yield model


def _operations(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route, whatever the nesting of its routers."""
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        pairs = [(context.path, context.original_route) for context in contexts()] if contexts else [("", route)]
        for path, original in pairs:
            if isinstance(original, APIRoute) and original.include_in_schema:
                yield path or original.path_format, original


def _declared_examples(model: type[BaseModel]) -> list[Any]:
    """A model's `json_schema_extra` examples as written (its JSON schema would sort their keys)."""
    extra: Any = model.model_config.get("json_schema_extra")
    if callable(extra):  # made from the model itself (a page's, from its item's)
        made: dict[str, Any] = {}
        extra(made, model)
        extra = made
    return copy.deepcopy(list(extra.get("examples", []))) if isinstance(extra, dict) else []


def restore_examples(schema: dict[str, Any], app: FastAPI) -> None:
    """Put the examples back as they were declared. FastAPI drops every null from the
    document it builds (`jsonable_encoder(..., exclude_none=True)`), examples included, so
    `"archived_at": null` would vanish and leave an example its own schema refuses. The
    models' examples (`json_schema_extra`) go back on their components, the routes' own
    (`responses=`, `openapi_examples=`) on their operations."""
    components = schema.get("components", {}).get("schemas", {})
    by_title = {component.get("title"): component for component in components.values()}
    for model in _models():
        component = by_title.get(model.__name__)
        if component is not None and "examples" in component:
            component["examples"] = _declared_examples(model)
    for path, route in _operations(app):
        for method in route.methods or ():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            body = getattr(route.body_field.field_info, "openapi_examples", None) if route.body_field else None
            if body:
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    media["examples"] = copy.deepcopy(body)
            for status, response in route.responses.items():
                documented = operation["responses"].get(str(status), {}).get("content", {})
                for media_type, media in response.get("content", {}).items():
                    for key in ("example", "examples"):
                        if key in media and media_type in documented:
                            documented[media_type][key] = copy.deepcopy(media[key])


def refactor_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Point every 4xx/5xx of every operation at a shared `components.responses` entry (with
    an example of each problem code), document the merge-patch media type on PATCH
    operations and the key each needs, and show an example of every JSON body."""
    components = schema.setdefault("components", {})
    schemas = components.get("schemas", {})
    components.setdefault("securitySchemes", {})["apiKey"] = BEARER
    shared = components.setdefault("responses", {})
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, paths in schema.get("paths", {}).items():
        for method, operation in paths.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if method == "post" and path.startswith("/v1/") and not is_read(path):
                # IdempotencyMiddleware handles the header before routing; document it here
                # (not on the POSTs that only read: resolve and render ignore it).
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY_PARAMETER)
                operation["responses"].setdefault("409", {})
            if path.startswith("/v1/"):
                operation["responses"].setdefault("422", {})  # an unknown query parameter (strict.py)
            # OFREP's operations document the protocol's error shapes themselves (ofrep/schemas.py).
            ofrep = path.startswith("/ofrep/")
            if ofrep:
                operation["responses"].pop("422", None)  # FastAPI's: a bad `?environment=` is OFREP's 400
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
            add_examples(content, schemas)
            if method == "patch" and "application/json" in content:
                # PATCH bodies are JSON merge patches (RFC 7396); both media types work.
                content["application/merge-patch+json"] = content["application/json"]
            for status in list(operation["responses"]):
                if not status.isdigit() or int(status) < 400 or ofrep:
                    add_examples(operation["responses"][status].get("content", {}), schemas)
                    continue
                name, description = RESPONSE_COMPONENTS[int(status)]
                shared[name] = {
                    "description": description,
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": problem_ref, "examples": problem_examples(int(status))}},
                }
                operation["responses"][status] = {"$ref": f"#/components/responses/{name}"}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema
