"""OFREP's shapes: the request's context read into ours, an evaluation and a failure as the
OpenFeature Remote Evaluation Protocol writes them, and their OpenAPI description.

The protocol (open-feature/protocol, service/openapi.yaml): a request is `{"context":
{...}}`; a success is `{"key", "value", "reason", "variant", "metadata"}`; a failure is
`{"key", "errorCode", "errorDetails"}` (the bulk form's whole-request failure has no
`key`). Our value is the `/resolved` body, whatever the flag type a client asks for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.api.resolution.schemas import RESOLVED_EXAMPLE
from services.api.strict import NotUtf8, loads
from services.shared.rules import (
    ATTRIBUTE_MAX_LENGTH,
    ATTRIBUTE_PATTERN,
    MAX_ATTRIBUTES,
    VALUE_MAX_LENGTH,
    attribute_errors,
)

# OpenFeature's resolution reasons, by the `source` of a resolution (contract 1.1,
# "Interoperability"). A preview (`source: preview`) has no OFREP form.
REASONS = {
    "rule": "TARGETING_MATCH",
    "experiment": "SPLIT",
    "rollout": "SPLIT",
    "variant": "STATIC",
    "agent": "DEFAULT",
}
TARGETING_KEY = "targetingKey"
AGENTS = "agents"  # the bulk form's filter: which agents to evaluate
SUBJECT_MAX_LENGTH = 256  # as `subject` everywhere else
MAX_AGENTS = 1000
AGENT_REF_MAX_LENGTH = 64  # a slug's limit; ids are shorter


class OfrepFailure(Exception):
    """A request OFREP answers with a failure: HTTP `status`, the protocol's `code`
    (`PARSE_ERROR`, `INVALID_CONTEXT`, `FLAG_NOT_FOUND`, `GENERAL`) and `details`."""

    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class Context:
    """An evaluation context in our terms: the subject (`targetingKey`), the attributes
    (every other key) and, in the bulk form, the agents asked for (None: every agent)."""

    subject: str | None
    attributes: dict[str, Any]
    agents: tuple[str, ...] | None = None


def _json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def parse_context(body: bytes, content_type: str | None, *, bulk: bool) -> Context:
    """The context of an evaluation request, checked as `POST .../resolve` checks its own:
    `PARSE_ERROR` for a body that is not a JSON object (in UTF-8, no key repeated, sent as
    `application/json`), `INVALID_CONTEXT` for a missing or invalid context."""
    if not _json_media_type(content_type):
        raise OfrepFailure(
            400,
            "PARSE_ERROR",
            f"Send the body as JSON with Content-Type: application/json (got {content_type or 'none'})",
        )
    try:
        request = loads(body)
    except (json.JSONDecodeError, NotUtf8) as error:
        raise OfrepFailure(400, "PARSE_ERROR", f"The request body is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise OfrepFailure(400, "PARSE_ERROR", 'The request body must be a JSON object: {"context": {...}}')
    context = request.get("context")
    if not isinstance(context, dict):
        what = "missing" if context is None else f"a {type(context).__name__}, not an object"
        raise OfrepFailure(400, "INVALID_CONTEXT", f'context is {what}: send {{"context": {{"targetingKey": ...}}}}')
    if len(context) > MAX_ATTRIBUTES:
        raise OfrepFailure(
            400, "INVALID_CONTEXT", f"context: at most {MAX_ATTRIBUTES} keys, targetingKey included, not {len(context)}"
        )
    attributes = dict(context)
    subject = attributes.pop(TARGETING_KEY, None)
    if subject is not None and (not isinstance(subject, str) or not 1 <= len(subject) <= SUBJECT_MAX_LENGTH):
        raise OfrepFailure(
            400, "INVALID_CONTEXT", f"context.targetingKey: a string of 1-{SUBJECT_MAX_LENGTH} characters"
        )
    agents = None
    if bulk and AGENTS in attributes:
        agents = _agents(attributes.pop(AGENTS))
    problems = [
        f"context.{found['param'].removeprefix('attributes.')}: "
        + found["message"].replace("pass it as the subject", "send it as targetingKey")
        for found in attribute_errors(attributes)
    ]
    if problems:
        raise OfrepFailure(400, "INVALID_CONTEXT", "; ".join(problems))
    return Context(subject, attributes, agents)


def _agents(value: Any) -> tuple[str, ...]:
    """The bulk form's `agents`: 1-1,000 agent ids or slugs, in order, each once."""
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_AGENTS
        or not all(isinstance(ref, str) and 1 <= len(ref) <= AGENT_REF_MAX_LENGTH for ref in value)
    ):
        raise OfrepFailure(
            400,
            "INVALID_CONTEXT",
            f"context.agents: a list of 1-{MAX_AGENTS} agent ids or slugs (strings of 1-{AGENT_REF_MAX_LENGTH} "
            "characters)",
        )
    return tuple(dict.fromkeys(value))


