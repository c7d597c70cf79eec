"""Console pages for experiments: create with arms and weights, start, stop, and results
as charts per arm with a plain-language reading of each comparison with the control.

Reads come from `console.queries` (one snapshot a page), writes go through the services."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api.console import charts, queries, reading
from services.api.console.sessions import Viewer
from services.api.console.web import db_of, error_page, errors_of, render, see_other, url, viewer, write_context, writer
from services.api.exceptions import DomainError, NotFound
from services.api.experiments import service as experiments
from services.api.experiments.schemas import ExperimentCreate
from services.shared.identifiers import is_id

router = APIRouter()
ARM_ROWS = 4  # arm inputs on the create form (the API takes 2 to 10)
PAGE = 25
ARM = re.compile(r"^arms\[(\d+)\]")
Seen = Annotated[Viewer, Depends(viewer)]
Writes = Annotated[tuple[Viewer, dict[str, str]], Depends(writer)]


async def _page(
    request: Request,
    agent: str,
    who: Viewer,
    *,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str | None,
    after: str | None = None,
    status_code: int = 200,
) -> Response:
    shown = await queries.experiments_page(db_of(request), agent, after, limit=PAGE)
    return render(
        request,
        "experiments.html",
        status_code=status_code,
        who=who,
        agent=shown.agent,
        experiments=shown.experiments.items,
        more=shown.experiments.next_after is not None,
        next_after=shown.experiments.next_after,
        choices=[slug for _, slug in shown.slugs],
        rows=range(ARM_ROWS),
        form=form,
        errors=errors,
        problem=problem,
    )


@router.get("/agents/{agent}/experiments")
async def list_page(request: Request, agent: str, who: Seen, after: str | None = None) -> Response:
    if after is not None and not is_id("experiment", after):
        return error_page(request, 422, "Not a page", f"'{after}' is not an experiment id.")
    return await _page(
        request,
        agent,
        who,
        form={"arms[0].variant": "base", "arms[0].weight": "1", "arms[1].weight": "1"},
        errors={},
        problem=None,
        after=after,
    )


@router.post("/agents/{agent}/experiments")
async def create(request: Request, agent: str, writes: Writes) -> Response:
    who, form = writes
    db = db_of(request)
    found = await queries.agent(db, agent)
    arms: list[dict[str, Any]] = []
    rows: list[int] = []  # the form row of each arm sent (empty rows are skipped)
    for row in range(ARM_ROWS):
        chosen = form.get(f"arms[{row}].variant", "").strip()
        if not chosen:
            continue
        weight: Any = form.get(f"arms[{row}].weight", "").strip()
        try:
            weight = int(weight)
        except ValueError:
            pass  # validation names it
        arms.append({"variant": chosen, "weight": weight})
        rows.append(row)
    body: dict[str, Any] = {"name": form.get("name", ""), "arms": arms}
    if form.get("description", "").strip():
        body["description"] = form["description"]
    try:
        created = await experiments.create_experiment(
            db, found["id"], ExperimentCreate.model_validate(body), context=write_context(who)
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        # The API numbers the arms it was sent; the form, its rows (some may be empty).
        errors = {_to_row(param, rows): message for param, message in errors.items()}
        return await _page(request, agent, who, form=form, errors=errors, problem=problem, status_code=422)
    return see_other(url("agents", found["slug"], "experiments", created["id"]))


def _to_row(param: str, rows: list[int]) -> str:
    found = ARM.match(param)
    if found is None or int(found.group(1)) >= len(rows):
        return param
    return f"arms[{rows[int(found.group(1))]}]{param[found.end() :]}"


@router.get("/agents/{agent}/experiments/{experiment}")
async def results_page(request: Request, agent: str, experiment: str, who: Seen) -> Response:
    return await _results(request, agent, experiment, who, problem=None)


async def _results(
    request: Request, agent: str, experiment: str, who: Viewer, *, problem: str | None, status_code: int = 200
) -> Response:
    shown = await queries.experiment_page(db_of(request), agent, experiment)
    results = shown.results
    names = [
        ("Control: " if arm["arm"] == 0 else f"Arm {arm['arm']}: ") + _arm_name(arm, shown.slugs)
        for arm in shown.experiment["arms"]
    ]
    return render(
        request,
        "experiment.html",
        status_code=status_code,
        who=who,
        agent=shown.agent,
        experiment=shown.experiment,
        results=results,
        names=names,
        charts=charts.results_charts(results, names),
        reading=reading.reading(results, names),
        problem=problem,
    )


@router.post("/agents/{agent}/experiments/{experiment}/{action}")
async def act(request: Request, agent: str, experiment: str, action: str, writes: Writes) -> Response:
    who, _ = writes
    db = db_of(request)
    found = await queries.agent(db, agent)
    try:
        if action == "start":
            await experiments.start_experiment(db, found["id"], experiment, context=write_context(who))
        elif action == "stop":
            await experiments.stop_experiment(db, found["id"], experiment, context=write_context(who))
        else:
            raise NotFound("Action", action)
    except DomainError as error:
        if error.code == "resource_missing":
            raise
        return await _results(request, agent, experiment, who, problem=error.detail, status_code=409)
    return see_other(url("agents", found["slug"], "experiments", experiment))


def _arm_name(arm: dict[str, Any], slugs: dict[str, str]) -> str:
    """What an arm serves, in words: a variant's slug, the base config, or (a `live` arm
    before its experiment starts) the variant that will be active then."""
    if arm["variant_id"] is not None:
        return slugs.get(arm["variant_id"], "deleted variant") + (
            " (live at start)" if arm["variant"] == "live" else ""
        )
    return "the live config at start" if arm["variant"] == "live" else "base config"
