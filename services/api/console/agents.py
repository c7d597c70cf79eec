"""Console pages for agents and their variants: list and search, create, edit the base
config, an agent's resolved config with provenance, variants (create, clone, preview,
diff) and activation behind a confirmation that shows exactly what will change."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from services.api.agents import repository as agent_rows
from services.api.agents import service as agents
from services.api.agents.schemas import AgentCreate, AgentUpdate, agent_read
from services.api.console import charts
from services.api.console.sessions import Viewer
from services.api.console.web import (
    Forbidden,
    config_from,
    db_of,
    errors_of,
    refusal,
    render,
    see_other,
    status_of,
    url,
    viewer,
    writer,
)
from services.api.exceptions import DomainError, NotFound
from services.api.outcomes import service as outcomes
from services.api.variants import repository as variant_rows
from services.api.variants import service as variants
from services.api.variants.schemas import VariantCreate, VariantUpdate
from services.api.writes.context import WriteContext
from services.shared.agent_config import CONFIG_FIELDS, INTEGER_FIELDS, NUMBER_FIELDS, resolve_agent_config
from services.shared.identifiers import is_id

router = APIRouter()
PAGE = 25
Seen = Annotated[Viewer, Depends(viewer)]
Writes = Annotated[tuple[Viewer, dict[str, str]], Depends(writer)]


def if_match(form: dict[str, str]) -> str:
    """The version the page showed, as an If-Match (digits only: nothing else may pass for one)."""
    version = form.get("version", "")
    return f'"{version}"' if version.isdigit() else '"none"'


def context_of(who: Viewer) -> WriteContext:
    """Changes made in the console are the key's, like any API call with it."""
    return WriteContext(actor=who.key_name, api_key=who.key_name)


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
async def list_page(request: Request, who: Seen, q: str = "", after: str | None = None) -> Response:
    if after is not None and not is_id("agent", after):
        return refusal(422, "Not a page", f"'{after}' is not an agent id.", request)
    found = await _search(request, q.replace("\x00", "").strip(), after)
    more = len(found) > PAGE
    return render(request, "agents.html", who=who, agents=found[:PAGE], q=q, more=more,
                  next_after=found[PAGE - 1]["id"] if more else None, form={}, errors={}, problem=None,
                  kinds=field_kinds(), fields=CONFIG_FIELDS)


async def _search(request: Request, q: str, after: str | None) -> list[dict[str, Any]]:
    async with db_of(request).read() as conn:
        rows = await agent_rows.search_page(conn, text=q, after=after, limit=PAGE + 1)
    return [agent_read(row) for row in rows]


@router.post("/agents")
async def create(request: Request, writes: Writes) -> Response:
    who, form = writes
    body: dict[str, Any] = {"name": form.get("name", ""), "config": config_from(form, "config", keep_empty=False)}
    if form.get("slug", "").strip():
        body["slug"] = form["slug"].strip()
    if form.get("description", "").strip():
        body["description"] = form["description"]
    try:
        agent = await agents.create_agent(db_of(request), AgentCreate.model_validate(body), context=context_of(who))
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        return render(request, "agents.html", status_code=422, who=who, agents=[], q="", more=False, next_after=None,
                      form=form, errors=errors, problem=problem, kinds=field_kinds(), fields=CONFIG_FIELDS,
                      creating=True)
    return see_other(url("agents", agent["slug"]))


@router.get("/agents/{agent}")
async def agent_page(request: Request, agent: str, who: Seen, after: str | None = None) -> Response:
    if after is not None and not is_id("variant", after):
        return refusal(422, "Not a page", f"'{after}' is not a variant id.", request)
    return await _agent_page(request, agent, who, after=after, form={}, errors={}, problem=None)


async def _agent_page(request: Request, agent: str, who: Viewer, *, after: str | None, form: dict[str, str],
                      errors: dict[str, str], problem: str | None, status_code: int = 200) -> Response:
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    async with db.read() as conn:
        resolved = await resolve_agent_config(conn, found["id"])
        slugs = await variant_rows.slugs(conn, found["id"])
    page = await variants.list_variants(db, found["id"], after=after, limit=PAGE + 1, is_active=None)
    more = len(page) > PAGE
    usage = await outcomes.usage(db, found["id"])
    names: dict[str | None, str] = dict(slugs)
    names[None] = "base config"
    return render(request, "agent.html", status_code=status_code, who=who, agent=found, resolved=resolved,
                  variants=page[:PAGE], more=more, next_after=page[PAGE - 1]["id"] if more else None,
                  slugs=[slug for _, slug in slugs], fields=CONFIG_FIELDS, kinds=field_kinds(), form=form,
                  errors=errors, problem=problem, creating=bool(errors or problem), usage=usage,
                  usage_svg=charts.usage_chart(usage, names) if usage["outcomes"] else None)


