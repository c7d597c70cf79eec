"""Console pages for experiments: create with arms and weights, start and stop (each behind
a confirmation that says who will get what), and results as charts per arm with a
plain-language reading of each comparison with the control. A rollout (created from its
variant's page) has a page of its own at the same address: its step, the time to the next,
each guardrail's confidence sequence over time, why it rolled back or paused; and pause,
resume and stop behind confirmations.

Reads come from `console.queries` (one snapshot a page), writes go through the services."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api.console import charts, queries, reading
from services.api.console.sessions import Viewer
from services.api.console.web import (
    db_of,
    digest,
    error_page,
    errors_of,
    place,
    render,
    see_other,
    url,
    viewer,
    write_context,
    writer,
)
from services.api.exceptions import DomainError, NotFound
from services.api.experiments import service as experiments
from services.api.experiments.schemas import ExperimentCreate
from services.shared.identifiers import is_id

router = APIRouter()
ARM_ROWS = 4  # arm inputs on the create form (the API takes 2 to 10)
PAGE = 25
ARM = re.compile(r"^arms\[(\d+)\]")
ACTIONS = ("start", "stop", "pause", "resume")  # each behind its confirmation; the last two for rollouts
FINAL = ("stopped", "completed", "rolled_back")  # a split in one of these never serves again
Seen = Annotated[Viewer, Depends(viewer)]
Writes = Annotated[tuple[Viewer, dict[str, str]], Depends(writer)]
Place = Annotated[queries.Named, Depends(place)]


async def _page(
    request: Request,
    agent: str,
    who: Viewer,
    named: queries.Named,
    *,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str | None,
    after: str | None = None,
    status_code: int = 200,
) -> Response:
    shown = await queries.experiments_page(db_of(request), agent, after, limit=PAGE, named=named)
    return render(
        request,
        "experiments.html",
        status_code=status_code,
        who=who,
        where=shown.where,
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
async def list_page(request: Request, agent: str, who: Seen, named: Place, after: str | None = None) -> Response:
    if after is not None and not is_id("experiment", after):
        return error_page(request, 422, "Not a page", f"'{after}' is not an experiment id.")
    return await _page(
        request,
        agent,
        who,
        named,
        form={"arms[0].variant": "base", "arms[0].weight": "1", "arms[1].weight": "1"},
        errors={},
        problem=None,
        after=after,
    )


@router.post("/agents/{agent}/experiments")
async def create(request: Request, agent: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    db = db_of(request)
    found, where = await queries.agent(db, agent, named=named)
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
            db,
            found["id"],
            ExperimentCreate.model_validate(body),
            environment=where.id,
            context=write_context(who),
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        # The API numbers the arms it was sent; the form, its rows (some may be empty).
        errors = {_to_row(param, rows): message for param, message in errors.items()}
        return await _page(request, agent, who, named, form=form, errors=errors, problem=problem, status_code=422)
    return see_other(where.link(url("agents", found["slug"], "experiments", created["id"])))


def _to_row(param: str, rows: list[int]) -> str:
    found = ARM.match(param)
    if found is None or int(found.group(1)) >= len(rows):
        return param
    return f"arms[{rows[int(found.group(1))]}]{param[found.end() :]}"


@router.get("/agents/{agent}/experiments/{experiment}")
async def results_page(request: Request, agent: str, experiment: str, who: Seen, named: Place) -> Response:
    return await _results(request, agent, experiment, who, named, problem=None)


async def _results(
    request: Request,
    agent: str,
    experiment: str,
    who: Viewer,
    named: queries.Named,
    *,
    problem: str | None,
    status_code: int = 200,
) -> Response:
    shown = await queries.experiment_page(db_of(request), agent, experiment, named=named)
    if shown.rollout is not None:
        return _rollout(request, shown, shown.rollout, who, problem=problem, status_code=status_code)
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
        where=shown.where,
        agent=shown.agent,
        experiment=shown.experiment,
        results=results,
        names=names,
        charts=charts.results_charts(results, names),
        reading=reading.reading(results, names),
        problem=problem,
    )


def _rollout(
    request: Request,
    shown: queries.ExperimentPage,
    rollout: queries.Rollout,
    who: Viewer,
    *,
    problem: str | None,
    status_code: int,
) -> Response:
    experiment = shown.experiment
    names = [f"Live config: {rollout.live}", f"Variant {rollout.variant}"]
    return render(
        request,
        "rollout.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        experiment=experiment,
        rollout=rollout,
        results=shown.results,
        names=names,
        next_step=reading.next_step(experiment, now=rollout.now, variant=rollout.variant, environment=shown.where.slug),
        status_words=reading.status_reading(
            experiment, variant=rollout.variant, live=rollout.live, environment=shown.where.slug
        ),
        limits={g["metric"]: reading.guardrail_limit(g) for g in experiment["guardrails"] or []},
        readings={
            g["metric"]: reading.guardrail_reading(g, min_outcomes=experiment["min_outcomes"])
            for g in (experiment["progress"] or {}).get("guardrails") or []
        },
        charts=charts.guardrail_charts(experiment, rollout.history, now=rollout.now),
        hold=reading.duration,
        problem=problem,
    )


@router.get("/agents/{agent}/experiments/{experiment}/{action}")
async def confirm(request: Request, agent: str, experiment: str, action: str, who: Seen, named: Place) -> Response:
    """What starting (who will get what) or stopping (final: back to normal resolution)
    will do, before it happens."""
    if action not in ACTIONS:
        raise NotFound("Page", action)
    shown = await queries.experiment_action(db_of(request), agent, experiment, start=action == "start", named=named)
    return _confirmation(request, shown, action, who, notice=None)


def _moot(shown: queries.ExperimentAction, action: str) -> str | None:
    """Why there is nothing to confirm, or None."""
    name, status = shown.experiment["name"], shown.experiment["status"]
    rollout = shown.experiment["kind"] == "rollout"
    if action == "start":
        if status in FINAL:
            return f"{name} is {_words(status)}: a {_words(status)} {_kind(shown)} can never start again."
        if status in ("running", "paused"):
            return f"{name} is already {status}: there is nothing to start."
        if shown.running is not None:
            other = shown.running
            return (
                f"{_kind(other).capitalize()} {other['name']} of this agent is {other['status']}"
                f" in {shown.where.slug}: stop it before starting this one (an agent runs one experiment or rollout"
                " at a time in an environment)."
            )
        return None
    if action in ("pause", "resume") and not rollout:
        return f"{name} is an experiment: only rollouts pause and resume."
    if action == "pause" and status != "running":
        return f"{name} is {_words(status)}: only a running rollout can be paused."
    if action == "resume" and status != "paused":
        return f"{name} is {_words(status)}: only a paused rollout can be resumed."
    if status == "draft":
        return f"{name} is a draft: it has not started, so there is nothing to {action}."
    if status in FINAL:
        return f"{name} is already {_words(status)}: it can never start again."
    return None


def _kind(experiment: dict[str, Any] | queries.ExperimentAction) -> str:
    found = experiment.experiment if isinstance(experiment, queries.ExperimentAction) else experiment
    return "rollout" if found["kind"] == "rollout" else "experiment"


def _words(status: str) -> str:
    return status.replace("_", " ")


def _confirmation(
    request: Request,
    shown: queries.ExperimentAction,
    action: str,
    who: Viewer,
    *,
    notice: str | None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "confirm_experiment.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        experiment=shown.experiment,
        action=action,
        live=shown.live,
        arms=shown.arms,
        moot=_moot(shown, action),
        state=_state(shown),
        notice=notice,
        limits=[reading.guardrail_limit(g) for g in shown.experiment["guardrails"] or []],
        hold=reading.duration,
    )


def _state(shown: queries.ExperimentAction) -> str:
    """A digest of what the confirmation showed: the experiment's version and status, what
    each arm serves (and so its changes), the live config and the running experiment."""
    arms = [(arm.weight, arm.config.variant_id, arm.config.config()) for arm in shown.arms]
    running = shown.running["id"] if shown.running else None
    return digest([shown.experiment["version"], shown.experiment["status"], shown.live.config(), arms, running])


@router.post("/agents/{agent}/experiments/{experiment}/{action}")
async def act(request: Request, agent: str, experiment: str, action: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    if action not in ACTIONS:
        raise NotFound("Action", action)
    db = db_of(request)
    shown = await queries.experiment_action(db, agent, experiment, start=action == "start", named=named)
    where = shown.where
    if form.get("state") != _state(shown):  # not confirmed, or confirmed before something moved
        return _confirmation(
            request,
            shown,
            action,
            who,
            status_code=409,
            notice="Not done: what this does changed since that page was shown (or it was not shown)."
            " This is what it will do now; confirm again.",
        )
    agent_id, experiment_id = shown.agent["id"], shown.experiment["id"]
    try:
        context = write_context(who, form)
        if action == "start":
            await experiments.start_experiment(db, agent_id, experiment_id, environment=where.id, context=context)
        elif action == "stop":
            await experiments.stop_experiment(db, agent_id, experiment_id, environment=where.id, context=context)
        else:
            await experiments.pause_or_resume(
                db, agent_id, experiment_id, pause=action == "pause", environment=where.id, context=context
            )
    except DomainError as error:  # another started first, a live arm's duplicate, the rule, a race, a pause
        if error.code == "resource_missing":
            raise
        return await _results(request, agent, experiment, who, named, problem=error.detail, status_code=409)
    return see_other(where.link(url("agents", shown.agent["slug"], "experiments", experiment_id)))


def _arm_name(arm: dict[str, Any], slugs: dict[str, str]) -> str:
    """What an arm serves, in words: a variant's slug, the base config, or (a `live` arm
    before its experiment starts) the variant that will be active then."""
    if arm["variant_id"] is not None:
        return slugs.get(arm["variant_id"], "deleted variant") + (
            " (live at start)" if arm["variant"] == "live" else ""
        )
    return "the live config at start" if arm["variant"] == "live" else "base config"
