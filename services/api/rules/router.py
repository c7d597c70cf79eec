"""HTTP routes for an agent's targeting rules (reads `read`, writes `write`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.api.deps import DB, EnvironmentRef, Write
from services.api.errors import responses
from services.api.http import object_response
from services.api.rules import service
from services.api.rules.schemas import RuleSetRead, RuleSetReplace
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents/{agent}/rules", tags=["rules"], route_class=StrictRoute)


@router.get(
    "",
    response_model=RuleSetRead,
    summary="Get an agent's targeting rules in an environment",
    responses=responses(403, 404, 422),
)
async def get_rule_set(request: Request, agent: str, db: DB, environment: EnvironmentRef) -> Response:
    """The agent's rule set in the environment (`?environment=`, default `production`), with
    its `ETag`; a set never written is version 0 (ETag `"0"`), no rules, `updated_at` null.
    304 for a matching `If-None-Match`."""
    return object_response(request, await service.get_rule_set(db, agent, environment))


@router.put(
    "",
    response_model=RuleSetRead,
    summary="Replace an agent's targeting rules in an environment",
    responses=responses(400, 403, 404, 412, 413, 415, 422),
)
async def replace_rule_set(
    request: Request, agent: str, body: RuleSetReplace, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Replaces the whole set. A rule without `id` keeps the id of the current rule with its
    name, else gets a new one; a variant named by slug is stored by its id. Each rule's served
    config must pass the token rule (422 `inconsistent_config` naming `rules[i].serve`); a
    variant it names must exist (404 `resource_missing`, `param` `rules[i].serve.variant`).
    An identical set changes nothing; otherwise the set's version moves (the agent's does
    not) and a revision (`target` `rule_set`, `target_id` the environment's id, `action`
    `rules`) records it. Honours `If-Match` (412 when stale; `"0"` for a set never written)."""
    return object_response(request, await service.replace_rule_set(db, agent, environment, body, context=context))
