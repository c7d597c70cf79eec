"""Console pages for agents and their variants: list and search, create, edit the base
config, an agent's resolved config with provenance, variants (create, clone, preview,
diff) and activation behind a confirmation that shows exactly what will change.

Reads come from `console.queries` (one snapshot a page), writes go through the services."""

from __future__ import annotations

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
    overrides = shown.variant["overrides"]
    form = {f"overrides.{name}": value for name, value in overrides.items() if name in CONFIG_FIELDS}
    form.update({f"overrides.{name}.empty": "on" for name, value in overrides.items() if value == ""})
    form.update({f"overrides.{name}": pretty_json(overrides.get(name)) for name in JSON_FIELDS})
    form.update(
        variant_name=shown.variant["variant_name"],
        description=shown.variant["description"],
        version=str(shown.variant["version"]),
    )
    return _variant(request, shown, who, against=against, form=form, errors={}, problem=None)


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
