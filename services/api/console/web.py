"""What every console page shares: templates, the signed-in viewer, CSRF, forms and errors.

Pages call the same service functions as the API, with the same validation, so a form
shows exactly the API's errors, each next to the field its `param` names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.api.console import queries, texts
from services.api.console.sessions import Viewer, viewer_of
from services.api.db import Database
from services.api.errors import PROBLEMS, field_errors
from services.api.exceptions import DomainError, EnvironmentForbidden, FieldError, PreconditionFailed
from services.api.writes.context import WriteContext
from services.shared.agent_config import CONFIG_FIELDS, INTEGER_FIELDS, KEYED_FIELDS, NUMBER_FIELDS, STRING_FIELDS

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
# Long texts: collapsed to their first lines, compared line by line (console/texts.py).
templates.env.globals.update(
    preview=texts.preview,
    line_diff=texts.line_diff,
    placeholder_of=texts.placeholder,
    line_count=texts.line_count,
    json_text=texts.json_text,
    json_head=texts.json_head,
    KEYED_FIELDS=KEYED_FIELDS,
)
SESSION_COOKIE = "av_session"
# Before sign-in there is no session to hold a CSRF token: the sign-in form carries one
# that must equal this cookie's (double submit).
SIGN_IN_COOKIE = "av_sign_in"
PREFIX = "/console"


class SignInRequired(Exception):
    """No live session: the page redirects to the sign-in form."""


class Forbidden(Exception):
    """The viewer's key may not change anything (a `read` key)."""


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer (a dependency of every page but sign-in)."""
    found = await viewer_of(
        request.app.state.db, request.cookies.get(SESSION_COOKIE), auth_disabled=request.app.state.auth_disabled
    )
    if found is None:
        raise SignInRequired
    return found


async def writer(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> tuple[Viewer, dict[str, str]]:
    """A viewer allowed to change things, and the POSTed form, whose CSRF token checks out."""
    form = await form_of(request)
    if not same_token(form.get("csrf", ""), who.csrf_token):
        raise CsrfRefused
    if not who.can_write:
        raise Forbidden
    return who, form


async def place(who: Annotated[Viewer, Depends(viewer)], environment: str | None = None) -> queries.Named:
    """The environment an agent page shows and changes: `?environment=` (a slug or an id; the
    forms of a page carry it in their action), else the key's when it is bound, else
    production. A bound key sees and changes its own only: naming another is refused as the
    API refuses it (403 `environment_forbidden`), whether that one exists or not."""
    named = environment.strip() if environment and environment.strip() else None
    bound = who.environment_id
    if bound is not None and named is not None and named not in (bound, who.environment_slug):
        raise EnvironmentForbidden(
            f"The API key '{who.key_name}' is bound to environment '{who.environment_slug}'; it cannot name '{named}'",
            errors=[FieldError("environment", f"the key is bound to '{who.environment_slug}'")],
        )
    return queries.Named(named, bound)  # looked up in the page's snapshot


class CsrfRefused(Exception):
    """A POST without the session's CSRF token."""


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, context, status_code=status_code, headers={"Cache-Control": "no-store"}
    )


def see_other(path: str) -> RedirectResponse:
    """After a successful POST: the page to show (Post/Redirect/Get)."""
    return RedirectResponse(path, status_code=303)


def url(*parts: str) -> str:
    """A console URL from path segments (ids and slugs need no escaping, but names might)."""
    return PREFIX + "".join("/" + quote(part, safe="") for part in parts)


def digest(seen: Any) -> str:
    """A confirmation's digest of what it showed (posted back with the form): when what it
    would do has moved before the click, the page is shown again, up to date."""
    return hashlib.sha256(json.dumps(seen, sort_keys=True, default=str).encode()).hexdigest()[:32]


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of a posted token (any text at all) with ours."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


# ----------------------------------------------------------------------------- forms