@router.get("/agents/{agent}/edit")
async def edit_form(request: Request, agent: str, who: Seen) -> Response:
    if not who.can_write:
        raise Forbidden
    found = await agents.get_agent(db_of(request), agent)
    form = {"name": found["name"], "description": found["description"], "version": str(found["version"]),
            **{f"config.{name}": found["config"][name] for name in CONFIG_FIELDS}}
    return render(request, "agent_edit.html", who=who, agent=found, form=form, errors={}, problem=None,
                  fields=CONFIG_FIELDS, kinds=field_kinds())


@router.post("/agents/{agent}/edit")
async def edit(request: Request, agent: str, writes: Writes) -> Response:
    who, form = writes
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    patch = {"name": form.get("name", ""), "description": form.get("description", ""),
             "config": config_from(form, "config", keep_empty=True)}
    context = WriteContext(actor=who.key_name, api_key=who.key_name, if_match=if_match(form))
    # The base config inherits from nothing: a number left empty is a mistake to point at,
    # not a value to keep quietly.
    blank = {f"config.{name}": "A value is required: the base config inherits from nothing"
             for name in CONFIG_FIELDS if f"config.{name}" in form and f"config.{name}" not in
             {f"config.{kept}" for kept in patch["config"]}}
    if blank:
        return render(request, "agent_edit.html", status_code=422, who=who, agent=found, form=form, errors=blank,
                      problem="Some fields need fixing.", fields=CONFIG_FIELDS, kinds=field_kinds())
    try:
        await agents.update_agent(db, found["id"], AgentUpdate.model_validate(patch), context=context)
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        return render(request, "agent_edit.html", status_code=status_of(error), who=who, agent=found, form=form,
                      errors=errors, problem=problem, fields=CONFIG_FIELDS, kinds=field_kinds())
    return see_other(url("agents", found["slug"]))


# ---------------------------------------------------------------------------- variants


@router.post("/agents/{agent}/variants")
async def create_variant(request: Request, agent: str, writes: Writes) -> Response:
    who, form = writes
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    body: dict[str, Any] = {"variant_name": form.get("variant_name", ""),
                            "overrides": config_from(form, "overrides", keep_empty=False)}
    if form.get("slug", "").strip():
        body["slug"] = form["slug"].strip()
    if form.get("clone_from", "").strip():
        body["clone_from"] = form["clone_from"].strip()
    try:
        created = await variants.create_variant(db, found["id"], VariantCreate.model_validate(body),
                                                context=context_of(who))
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        return await _agent_page(request, found["id"], who, after=None, form=form, errors=errors, problem=problem,
                                 status_code=422)
    return see_other(url("agents", found["slug"], "variants", created["slug"]))


@router.get("/agents/{agent}/variants/{variant}")
async def variant_page(request: Request, agent: str, variant: str, who: Seen, against: str = "live") -> Response:
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    shown = await variants.get_variant(db, found["id"], variant)
    async with db.read() as conn:
        preview = await resolve_agent_config(conn, found["id"], variant=shown["id"])
        live = await resolve_agent_config(conn, found["id"])
    try:
        changes, against_error = await _changes(request, found, shown, against, live), None
    except DomainError as error:  # not base, nor a variant, nor a revision of this agent
        changes, against_error = [], error.detail
    form = {f"overrides.{name}": value for name, value in shown["overrides"].items()}
    form.update({f"overrides.{name}.empty": "on" for name, value in shown["overrides"].items() if value == ""})
    form.update(variant_name=shown["variant_name"], description=shown["description"])
    async with db.read() as conn:
        others = await variant_rows.slugs(conn, found["id"])
    form["version"] = str(shown["version"])
    return render(request, "variant.html", who=who, agent=found, variant=shown, preview=preview, live=live,
                  changes=changes, against=against, against_error=against_error, others=others, fields=CONFIG_FIELDS,
                  kinds=field_kinds(), form=form, errors={}, problem=None)


async def _changes(request: Request, agent: dict[str, Any], variant: dict[str, Any], against: str,
                   live: Any) -> list[dict[str, Any]]:
    """The variant's resolved values against `against`: "live" (what the agent resolves to
    now), "base", another variant, or a revision id."""
    if against == "live":
        async with db_of(request).read() as conn:
            preview = await resolve_agent_config(conn, agent["id"], variant=variant["id"])
        return field_changes(live, preview)
    diff = await variants.diff_variant(db_of(request), agent["id"], variant["id"], against=against)
    return list(diff["changes"])