def evaluation(key: str, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A successful evaluation of the flag `key` whose value is the `/resolved` body."""
    metadata: dict[str, Any] = {"source": resolved["source"], "environment": resolved["environment"]}
    for name in ("experiment_id", "arm", "rule_id"):
        if resolved.get(name) is not None:
            metadata[name] = resolved[name]
    return {
        "key": key,
        "value": resolved,
        "reason": REASONS.get(resolved["source"], "UNKNOWN"),
        "variant": resolved["variant_slug"] or "base",
        "metadata": metadata,
    }


def failure(key: str | None, code: str, details: str) -> dict[str, Any]:
    """A failed evaluation (with `key`) or a failed bulk request (without)."""
    return (
        {"key": key, "errorCode": code, "errorDetails": details}
        if key is not None
        else {
            "errorCode": code,
            "errorDetails": details,
        }
    )


# --- the OpenAPI description ----------------------------------------------------------------

_VALUE = {
    "anyOf": [
        {"type": "string", "maxLength": VALUE_MAX_LENGTH},
        {"type": "number"},
        {"type": "boolean"},
    ],
    "description": "An attribute: a string (up to 1,024 characters), a number or a boolean.",
}
_NAMES = {
    "pattern": ATTRIBUTE_PATTERN,
    "minLength": 1,
    "maxLength": ATTRIBUTE_MAX_LENGTH,
    "not": {"const": "subject"},
}
_TARGETING_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": SUBJECT_MAX_LENGTH,
    "description": "The subject: what a split assigns to an arm, and the attribute `subject` of rules. "
    "Omitted: no subject.",
}


def _context_schema(*, bulk: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {TARGETING_KEY: _TARGETING_KEY}
    if bulk:
        properties[AGENTS] = {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": AGENT_REF_MAX_LENGTH},
            "minItems": 1,
            "maxItems": MAX_AGENTS,
            "description": "Evaluate only these agents (ids or slugs), in this order; omitted: every agent not "
            "archived, by slug.",
        }
    return {
        "type": "object",
        "description": "The evaluation context: `targetingKey` is the subject, every other key an attribute "
        f"of the targeting rules{' (but `agents`)' if bulk else ''}. At most 50 keys in all.",
        "properties": properties,
        "propertyNames": _NAMES,
        "additionalProperties": _VALUE,
        "maxProperties": MAX_ATTRIBUTES,
    }


def request_body(*, bulk: bool) -> dict[str, Any]:
    """The `requestBody` of an evaluation, for `openapi_extra`."""
    example: dict[str, Any] = {"context": {"targetingKey": "user-42", "plan": "pro", "seats": 40, "beta": True}}
    if bulk:
        example["context"]["agents"] = ["support-bot", "triage-bot"]
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["context"],
                    "properties": {"context": _context_schema(bulk=bulk)},
                    "description": "An OFREP evaluation request.",
                },
                "example": example,
            }
        },
    }


_RESOLVED_REF = {"$ref": "#/components/schemas/ResolvedRead"}
EVALUATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["key", "value", "reason", "variant", "metadata"],
    "description": "A successful evaluation: the flag's value is the agent's resolved config.",
    "properties": {
        "key": {"type": "string", "description": "The flag key: the agent as the request named it."},
        "value": {**_RESOLVED_REF},
        "reason": {
            "type": "string",
            "enum": ["TARGETING_MATCH", "SPLIT", "STATIC", "DEFAULT"],
            "description": "`TARGETING_MATCH`: a targeting rule; `SPLIT`: an experiment's or rollout's arm; "
            "`STATIC`: the active variant; `DEFAULT`: the base config.",
        },
        "variant": {"type": "string", "description": "The variant's slug, or `base`."},
        "metadata": {
            "type": "object",
            "required": ["source", "environment"],
            "description": "Where the value came from.",
            "properties": {
                "source": {"type": "string", "description": "The resolution's `source`."},
                "environment": {"type": "string", "description": "The environment's slug."},
                "experiment_id": {"type": "string", "description": "The split that chose the arm, when one did."},
                "arm": {"type": "integer", "description": "The subject's arm, when a split chose it."},
                "rule_id": {"type": "string", "description": "The targeting rule that served it, when one did."},
            },
        },
    },
}
FAILURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["key", "errorCode"],
    "description": "A failed evaluation of one flag.",
    "properties": {
        "key": {"type": "string", "description": "The flag key as the request named it."},
        "errorCode": {
            "type": "string",
            "enum": ["PARSE_ERROR", "INVALID_CONTEXT", "FLAG_NOT_FOUND", "GENERAL"],
            "description": "The OpenFeature error code.",
        },
        "errorDetails": {"type": "string", "description": "What went wrong."},
    },
}
BULK_FAILURE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errorCode"],
    "description": "A bulk request that failed as a whole.",
    "properties": {
        "errorCode": {
            "type": "string",
            "enum": ["PARSE_ERROR", "INVALID_CONTEXT", "GENERAL"],
            "description": "The OpenFeature error code.",
        },
        "errorDetails": {"type": "string", "description": "What went wrong."},
    },
}
GENERAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["errorDetails"],
    "description": "A refusal or an error outside the evaluation (the protocol's general error response).",
    "properties": {"errorDetails": {"type": "string", "description": "What went wrong."}},
}
BULK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["flags"],
    "description": "Every agent asked for (or every agent), each an evaluation or a failure.",
    "properties": {
        "flags": {
            "type": "array",
            "items": {"oneOf": [EVALUATION_SCHEMA, FAILURE_SCHEMA]},
            "description": "One entry per agent, in the order asked for (else by slug).",
        }
    },
}


def _example_evaluation() -> dict[str, Any]:
    return evaluation("support-bot", RESOLVED_EXAMPLE)


def _json_content(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema, "example": example}}


def _general(description: str, details: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": _json_content(GENERAL_SCHEMA, {"errorDetails": details}),
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: _general(
        "No API key, or one that does not work (`WWW-Authenticate: Bearer`).",
        "An API key is required: send it as `Authorization: Bearer <key>`",
    ),
    403: _general(
        "The key's scope is below `resolve`, or it is bound to another environment than `?environment=` names.",
        "The API key 'staging-ci' is bound to environment 'staging'; it cannot name 'production'",
    ),
    413: _general("The body is over MAX_BODY_BYTES.", "The request body is over the limit of 1048576 bytes"),
    429: _general(
        "The key is over its rate limit.",
        "The API key 'support-bot-prod' is over its rate limit; retry in 1 s",
        _RETRY_AFTER,
    ),
    503: _general(
        "The database is unavailable; retry after `Retry-After`.",
        "The database is unavailable; retry shortly",
        _RETRY_AFTER,
    ),
}


def single_responses() -> dict[int | str, dict[str, Any]]:
    """The `responses=` of the single evaluation, in the protocol's shapes."""
    return {
        200: {"description": "The evaluation.", "content": _json_content(EVALUATION_SCHEMA, _example_evaluation())},
        400: {
            "description": "A body that is not a JSON object (`PARSE_ERROR`) or an invalid context "
            "(`INVALID_CONTEXT`).",
            "content": _json_content(
                FAILURE_SCHEMA,
                failure("support-bot", "INVALID_CONTEXT", "context.plan: a value is a string, a number or a boolean"),
            ),
        },
        404: {
            "description": "No agent, or an archived one, by that id or slug (`FLAG_NOT_FOUND`); or no such "
            "environment.",
            "content": _json_content(
                FAILURE_SCHEMA, failure("support-bot", "FLAG_NOT_FOUND", "Agent 'support-bot' not found")
            ),
        },
        500: {
            "description": "An unexpected error (`GENERAL`).",
            "content": _json_content(
                FAILURE_SCHEMA,
                failure("support-bot", "GENERAL", "An unexpected error occurred; it has been logged"),
            ),
        },
        **_REFUSALS,
    }


def bulk_responses() -> dict[int | str, dict[str, Any]]:
    """The `responses=` of the bulk evaluation, in the protocol's shapes."""
    missing = failure("triage-bot", "FLAG_NOT_FOUND", "Agent 'triage-bot' not found")
    return {
        200: {
            "description": "Each agent's evaluation.",
            "headers": {"ETag": {"description": "A hash of this answer.", "schema": {"type": "string"}}},
            "content": _json_content(BULK_SCHEMA, {"flags": [_example_evaluation(), missing]}),
        },
        304: {
            "description": "Unchanged since the ETag `If-None-Match` names.",
            "headers": {"ETag": {"description": "The same ETag.", "schema": {"type": "string"}}},
        },
        400: {
            "description": "A body that is not a JSON object (`PARSE_ERROR`) or an invalid context "
            "(`INVALID_CONTEXT`).",
            "content": _json_content(
                BULK_FAILURE_SCHEMA,
                failure(None, "INVALID_CONTEXT", "context.agents: a list of 1-1000 agent ids or slugs"),
            ),
        },
        404: {
            "description": "No environment by that id or slug (`GENERAL`).",
            "content": _json_content(BULK_FAILURE_SCHEMA, failure(None, "GENERAL", "Environment 'staging' not found")),
        },
        500: {
            "description": "An unexpected error (`GENERAL`).",
            "content": _json_content(
                BULK_FAILURE_SCHEMA, failure(None, "GENERAL", "An unexpected error occurred; it has been logged")
            ),
        },
        **_REFUSALS,
    }
