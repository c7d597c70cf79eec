"""HTTP routes for outcomes, usage and experiment results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError, WithJsonSchema

from services.api.deps import DB, Caller, EnvironmentFilter, EnvironmentRef
from services.api.errors import responses
from services.api.outcomes import service
from services.api.outcomes.schemas import (
    Accepted,
    ExperimentResults,
    OutcomeBatch,
    OutcomeIn,
    Usage,
    outcomes_body_schema,
)
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents/{agent}", tags=["outcomes"], route_class=StrictRoute)

_BODY = Body(
    ...,
    description='One outcome, or `{"data": [...]}` with 1 to 1,000 of them (stored whole or not at all).',
    openapi_examples={
        "one": {
            "value": {
                "variant_id": None,
                "input_tokens": 812,
                "output_tokens": 164,
                "latency_ms": 930.5,
                "success": True,
            }
        },
        "batch": {
            "value": {"data": [{"variant_id": None, "input_tokens": 812, "output_tokens": 164, "latency_ms": 930.5}]}
        },
    },
)


# Parsed by hand (`_parse`), so a bad batch names every bad item; documented as what it takes.
OutcomesBody = Annotated[dict[str, Any], WithJsonSchema(outcomes_body_schema()), _BODY]


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        # Reported like any body: every bad item named (`data[3].input_tokens`).
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in error.errors()]) from None


@router.post(
    "/outcomes",
    status_code=202,
    response_model=Accepted,
    summary="Report one outcome or a batch of up to 1,000",
    responses=responses(400, 403, 404, 413, 415, 422),
)
async def post_outcomes(
    agent: str, db: DB, body: OutcomesBody, environment: EnvironmentRef, caller: Caller
) -> JSONResponse:
    """Reports what runs cost and how they went: one outcome, or `{"data": [...]}` with up to
    1,000, stored whole or not at all (every bad item named, such as
    `data[3].input_tokens`). 202 means stored: they count in `/usage` and in results at
    once. An outcome belongs to an experiment's arm when it names the experiment and the
    arm's variant (null for a `base` arm). Each is stored in an environment: the one it
    names (`environment`, by slug or id; unknown: 422 naming the item), else its
    experiment's, else the request's (`?environment=`, the key's, else `production`). A key
    bound to an environment may name no other, nor report for another's experiment (403
    `environment_forbidden`)."""
    batch = "data" in body
    outcomes = _parse(OutcomeBatch, body).data if batch else [_parse(OutcomeIn, body)]
    accepted = await service.store(db, agent, outcomes, batch=batch, environment=environment, key=caller)
    return JSONResponse(Accepted(object="outcome_batch", accepted=accepted).model_dump(), status_code=202)


@router.get(
    "/usage",
    response_model=Usage,
    summary="Tokens and runs, overall and by variant",
    responses=responses(403, 404, 422),
)
async def get_usage(agent: str, db: DB, environment: EnvironmentFilter) -> JSONResponse:
    """Tokens and outcomes reported for the agent, overall and by the config that served them
    (`variant_id: null` for the base config); all zero for a new agent. In the environment
    `?environment=` names (`"environment"`: its slug), else summed over every environment
    (`"environment": null`); a key bound to an environment sees its own only."""
    return JSONResponse(await service.usage(db, agent, environment=environment))


@router.get(
    "/experiments/{experiment}/results",
    response_model=ExperimentResults,
    summary="Per-arm figures and comparisons with the control",
    responses=responses(403, 404, 422),
)
async def get_results(agent: str, experiment: str, db: DB, environment: EnvironmentRef) -> JSONResponse:
    """Each arm's counts, token means, latency percentiles, success rate and mean score with
    95% intervals (Wilson, t), and its difference from the control with two-sided p-values
    (pooled z-test, Welch's t-test). A figure with no data behind it is null. Latency
    percentiles are exact for an arm of up to 100,000 outcomes, and within 1% beyond (a
    DDSketch); every other figure is exact."""
    return JSONResponse(await service.results(db, agent, experiment, environment=environment))