@router.post("/agents/{agent}/variants/{variant}/edit")
async def edit_variant(request: Request, agent: str, variant: str, writes: Writes) -> Response:
    who, form = writes
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    shown = await variants.get_variant(db, found["id"], variant)
    posted = config_from(form, "overrides", keep_empty=False)
    # An override left empty is removed (inherited again): null in a merge patch.
    overrides: dict[str, Any] = {name: posted.get(name) for name in CONFIG_FIELDS}
    patch = {"variant_name": form.get("variant_name", ""), "description": form.get("description", ""),
             "overrides": overrides}
    context = WriteContext(actor=who.key_name, api_key=who.key_name, if_match=if_match(form))
    try:
        await variants.update_variant(db, found["id"], shown["id"], VariantUpdate.model_validate(patch),
                                      context=context)
    except (ValidationError, DomainError) as error:
        problem, errors = errors_of(error)
        async with db.read() as conn:
            preview = await resolve_agent_config(conn, found["id"], variant=shown["id"])
            live = await resolve_agent_config(conn, found["id"])
            others = await variant_rows.slugs(conn, found["id"])
        return render(request, "variant.html", status_code=status_of(error), who=who, agent=found, variant=shown,
                      preview=preview, live=live, changes=field_changes(live, preview), against="live", others=others,
                      fields=CONFIG_FIELDS, kinds=field_kinds(), form=form, errors=errors, problem=problem)
    return see_other(url("agents", found["slug"], "variants", shown["slug"]))


@router.get("/agents/{agent}/variants/{variant}/{action}")
async def confirm(request: Request, agent: str, variant: str, action: str, who: Seen) -> Response:
    """What activating (or deactivating) will change, field by field, before it happens."""
    return await _confirmation(request, agent, variant, action, who, notice=None)


async def _confirmation(request: Request, agent: str, variant: str, action: str, who: Viewer, *,
                        notice: str | None, status_code: int = 200) -> Response:
    if action not in ("activate", "deactivate"):
        raise NotFound("Page", action)
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    shown = await variants.get_variant(db, found["id"], variant)
    live, changes = await _what_changes(request, found["id"], shown, action)
    # Already so: the action would change nothing, and the page offers no button.
    moot = shown["is_active"] == (action == "activate")
    return render(request, "confirm.html", status_code=status_code, who=who, agent=found, variant=shown,
                  action=action, changes=changes, live=live, moot=moot, state=_state(live, changes, shown),
                  notice=notice)


async def _what_changes(request: Request, agent_id: str, variant: dict[str, Any], action: str) -> tuple[Any, list]:
    """The live config, and what the action would change in it (nothing when moot)."""
    async with db_of(request).read() as conn:
        live = await resolve_agent_config(conn, agent_id)
        if variant["is_active"] == (action == "activate"):
            return live, []
        after = await resolve_agent_config(conn, agent_id, variant=variant["id"] if action == "activate" else "base")
    return live, field_changes(live, after)


def field_changes(before: Any, after: Any) -> list[dict[str, Any]]:
    """The config fields two resolutions differ in: `{"field", "from", "to"}`, in field order."""
    return [{"field": f, "from": getattr(before, f), "to": getattr(after, f)}
            for f in CONFIG_FIELDS if getattr(before, f) != getattr(after, f)]


def _state(live: Any, changes: list[dict[str, Any]], variant: dict[str, Any]) -> str:
    """A digest of what the confirmation showed: the live config, every change it listed
    (the after side too: the base may move under a field the live variant overrides) and
    the variant's version. If any moved before the click, it is shown again, up to date."""
    seen = json.dumps([live.variant_id, live.config(), changes, variant["version"]], sort_keys=True, default=str)
    return hashlib.sha256(seen.encode()).hexdigest()[:32]


@router.post("/agents/{agent}/variants/{variant}/{action}")
async def act(request: Request, agent: str, variant: str, action: str, writes: Writes) -> Response:
    who, form = writes
    if action not in ("activate", "deactivate"):
        raise NotFound("Action", action)
    db = db_of(request)
    found = await agents.get_agent(db, agent)
    shown = await variants.get_variant(db, found["id"], variant)
    live, changes = await _what_changes(request, found["id"], shown, action)
    if form.get("state") != _state(live, changes, shown):
        return await _confirmation(request, agent, variant, action, who, status_code=409,
                                   notice="The config changed since that page was shown. This is what will change"
                                          " now; confirm again.")
    context = WriteContext(actor=who.key_name, api_key=who.key_name, if_match=if_match(form))
    if action == "activate":
        await variants.activate_variant(db, found["id"], shown["id"], context=context)
    else:
        await variants.deactivate_variant(db, found["id"], shown["id"], context=context)
    return see_other(url("agents", found["slug"]))
