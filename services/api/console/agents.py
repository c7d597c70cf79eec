"""Console pages for agents and their variants: list and search, create, edit the base
config, an agent's resolved config with provenance, variants (create, clone, preview,
diff), activation behind a confirmation that shows exactly what will change, and a
variant's roll-out form (a rollout's draft, whose start is confirmed on its own page).

Reads come from `console.queries` (one snapshot a page), writes go through the services."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from agent_variants.rules import attribute_errors
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api.agents import service as agents
from services.api.agents.schemas import AgentCreate, AgentUpdate
from services.api.console import charts, queries, targeting
from services.api.console.sessions import Viewer
from services.api.console.web import (
    JSON_FIELDS,
    Forbidden,
    config_from,
    db_of,
    digest,
    entries_patch,
    error_page,
    errors_of,
    json_of,
    place,
    pretty_json,
    render,
    same_json,
    see_other,
    status_of,
    url,
    viewer,
    write_context,
    writer,
)
from services.api.exceptions import DomainError, NotFound
from services.api.experiments import service as experiments
from services.api.experiments.schemas import HOLD_MAX, METRICS, ExperimentCreate
from services.api.variants import service as variants
from services.api.variants.schemas import VariantCreate, VariantUpdate
from services.shared.agent_config import CONFIG_FIELDS, INTEGER_FIELDS, KEYED_FIELDS, NUMBER_FIELDS
from services.shared.identifiers import is_id

router = APIRouter()
PAGE = 25
Seen = Annotated[Viewer, Depends(viewer)]
Place = Annotated[queries.Named, Depends(place)]
Writes = Annotated[tuple[Viewer, dict[str, str]], Depends(writer)]
# The JSON editors of an agent's forms (its keyed config fields and `params_schema`) and of a
# variant's (its keyed overrides and `params_unset`).
AGENT_JSON = (*(f"config.{name}" for name in KEYED_FIELDS), "params_schema")
VARIANT_JSON = tuple(f"overrides.{name}" for name in JSON_FIELDS)
JSON_PROBLEM = "Some fields need fixing; nothing was saved."
# The roll-out form: step rows (the API takes 1 to 20; empty rows are skipped) and its defaults
# (issue 20): 5, 25, 50 and 100% of subjects, 30 minutes each; success rate at most 2 points
# lower, mean latency at most 250 ms higher; 100 outcomes per arm before a guardrail decides.
STEP_ROWS = 8
DEFAULT_STEPS = (5, 25, 50, 100)
DEFAULT_HOLD_MINUTES = "30"
DEFAULT_GUARDRAILS = {"success_rate": "0.02", "latency_ms_mean": "250"}
DEFAULT_MIN_OUTCOMES = "100"
GUARDRAIL_HINTS = {
    "success_rate": "Success rate, in its units: 0.02 = 2 points lower at most.",
    "score_mean": "Mean score, in the scores' units: how much lower at most.",
    "latency_ms_mean": "Mean latency, in ms: how much slower at most.",
    "cost_usd_mean": "Mean cost per run, in USD: how much more at most.",
    "output_tokens_mean": "Mean output tokens per run: how many more at most.",
}
STEP = re.compile(r"^steps\[(\d+)\]")
GUARDRAIL = re.compile(r"^guardrails\[(\d+)\]")


def field_kinds() -> dict[str, str]:
    """How each config field is entered: a number, a long text, or a short text."""
    kinds = {}
    for name in CONFIG_FIELDS:
        if name in INTEGER_FIELDS:
            kinds[name] = "integer"
        elif name in NUMBER_FIELDS:
            kinds[name] = "number"
        elif name in ("system_prompt", "user_prompt_template"):
            kinds[name] = "text"
        else:
            kinds[name] = "line"
    return kinds


# ------------------------------------------------------------------------------ agents


@router.get("/agents")
async def list_page(request: Request, who: Seen, named: Place, q: str = "", after: str | None = None) -> Response:
    if after is not None and not is_id("agent", after):
        return error_page(request, 422, "Not a page", f"'{after}' is not an agent id.")
    found, where = await queries.agents_page(
        db_of(request), q.replace("\x00", "").strip(), after, limit=PAGE, named=named
    )
    return render(
        request,
        "agents.html",
        who=who,
        where=where,
        agents=found.items,
        q=q,
        more=found.next_after is not None,
        next_after=found.next_after,
        form={},
        errors={},
        problem=None,
        kinds=field_kinds(),
        fields=CONFIG_FIELDS,
    )


@router.post("/agents")
async def create(request: Request, writes: Writes, named: Place) -> Response:
    who, form = writes
    body: dict[str, Any] = {"name": form.get("name", ""), "config": config_from(form, "config", keep_empty=False)}
    if form.get("slug", "").strip():
        body["slug"] = form["slug"].strip()
    if form.get("description", "").strip():
        body["description"] = form["description"]
    # A JSON editor left empty is not sent: no entries (variables: inferred from the prompts).
    values, bad = json_of(form, AGENT_JSON)
    body["config"].update({name: values[f"config.{name}"] for name in KEYED_FIELDS if f"config.{name}" in values})
    if "params_schema" in values:
        body["params_schema"] = values["params_schema"]
    if bad:
        return await _create_form(request, who, named, form=form, errors=bad, problem=JSON_PROBLEM)
    try:
        agent = await agents.create_agent(
            db_of(request),
            AgentCreate.model_validate(body),
            environment=named.lookup,
            context=write_context(who),
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        return await _create_form(request, who, named, form=form, errors=errors, problem=problem)
    return see_other(named.link(url("agents", agent["slug"])))


async def _create_form(
    request: Request, who: Viewer, named: queries.Named, *, form: dict[str, str], errors: dict[str, str], problem: str
) -> Response:
    """The agents page with the create form as it was sent, and what was wrong with it."""
    _, where = await queries.agents_page(db_of(request), "", None, limit=1, named=named)
    return render(
        request,
        "agents.html",
        status_code=422,
        who=who,
        where=where,
        agents=[],
        q="",
        more=False,
        next_after=None,
        form=form,
        errors=errors,
        problem=problem,
        kinds=field_kinds(),
        fields=CONFIG_FIELDS,
        creating=True,
    )


@router.get("/agents/{agent}")
async def agent_page(
    request: Request,
    agent: str,
    who: Seen,
    named: Place,
    after: str | None = None,
    subject: str | None = None,
    attributes: str | None = None,
) -> Response:
    if after is not None and not is_id("variant", after):
        return error_page(request, 422, "Not a page", f"'{after}' is not a variant id.")
    asked = {"subject": subject or "", "attributes": attributes or ""}
    context, context_errors = context_from(subject, attributes)
    return await _agent_page(
        request,
        agent,
        who,
        named,
        after=after,
        form={},
        errors={},
        problem=None,
        context=context,
        asked=asked if subject is not None or attributes is not None else None,
        context_errors=context_errors,
        status_code=422 if context_errors else 200,
    )


def context_from(subject: str | None, attributes: str | None) -> tuple[queries.Context | None, dict[str, str]]:
    """The preview's context from its form: a subject (empty: none) and `name=value` lines
    (values are strings, as `?attr.name=` sends them), and what is wrong with them, checked
    as the API checks a context's attributes. None when no preview was asked."""
    if subject is None and attributes is None:
        return None, {}
    problems: list[str] = []
    parsed: dict[str, str] = {}
    for number, line in enumerate((attributes or "").splitlines(), 1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals:
            problems.append(f"line {number} is not name=value")
        elif name in parsed:
            problems.append(f"line {number}: {name} is given twice")
        else:
            parsed[name] = value.strip()
    problems += [
        f"{found['param'].removeprefix('attributes.')}: {found['message']}" for found in attribute_errors(parsed)
    ]
    if problems:
        return None, {"attributes": "; ".join(problems).capitalize() + "."}
    return queries.Context(subject or None, parsed), {}


async def _agent_page(
    request: Request,
    agent: str,
    who: Viewer,
    named: queries.Named,
    *,
    after: str | None,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str | None,
    status_code: int = 200,
    context: queries.Context | None = None,
    asked: dict[str, str] | None = None,
    context_errors: dict[str, str] | None = None,
) -> Response:
    shown = await queries.agent_page(db_of(request), agent, after, limit=PAGE, named=named, context=context)
    names: dict[str | None, str] = dict(shown.slugs)
    names[None] = "base config"
    usage = shown.usage
    return render(
        request,
        "agent.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        resolved=shown.resolved,
        variants=shown.variants.items,
        more=shown.variants.next_after is not None,
        next_after=shown.variants.next_after,
        slugs=[slug for _, slug in shown.slugs],
        fields=CONFIG_FIELDS,
        kinds=field_kinds(),
        form=form,
        errors=errors,
        problem=problem,
        creating=bool(errors or problem),
        usage=usage,
        usage_names=names,
        split=shown.split,
        usage_svg=charts.usage_chart(usage, names) if usage["outcomes"] else None,
        plan=shown.plan,
        words=targeting.plan_words(shown.plan, dict(shown.slugs)),
        preview=shown.preview,
        why=targeting.why(shown.preview, shown.plan, shown.split) if shown.preview is not None else None,
        asked=asked,
        context_errors=context_errors or {},
    )


@router.get("/agents/{agent}/edit")
async def edit_form(request: Request, agent: str, who: Seen, named: Place) -> Response:
    if not who.can_write:
        raise Forbidden
    found, where = await queries.agent(db_of(request), agent, named=named)
    form = {
        "name": found["name"],
        "description": found["description"],
        "version": str(found["version"]),
        **{f"config.{name}": found["config"][name] for name in CONFIG_FIELDS},
        **{f"config.{name}": pretty_json(found["config"][name] or None) for name in KEYED_FIELDS},
        "params_schema": pretty_json(found["params_schema"]),
    }
    return render(
        request,
        "agent_edit.html",
        who=who,
        where=where,
        agent=found,
        form=form,
        errors={},
        problem=None,
        fields=CONFIG_FIELDS,
        kinds=field_kinds(),
    )


@router.post("/agents/{agent}/edit")
async def edit(request: Request, agent: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    db = db_of(request)
    found, where = await queries.agent(db, agent, named=named)
    patch: dict[str, Any] = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
        "config": config_from(form, "config", keep_empty=True),
    }
    # The base config inherits from nothing: a number left empty is a mistake to point at,
    # not a value to keep quietly.
    blank = {
        f"config.{name}": "A value is required: the base config inherits from nothing"
        for name in CONFIG_FIELDS
        if f"config.{name}" in form and f"config.{name}" not in {f"config.{kept}" for kept in patch["config"]}
    }
    # Each JSON editor holds its field's whole set of entries (empty: none), sent as the
    # merge patch that makes it so; `params_schema` emptied is removed.
    values, bad = json_of(form, AGENT_JSON)
    for name in KEYED_FIELDS:
        now = found["config"][name]
        wanted = values.get(f"config.{name}", {})
        if f"config.{name}" in form and not same_json(wanted, now):
            patch["config"][name] = entries_patch(now, wanted)
    if "params_schema" in form and not same_json(values.get("params_schema"), found["params_schema"]):
        patch["params_schema"] = values.get("params_schema")
    if blank or bad:
        return render(
            request,
            "agent_edit.html",
            status_code=422,
            who=who,
            where=where,
            agent=found,
            form=form,
            errors={**blank, **bad},
            problem=JSON_PROBLEM if bad else "Some fields need fixing.",
            fields=CONFIG_FIELDS,
            kinds=field_kinds(),
        )
    try:
        await agents.update_agent(
            db,
            found["id"],
            AgentUpdate.model_validate(patch),
            environment=where.id,
            context=write_context(who, form),
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        return render(
            request,
            "agent_edit.html",
            status_code=status_of(error),
            who=who,
            where=where,
            agent=found,
            form=form,
            errors=errors,
            problem=problem,
            fields=CONFIG_FIELDS,
            kinds=field_kinds(),
        )
    return see_other(where.link(url("agents", found["slug"])))


# ---------------------------------------------------------------------------- variants


@router.post("/agents/{agent}/variants")
async def create_variant(request: Request, agent: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    db = db_of(request)
    found, where = await queries.agent(db, agent, named=named)
    body: dict[str, Any] = {
        "variant_name": form.get("variant_name", ""),
        "overrides": config_from(form, "overrides", keep_empty=False),
    }
    if form.get("slug", "").strip():
        body["slug"] = form["slug"].strip()
    if form.get("clone_from", "").strip():
        body["clone_from"] = form["clone_from"].strip()
    values, bad = json_of(form, VARIANT_JSON)  # an empty one is not sent: no entries of its own
    body["overrides"].update(
        {name: values[f"overrides.{name}"] for name in JSON_FIELDS if f"overrides.{name}" in values}
    )
    if bad:
        return await _agent_page(
            request, found["id"], who, named, after=None, form=form, errors=bad, problem=JSON_PROBLEM, status_code=422
        )
    try:
        created = await variants.create_variant(
            db,
            found["id"],
            VariantCreate.model_validate(body),
            environment=where.id,
            context=write_context(who),
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        return await _agent_page(
            request, found["id"], who, named, after=None, form=form, errors=errors, problem=problem, status_code=422
        )
    return see_other(where.link(url("agents", found["slug"], "variants", created["slug"])))


@router.get("/agents/{agent}/variants/{variant}")
async def variant_page(
    request: Request, agent: str, variant: str, who: Seen, named: Place, against: str = "live"
) -> Response:
    shown = await queries.variant_page(db_of(request), agent, variant, against, named=named)
    return _variant(request, shown, who, against=against, form=_edit_form(shown.variant), errors={}, problem=None)


def _edit_form(variant: dict[str, Any]) -> dict[str, str]:
    """The variant's edit form as it first shows: its name, description and overrides."""
    overrides = variant["overrides"]
    form = {f"overrides.{name}": value for name, value in overrides.items() if name in CONFIG_FIELDS}
    form.update({f"overrides.{name}.empty": "on" for name, value in overrides.items() if value == ""})
    form.update({f"overrides.{name}": pretty_json(overrides.get(name)) for name in JSON_FIELDS})
    form.update(
        variant_name=variant["variant_name"], description=variant["description"], version=str(variant["version"])
    )
    return form


def rollout_defaults(variant: dict[str, Any]) -> dict[str, str]:
    """The roll-out form as it first shows: the issue's default steps and guardrails."""
    form = {"rollout.name": f"Roll out {variant['variant_name']}"[:256], "min_outcomes": DEFAULT_MIN_OUTCOMES}
    for row, percent in enumerate(DEFAULT_STEPS):
        form[f"steps[{row}].percent"] = str(percent)
        form[f"steps[{row}].hold_minutes"] = DEFAULT_HOLD_MINUTES
    form.update({f"guardrails.{metric}": value for metric, value in DEFAULT_GUARDRAILS.items()})
    return form


def _variant(
    request: Request,
    shown: queries.VariantPage,
    who: Viewer,
    *,
    against: str,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str | None,
    status_code: int = 200,
    rollout_form: dict[str, str] | None = None,
    rollout_errors: dict[str, str] | None = None,
    rollout_problem: str | None = None,
) -> Response:
    return render(
        request,
        "variant.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        variant=shown.variant,
        preview=shown.preview,
        live=shown.live,
        changes=shown.changes,
        against=against,
        against_error=shown.against_error,
        others=shown.others,
        fields=CONFIG_FIELDS,
        kinds=field_kinds(),
        form=form,
        errors=errors,
        problem=problem,
        running=shown.running,
        rollout_form=rollout_form if rollout_form is not None else rollout_defaults(shown.variant),
        rollout_errors=rollout_errors or {},
        rollout_problem=rollout_problem,
        step_rows=range(STEP_ROWS),
        metrics=METRICS,
        guardrail_hints=GUARDRAIL_HINTS,
    )


@router.post("/agents/{agent}/variants/{variant}/edit")
async def edit_variant(request: Request, agent: str, variant: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    db = db_of(request)
    found, shown, where = await queries.agent_and_variant(db, agent, variant, named=named)
    posted = config_from(form, "overrides", keep_empty=False)
    # An override left empty is removed (inherited again): null in a merge patch.
    overrides: dict[str, Any] = {name: posted.get(name) for name in CONFIG_FIELDS}
    # A JSON editor holds all of the field's own entries: emptied, it has none (null removes
    # them all); else the merge patch that leaves exactly these. `params_unset` is replaced whole.
    values, bad = json_of(form, VARIANT_JSON)
    for name in JSON_FIELDS:
        if f"overrides.{name}" not in form:
            continue
        wanted = values.get(f"overrides.{name}")
        if wanted is None or name == "params_unset":
            overrides[name] = wanted
        else:
            overrides[name] = entries_patch(shown["overrides"].get(name), wanted)
    if bad:
        now = await queries.variant_page(db, found["id"], shown["id"], named=named)
        return _variant(request, now, who, against="live", form=form, errors=bad, problem=JSON_PROBLEM, status_code=422)
    patch = {
        "variant_name": form.get("variant_name", ""),
        "description": form.get("description", ""),
        "overrides": overrides,
    }
    try:
        await variants.update_variant(
            db,
            found["id"],
            shown["id"],
            VariantUpdate.model_validate(patch),
            environment=where.id,
            context=write_context(who, form),
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        # The page as it is now, with the form as it was sent and what was wrong with it.
        now = await queries.variant_page(db, found["id"], shown["id"], named=named)
        return _variant(
            request,
            now,
            who,
            against="live",
            form=form,
            errors=errors,
            problem=problem,
            status_code=status_of(error),
        )
    return see_other(where.link(url("agents", found["slug"], "variants", shown["slug"])))


@router.post("/agents/{agent}/variants/{variant}/rollout")
async def roll_out(request: Request, agent: str, variant: str, writes: Writes, named: Place) -> Response:
    """The roll-out form: a rollout of this variant in the page's environment, saved as a
    draft; then its start's confirmation, which says who will get what. Nothing is served
    before that is confirmed."""
    who, form = writes
    db = db_of(request)
    found, shown, where = await queries.agent_and_variant(db, agent, variant, named=named)
    body, rows, metrics, bad = rollout_body(form, shown["id"])
    if bad:
        return await _rollout_form(request, found, shown, who, named, form, bad, JSON_PROBLEM)
    try:
        created = await experiments.create_experiment(
            db, found["id"], ExperimentCreate.model_validate(body), environment=where.id, context=write_context(who)
        )
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        errors = {_form_param(param, rows, metrics): message for param, message in errors.items()}
        return await _rollout_form(
            request, found, shown, who, named, form, errors, problem, status_code=status_of(error)
        )
    return see_other(where.link(url("agents", found["slug"], "experiments", created["id"], "start")))


def rollout_body(form: dict[str, str], variant_id: str) -> tuple[dict[str, Any], list[int], list[str], dict[str, str]]:
    """The rollout the form asks for, as the API takes it; the form row of each step sent and
    the metric of each guardrail sent (to put the API's errors back at their fields); and
    what the form itself refuses (a hold that is no number of minutes), by field."""
    steps: list[dict[str, Any]] = []
    rows: list[int] = []
    bad: dict[str, str] = {}
    for row in range(STEP_ROWS):
        percent = form.get(f"steps[{row}].percent", "").strip()
        hold = form.get(f"steps[{row}].hold_minutes", "").strip()
        if not percent and not hold:
            continue
        seconds = _hold_seconds(hold)
        if seconds is None:
            bad[f"steps[{row}].hold_minutes"] = f"Minutes from 0 to {HOLD_MAX // 60:,} (30 days); 0: no hold."
        steps.append({"percent": _whole(percent), "hold_seconds": seconds or 0})
        rows.append(row)
    guardrails: list[dict[str, Any]] = []
    metrics: list[str] = []
    for metric in METRICS:
        raw = form.get(f"guardrails.{metric}", "").strip()
        if raw:
            guardrails.append({"metric": metric, "max_degradation": _number(raw)})
            metrics.append(metric)
    body: dict[str, Any] = {
        "kind": "rollout",
        "name": form.get("rollout.name", ""),
        "variant": variant_id,
        "steps": steps,
        "guardrails": guardrails,
    }
    if form.get("min_outcomes", "").strip():
        body["min_outcomes"] = _whole(form["min_outcomes"].strip())
    return body, rows, metrics, bad


def _hold_seconds(raw: str) -> int | None:
    """A step's hold typed in minutes (decimals allowed), as seconds; None when it is not one."""
    try:
        minutes = float(raw)
    except ValueError:
        return None
    if not math.isfinite(minutes) or not 0 <= minutes * 60 <= HOLD_MAX:
        return None
    return round(minutes * 60)


def _whole(raw: str) -> Any:
    """A whole number as typed, else the text (validation names it)."""
    try:
        return int(raw)
    except ValueError:
        return raw


def _number(raw: str) -> Any:
    try:
        return float(raw)
    except ValueError:
        return raw


def _form_param(param: str, rows: list[int], metrics: list[str]) -> str:
    """The form field that shows an API error: the API numbers the steps and guardrails it
    was sent; the form has a row per step (some may be empty) and a field per metric."""
    if param == "name":
        return "rollout.name"
    step = STEP.match(param)
    if step is not None and int(step.group(1)) < len(rows):
        rest = param[step.end() :].replace(".hold_seconds", ".hold_minutes")
        return f"steps[{rows[int(step.group(1))]}]{rest}"
    guardrail = GUARDRAIL.match(param)
    if guardrail is not None and int(guardrail.group(1)) < len(metrics):
        return f"guardrails.{metrics[int(guardrail.group(1))]}"
    return param


async def _rollout_form(
    request: Request,
    agent: dict[str, Any],
    variant: dict[str, Any],
    who: Viewer,
    named: queries.Named,
    form: dict[str, str],
    errors: dict[str, str],
    problem: str,
    *,
    status_code: int = 422,
) -> Response:
    """The variant page as it is now, with the roll-out form as it was sent and what was wrong."""
    now = await queries.variant_page(db_of(request), agent["id"], variant["id"], named=named)
    return _variant(
        request,
        now,
        who,
        against="live",
        form=_edit_form(now.variant),
        errors={},
        problem=None,
        status_code=status_code,
        rollout_form=form,
        rollout_errors=errors,
        rollout_problem=problem,
    )


@router.get("/agents/{agent}/variants/{variant}/{action}")
async def confirm(request: Request, agent: str, variant: str, action: str, who: Seen, named: Place) -> Response:
    """What activating (or deactivating) in the environment will change, field by field, before it happens."""
    if action not in ("activate", "deactivate"):
        raise NotFound("Page", action)
    shown = await queries.activation(db_of(request), agent, variant, activate=action == "activate", named=named)
    return _confirmation(request, shown, action, who, notice=None)


def _confirmation(
    request: Request,
    shown: queries.Activation,
    action: str,
    who: Viewer,
    *,
    notice: str | None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "confirm.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        variant=shown.variant,
        action=action,
        changes=shown.changes,
        live=shown.live,
        moot=shown.moot,
        split=shown.split,
        rules=shown.rules,
        state=_state(shown),
        notice=notice,
    )


def _state(shown: queries.Activation) -> str:
    """A digest of what the confirmation showed: the live config, every change it listed
    (the after side too: the base may move under a field the live variant overrides), the
    variant's version and the running experiment. If any moved before the click, it is
    shown again, up to date. The environment it named too: a confirmation of staging's is
    never taken for production's."""
    running = shown.split.experiment["id"] if shown.split else None  # what it says of the subjects
    return digest(
        [shown.where.id, shown.live.variant_id, shown.live.config(), shown.changes, shown.variant["version"], running]
    )


@router.post("/agents/{agent}/variants/{variant}/{action}")
async def act(request: Request, agent: str, variant: str, action: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    if action not in ("activate", "deactivate"):
        raise NotFound("Action", action)
    db = db_of(request)
    shown = await queries.activation(db, agent, variant, activate=action == "activate", named=named)
    where = shown.where
    if form.get("state") != _state(shown):
        return _confirmation(
            request,
            shown,
            action,
            who,
            status_code=409,
            notice="The config changed since that page was shown. This is what will change now; confirm again.",
        )
    agent_id, variant_id = shown.agent["id"], shown.variant["id"]
    if action == "activate":
        await variants.activate_variant(
            db, agent_id, variant_id, environment=where.id, context=write_context(who, form)
        )
    else:
        await variants.deactivate_variant(
            db, agent_id, variant_id, environment=where.id, context=write_context(who, form)
        )
    return see_other(where.link(url("agents", shown.agent["slug"])))
