"""Console pages for an agent's history: the timeline of revisions with what each changed,
undo of the latest change (behind a confirmation naming it), restore of a variant to a
revision, and the "as of" view.

Reads come from `console.queries` (one snapshot a page), writes go through the services."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.api.console import queries
from services.api.console.sessions import Viewer
from services.api.console.web import db_of, error_page, place, render, see_other, url, viewer, write_context, writer
from services.api.exceptions import DomainError
from services.api.undo import use_case as undoing
from services.api.variants import service as variants
from services.shared.agent_config import CONFIG_FIELDS, KEYED_FIELDS
from services.shared.identifiers import is_id

router = APIRouter()
PAGE = 30
Seen = Annotated[Viewer, Depends(viewer)]
Writes = Annotated[tuple[Viewer, dict[str, str]], Depends(writer)]
Place = Annotated[queries.Named, Depends(place)]
# What a revision's before/after objects may differ in, shown as a diff (the rest is bookkeeping).
SHOWN = (
    "name",
    "variant_name",
    "slug",
    "description",
    "metadata",
    "status",
    "is_active",
    "arms",
    "salt",
    "rules",
    "params_schema",
)
# After the twelve, in this order: the keyed fields, whose entries are shown one by one.
KEYED_ORDER = ("params", "params_unset", "tools", "variables")


def revision_changes(revision: dict[str, Any]) -> list[dict[str, Any]]:
    """What a revision changed in its target object, field by field: its before and after
    objects with `config` and `overrides` flattened (`overrides.temperature`), and their
    keyed fields entry by entry (`config.params.top_p`, `overrides.tools.search`), names and
    flags included. Not `diffs.config_changes`, which compares two resolved configs."""
    before, after = revision["before"] or {}, revision["after"] or {}

    def flat(obj: dict[str, Any]) -> dict[str, Any]:
        out = {key: obj[key] for key in SHOWN if key in obj}
        for group in ("config", "overrides"):
            for name, value in (obj.get(group) or {}).items():
                if name in KEYED_FIELDS and isinstance(value, dict):
                    out.update({f"{group}.{name}.{key}": entry for key, entry in value.items()})
                else:
                    out[f"{group}.{name}"] = value
        return out

    old, new = flat(before), flat(after)
    return [
        {"field": key, "from": old.get(key), "to": new.get(key)}
        for key in sorted(old.keys() | new.keys(), key=_order)
        if old.get(key) != new.get(key)
    ]


def _order(key: str) -> tuple[int, str]:
    name = key.split(".", 1)[-1]
    if name in CONFIG_FIELDS:
        return (CONFIG_FIELDS.index(name), key)
    kind = name.split(".", 1)[0]
    if key.startswith(("config.", "overrides.")) and kind in KEYED_ORDER:
        return (len(CONFIG_FIELDS) + KEYED_ORDER.index(kind), key)
    return (-1, key)


@router.get("/agents/{agent}/history")
async def timeline(
    request: Request,
    agent: str,
    who: Seen,
    named: Place,
    after: str | None = None,
    at: str = "",
    undone: str | None = None,
) -> Response:
    return await _timeline(request, agent, who, named, after=after, at=at, problem=None, undone=undone)


def instant(text: str) -> datetime:
    """An "as of" time: RFC 3339, or the browser's `datetime-local` (no offset), read as UTC
    like every time the console shows. ValueError when it is not one, or out of range."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValueError("Not a date and time between the years 1 and 9999 (UTC).") from error


async def _timeline(
    request: Request,
    agent: str,
    who: Viewer,
    named: queries.Named,
    *,
    after: str | None,
    at: str,
    problem: str | None,
    status_code: int = 200,
    undone: str | None = None,
) -> Response:
    if after is not None and not is_id("revision", after):
        await queries.agent(db_of(request), agent, named=named)  # an unknown agent is a 404 first
        return error_page(request, 422, "Not a page", f"'{after}' is not a revision id.")
    moment, as_of_error = None, None
    if at:
        try:
            moment = instant(at)
        except ValueError as error:
            as_of_error = str(error)
    # After an undo, the page says what was undone (`undone`: the revision reverted).
    undone = undone if undone is not None and is_id("revision", undone) else None
    shown = await queries.history_page(db_of(request), agent, after, moment, limit=PAGE, named=named, undone=undone)
    entries = [{"revision": r, "changes": revision_changes(r)} for r in shown.revisions.items]
    return render(
        request,
        "history.html",
        status_code=status_code,
        who=who,
        where=shown.where,
        agent=shown.agent,
        entries=entries,
        more=shown.revisions.next_after is not None,
        next_after=shown.revisions.next_after,
        at=at,
        moment=moment,
        as_of=shown.as_of,
        as_of_error=as_of_error or shown.as_of_error,
        fields=CONFIG_FIELDS,
        problem=problem,
        next_undo=shown.next_undo,
        undone=shown.undone,
    )


@router.get("/agents/{agent}/undo")
async def confirm_undo(request: Request, agent: str, who: Seen, named: Place) -> Response:
    """Which change an undo in the environment would revert (what, by whom, when, its before
    and after), before it happens."""
    found, target, where = await queries.next_undo(db_of(request), agent, named=named)
    return _undo_confirmation(request, found, target, who, where, notice=None)


def _undo_confirmation(
    request: Request,
    agent: dict[str, Any],
    target: dict[str, Any] | None,
    who: Viewer,
    where: queries.Where,
    *,
    notice: str | None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "confirm_undo.html",
        status_code=status_code,
        who=who,
        where=where,
        agent=agent,
        target=target,
        changes=revision_changes(target) if target is not None else [],
        notice=notice,
    )


@router.post("/agents/{agent}/undo")
async def undo(request: Request, agent: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    db = db_of(request)
    expected = form.get("revision_id", "")
    if not is_id("revision", expected):  # the console always says which change it undoes
        return await _timeline(
            request,
            agent,
            who,
            named,
            after=None,
            at="",
            status_code=422,
            problem="Which change to undo was not said; use the button on this page.",
        )
    found, target, where = await queries.next_undo(db, agent, named=named)
    if target is None or target["id"] != expected:  # another change came first: show what undo would do now
        notice = (
            f"Not done: the latest change is now revision {target['id']}, not {expected}. This is what undo"
            " would revert now; confirm again."
            if target is not None
            else f"Not done: revision {expected} is no longer the latest change, and nothing is left to undo."
        )
        return _undo_confirmation(request, found, target, who, where, status_code=409, notice=notice)
    try:
        # In the environment: its newest change made there or to shared definitions.
        done = await undoing.undo(
            db, found["id"], environment=where.id, named=True, context=write_context(who), expected=expected
        )
    except DomainError as error:  # another change came first after all, or it would break a rule
        return await _timeline(request, agent, who, named, after=None, at="", problem=error.detail, status_code=409)
    return see_other(where.link(url("agents", found["slug"], "history"), undone=done["reverted_revision_id"]))


@router.post("/agents/{agent}/variants/{variant}/restore")
async def restore(request: Request, agent: str, variant: str, writes: Writes, named: Place) -> Response:
    who, form = writes
    db = db_of(request)
    found, where = await queries.agent(db, agent, named=named)
    try:
        restored = await variants.restore_variant(
            db,
            found["id"],
            variant,
            form.get("revision_id", ""),
            environment=where.id,
            context=write_context(who),
        )
    except DomainError as error:
        if error.code == "resource_missing" and not error.errors:
            raise
        return await _timeline(request, agent, who, named, after=None, at="", problem=error.detail, status_code=409)
    return see_other(where.link(url("agents", found["slug"], "variants", restored["slug"])))
