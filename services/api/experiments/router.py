"""HTTP routes for experiments."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import DB, EnvironmentRef, ExperimentCursor, Limit, Write
from services.api.errors import responses
from services.api.experiments import service
from services.api.experiments.schemas import ExperimentCreate, ExperimentRead, ExperimentUpdate, GuardrailFiguresRead
from services.api.http import object_response
from services.api.principal import current_key, request_environment
from services.api.schemas import Page, list_page
from services.api.strict import StrictRoute

router = APIRouter(prefix="/v1/agents/{agent}/experiments", tags=["experiments"], route_class=StrictRoute)


@router.post(
    "",
    status_code=201,
    response_model=ExperimentRead,
    summary="Create an experiment (a draft)",
    responses=responses(400, 403, 404, 409, 413, 415, 422),
)
async def create_experiment(
    request: Request, agent: str, body: ExperimentCreate, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Creates a draft experiment over 2 to 10 arms, each serving `base`, `live` or a variant
    (each at most once) with a weight; the first arm is the control. Subjects are assigned
    to arms by `sha256(f"{salt}:{subject}")`, so a client can compute the split itself.
    It runs in the body's `environment`, else the request's."""
    named = "environment" in request.query_params
    if body.environment is not None:
        request_environment(current_key(request.scope), body.environment)  # a bound key names only its own
    experiment = await service.create_experiment(db, agent, body, environment=environment, named=named, context=context)
    return object_response(
        request,
        experiment,
        status_code=201,
        location=f"/v1/agents/{experiment['agent_id']}/experiments/{experiment['id']}",
    )


@router.get(
    "",
    response_model=Page[ExperimentRead],
    summary="List an agent's experiments, newest first",
    responses=responses(403, 404, 422),
)
async def list_experiments(
    agent: str,
    db: DB,
    environment: EnvironmentRef,
    limit: Limit = 20,
    after: ExperimentCursor = None,
    status: Literal["draft", "running", "paused", "stopped", "completed", "rolled_back"] | None = Query(
        None, description="Only experiments in this status."
    ),
) -> Response:
    """The agent's experiments in the environment, newest first, `limit` at a time; `status` filters."""
    rows = await service.list_experiments(
        db, agent, after=after, limit=limit + 1, status=status, environment=environment
    )
    return JSONResponse(list_page(rows, limit=limit))


@router.get(
    "/{experiment}",
    response_model=ExperimentRead,
    summary="Get an experiment by id or slug",
    responses=responses(403, 404, 422),
)
async def get_experiment(
    request: Request, agent: str, experiment: str, db: DB, environment: EnvironmentRef
) -> Response:
    """The experiment named by its id (`exp_...`) or its slug, with its `ETag`."""
    return object_response(request, await service.get_experiment(db, agent, experiment, environment=environment))


@router.patch(
    "/{experiment}",
    response_model=ExperimentRead,
    summary="Update an experiment (JSON merge patch; arms and salt only while a draft)",
    responses=responses(400, 403, 404, 409, 412, 413, 415, 422),
)
async def update_experiment(
    request: Request,
    agent: str,
    experiment: str,
    body: ExperimentUpdate,
    db: DB,
    context: Write,
    environment: EnvironmentRef,
) -> Response:
    """A JSON merge patch over `name`, `description`, `arms` (replaced whole) and `salt`; arms
    and salt change only while a draft (409 `experiment_not_draft`). Honours `If-Match`."""
    return object_response(
        request, await service.update_experiment(db, agent, experiment, body, environment=environment, context=context)
    )


@router.delete(
    "/{experiment}", status_code=204, summary="Delete a draft experiment", responses=responses(403, 404, 409, 412, 422)
)
async def delete_experiment(
    agent: str, experiment: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Deletes a draft experiment (204); a running or stopped one is 409
    `experiment_not_draft`."""
    await service.delete_experiment(db, agent, experiment, environment=environment, context=context)
    return Response(status_code=204)


@router.post(
    "/{experiment}/start",
    response_model=ExperimentRead,
    summary="Start splitting traffic",
    responses=responses(403, 404, 409, 412, 422),
)
async def start_experiment(
    request: Request, agent: str, experiment: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Starts splitting the agent's subjects between the arms: every arm's resolved config is
    snapshotted and must pass the cross-field rule. At most one experiment per agent and
    environment runs (409 `experiment_running`); a stopped experiment cannot start again (409
    `invalid_status`)."""
    return object_response(
        request, await service.start_experiment(db, agent, experiment, environment=environment, context=context)
    )


@router.post(
    "/{experiment}/stop",
    response_model=ExperimentRead,
    summary="Stop the experiment (final)",
    responses=responses(403, 404, 409, 412, 422),
)
async def stop_experiment(
    request: Request, agent: str, experiment: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """Stops the experiment for good: resolution goes back to the active variant. Stopping a
    draft is 409 `invalid_status`. Its results stay readable."""
    return object_response(
        request, await service.stop_experiment(db, agent, experiment, environment=environment, context=context)
    )


@router.post(
    "/{experiment}/pause",
    response_model=ExperimentRead,
    summary="Pause a rollout: it keeps serving and guarding its step, and does not advance",
    responses=responses(403, 404, 409, 412, 422),
)
async def pause_rollout(
    request: Request, agent: str, experiment: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """A running rollout becomes `paused`: subjects keep their arms and its guardrails keep
    watching (a breach still rolls it back), but it does not advance to the next step. For
    an experiment, 409 `invalid_status`; pausing a paused rollout changes nothing."""
    paused = await service.pause_or_resume(db, agent, experiment, pause=True, environment=environment, context=context)
    return object_response(request, paused)


@router.post(
    "/{experiment}/resume",
    response_model=ExperimentRead,
    summary="Resume a paused rollout",
    responses=responses(403, 404, 409, 412, 422),
)
async def resume_rollout(
    request: Request, agent: str, experiment: str, db: DB, context: Write, environment: EnvironmentRef
) -> Response:
    """A paused rollout runs again: it advances once its step's hold has passed and its
    guardrails allow. For an experiment, 409 `invalid_status`."""
    resumed = await service.pause_or_resume(
        db, agent, experiment, pause=False, environment=environment, context=context
    )
    return object_response(request, resumed)


@router.get(
    "/{experiment}/guardrail_history",
    response_model=Page[GuardrailFiguresRead],
    summary="A rollout's guardrail figures over time, newest first",
    responses=responses(403, 404, 422),
)
async def guardrail_history(
    agent: str,
    experiment: str,
    db: DB,
    environment: EnvironmentRef,
    limit: Limit = 20,
    after: str | None = Query(
        None, pattern=r"^[0-9]{1,18}$", description="The `id` of the last figures already seen: the page after them."
    ),
) -> Response:
    """The figures of the rollout's guardrails as they changed (recorded by the scheduler at
    most every few seconds, and at every breach): the step, its percent, and each
    guardrail's `estimate`, `cs`, `n` and `breached`, as `progress` shows them. An
    experiment has none (an empty list)."""
    rows = await service.guardrail_history(
        db, agent, experiment, after=int(after) if after else None, limit=limit + 1, environment=environment
    )
    return JSONResponse(list_page(rows, limit=limit))