def typed(name: str, raw: str) -> Any:
    """A config field's form value as the API would receive it: numbers as numbers (a
    value that is not one stays a string, and validation says so next to the field)."""
    if name in INTEGER_FIELDS:
        try:
            return int(raw)
        except ValueError:
            return raw
    if name in NUMBER_FIELDS:
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


# Text fields that may be "" (a variant may override a prompt with nothing): their inputs
# come with a "set to empty" box, since an empty input means "inherit".
EMPTY_ALLOWED = tuple(name for name, (least, _) in STRING_FIELDS.items() if least == 0)


templates.env.globals["EMPTY_ALLOWED"] = EMPTY_ALLOWED


def config_from(form: Mapping[str, str], prefix: str, *, keep_empty: bool) -> dict[str, Any]:
    """The twelve fields posted as `<prefix>.<field>`. Empty numeric inputs are left out;
    empty text inputs too unless `keep_empty` (a base config may set a prompt to "")."""
    out: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        key = f"{prefix}.{name}"
        if key not in form:
            continue
        raw = form[key].replace("\r\n", "\n")
        if raw.strip() == "" and (name in INTEGER_FIELDS or name in NUMBER_FIELDS or not keep_empty):
            if name in EMPTY_ALLOWED and f"{key}.empty" in form:
                out[name] = ""  # "set to empty": an override of "", not an inherited value
            continue
        out[name] = typed(name, raw)
    return out


def errors_of(error: Exception) -> tuple[str, dict[str, str]]:
    """(a sentence for the top of the form, {param: message}) from the API's own errors.
    An error inside a JSON editor's value is shown at that editor, its path in the message."""
    if isinstance(error, ValidationError):
        return "Some fields need fixing.", _at_fields(field_errors(error.errors()))
    if isinstance(error, PreconditionFailed):
        return (
            "Someone changed this since you opened the page; nothing was saved. Reload it to see their"
            " change, then make yours again."
        ), {}
    if isinstance(error, DomainError):
        return error.detail, _at_fields(error.errors or [])
    raise error


def _at_fields(found: Iterable[FieldError]) -> dict[str, str]:
    """{field: message}, the messages of one field on lines of their own; a param inside a
    JSON editor's value (`overrides.tools.search.parameters.properties.q.type`) goes to that
    editor (`overrides.tools`) and its message starts with the whole param."""
    out: dict[str, list[str]] = {}
    for error in found:
        field = json_field_of(error.param)
        message = error.message if field == error.param else f"{error.param}: {error.message}"
        if message not in out.setdefault(field, []):
            out[field].append(message)
    return {field: "\n".join(messages) for field, messages in out.items()}


# ----------------------------------------------------------------------- JSON editors

# Contract 1.1's keyed fields, each edited as JSON in a textarea of its own: an object of
# entries by name (a variant's `params_unset`: a list of names), and the agent's
# `params_schema` (a JSON Schema).
JSON_FIELDS = ("params", "params_unset", "tools", "variables")
JSON_HINTS = {
    "params": 'Further model parameters, a JSON object: {"top_p": 0.9, "stop": ["\\n"]}; any value but null, at '
    "most 64 keys.",
    "tools": 'Tools by name, a JSON object: {"search": {"description": "…", "parameters": {a JSON Schema}, '
    '"strict": true}}.',
    "variables": 'The prompts\' {{placeholders}} by name, a JSON object: {"customer": {"type": "string", '
    '"description": "…"}}; type string, number, integer or boolean; "required" (default true), or a "default".',
    "params_unset": 'Params of the base config this variant drops, a JSON list: ["top_p"].',
}
PARAMS_SCHEMA_HINT = "A JSON Schema (draft 2020-12) every resolved params must satisfy. Empty: none."


def json_hint(prefix: str, name: str, *, editing: bool = False) -> str:
    """What a JSON editor takes, and what leaving it empty means on its form."""
    hint = JSON_HINTS[name]
    if prefix == "overrides":
        if name == "tools":
            hint += ' {"name": {"disabled": true}} drops the base config\'s tool.'
        if name != "params_unset":
            hint += " Each entry replaces the base config's of its name; the others are inherited."
        return hint + " Empty: none of its own."
    if editing:
        return hint + " The whole set: an entry taken out here is removed. Empty: none."
    if name == "variables":
        return hint + " Empty: inferred from the prompts, each placeholder a required string."
    return hint + " Empty: none."


templates.env.globals.update(json_hint=json_hint, JSON_FIELDS=JSON_FIELDS, PARAMS_SCHEMA_HINT=PARAMS_SCHEMA_HINT)


def json_field_of(param: str) -> str:
    """The form field that shows an error's `param`: the JSON editor it lies inside, else itself."""
    group, _, rest = param.partition(".")
    if group == "params_schema" and rest:
        return group
    name, dot, _ = rest.partition(".")
    if group in ("config", "overrides") and name in JSON_FIELDS and dot:
        return f"{group}.{name}"
    return param


def pretty_json(value: Any) -> str:
    """A value as its JSON editor shows it: indented, non-ASCII as it is; "" for none."""
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the name {json.dumps(key, ensure_ascii=False)} is given twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_of(form: Mapping[str, str], params: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """What each JSON editor among `params` holds, for those filled in (an empty one is left
    out), and {param: why} for those that hold no JSON: the form shows it at the editor, with
    the text as it was typed, and nothing is sent."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for param in params:
        raw = form.get(param, "")
        if not raw.strip():
            continue
        try:
            values[param] = json.loads(raw, object_pairs_hook=_unique, parse_constant=_no_constant)
        except json.JSONDecodeError as error:
            errors[param] = f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        except ValueError as error:
            errors[param] = f"Not valid JSON: {error}."
        except RecursionError:
            errors[param] = "Not valid JSON here: nested too deeply."
    return values, errors


def same_json(one: Any, other: Any) -> bool:
    """Equal as JSON (in Python `1 == True` and `{"a": 1} == {"a": 1.0}`; not in JSON)."""
    return json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)


def entries_patch(current: Mapping[str, Any] | None, wanted: Any) -> Any:
    """A merge patch that leaves a keyed field holding exactly `wanted`, its editor's whole
    object: the entries that are new or changed, and null for each entry no longer there.
    A value that is no object goes as it is, for the API's validation to name."""
    if not isinstance(wanted, dict):
        return wanted
    current = current or {}
    patch: dict[str, Any] = {key: None for key in current if key not in wanted}
    patch.update(
        {key: value for key, value in wanted.items() if key not in current or not same_json(current[key], value)}
    )
    return patch


def status_of(error: Exception) -> int:
    """The status the API gives this error (422 for a form's own validation)."""
    if isinstance(error, DomainError) and error.code in PROBLEMS:
        return PROBLEMS[error.code].status
    return 422


def db_of(request: Request) -> Database:
    return request.app.state.db


def error_page(request: Request, status_code: int, title: str, detail: str) -> Response:
    """The console's error page: what went wrong, with the status the API would give it.
    `errors.install` renders the API's errors with it on console paths."""
    return render(request, "message.html", status_code=status_code, title=title, detail=detail)


def write_context(who: Viewer, form: Mapping[str, str] | None = None) -> WriteContext:
    """What a console write carries. Changes made in the console are the key's, like any
    API call with it. Given the posted `form` of a page that showed a version, that
    version is the If-Match: digits only, and anything else (or none) matches no version,
    so a form that lost or forged it is refused rather than applied over someone's change."""
    if form is None:
        return WriteContext(actor=who.key_name, api_key=who.key_name)
    version = form.get("version", "")
    return WriteContext(
        actor=who.key_name, api_key=who.key_name, if_match=f'"{version}"' if version.isdigit() else '"none"'
    )
