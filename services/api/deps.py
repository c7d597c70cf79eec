"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from services.api.db import Database
from services.api.principal import Principal, current_key, request_environment, unbound_only
from services.api.schemas import cursor, id_pattern
from services.api.writes.context import WriteContext


async def get_db(request: Request) -> Database:
    # async: a plain `def` dependency would run in a worker thread on every request.
    return request.app.state.db


DB = Annotated[Database, Depends(get_db)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size, 1-100.")]
_AFTER = Query(description="The id of the last item already seen; the page starts after it.")
AgentCursor = Annotated[Annotated[str, id_pattern("agent")] | None, _AFTER, cursor("agent")]
VariantCursor = Annotated[Annotated[str, id_pattern("variant")] | None, _AFTER, cursor("variant")]
RevisionCursor = Annotated[Annotated[str, id_pattern("revision")] | None, _AFTER, cursor("revision")]
ExperimentCursor = Annotated[Annotated[str, id_pattern("experiment")] | None, _AFTER, cursor("experiment")]
KeyCursor = Annotated[Annotated[str, id_pattern("api_key")] | None, _AFTER, cursor("api_key")]
EnvironmentCursor = Annotated[Annotated[str, id_pattern("environment")] | None, _AFTER, cursor("environment")]
ModelCursor = Annotated[Annotated[str, id_pattern("model")] | None, _AFTER, cursor("model")]


IF_MATCH = Header(
    alias="If-Match",
    max_length=1024,
    description='Only if the target\'s ETag still matches (`"3"`, or `*`); 412 otherwise.',
)


async def write_context(
    request: Request,
    x_actor: Annotated[
        str | None,
        Header(
            alias="X-Actor",
            min_length=1,
            max_length=256,
            description="Who the change is made for (a person a tool acts for); recorded in the revision.",
        ),
    ] = None,
    if_match: Annotated[str | None, IF_MATCH] = None,
) -> WriteContext:
    # The key the access gate verified (absent while auth is off). A claimed actor is
    # always recorded next to the key that made the claim.
    key = current_key(request.scope)
    key_name = key.name if key is not None else None
    bound_to = key.environment_id if key is not None else None
    return WriteContext(actor=_utf8(x_actor) or key_name, api_key=key_name, if_match=if_match, bound_to=bound_to)


def _utf8(value: str | None) -> str | None:
    """A header value as the client wrote it: Starlette decodes header bytes as Latin-1,
    but a name like `José` usually arrives as UTF-8 bytes; bytes that are not UTF-8 stay Latin-1."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


Write = Annotated[WriteContext, Depends(write_context)]


async def precondition(request: Request, if_match: Annotated[str | None, IF_MATCH] = None) -> WriteContext:
    """The write context of a change that records no revision (an environment's): only
    `If-Match` and the key, so the document offers no `X-Actor` that nothing would keep."""
    key = current_key(request.scope)
    key_name = key.name if key is not None else None
    return WriteContext(actor=key_name, api_key=key_name, if_match=if_match)


Precondition = Annotated[WriteContext, Depends(precondition)]


async def environment_ref(
    request: Request,
    environment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="The environment, by slug (`staging`) or id (`env_...`); default: the API key's "
            "environment when it is bound to one, else `production`. Unknown: 404 `resource_missing` with "
            "`param` `environment`; another than a bound key's: 403 `environment_forbidden`.",
        ),
    ] = None,
) -> str:
    """The environment a request names with `?environment=` (a slug or an id, as sent), or
    the one it gets when it names none: its key's when the key is bound, else `production`'s
    id. A bound key naming another is 403 `environment_forbidden` (see
    `services.api.principal.request_environment`, which services call for a body field
    `environment` in the same way). Services look it up (`environments.repository.named`
    for reads, `hold` for writes), which is where an unknown one becomes 404 with `param`
    `environment`."""
    return request_environment(current_key(request.scope), environment)


EnvironmentRef = Annotated[str, Depends(environment_ref)]


async def environment_filter(
    request: Request,
    environment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="Only this environment, by slug (`staging`) or id (`env_...`); default: every "
            "environment, or the API key's when it is bound to one. Unknown: 404 `resource_missing` with "
            "`param` `environment`; another than a bound key's: 403 `environment_forbidden`.",
        ),
    ] = None,
) -> str | None:
    """The environment a read of totals is confined to (`/usage`), as a ref to look up, or
    None for every environment: what `?environment=` names, else the key's when it is bound
    (a bound key sees only its own environment's data), else None. A bound key naming another
    is 403 `environment_forbidden`, as in `environment_ref`."""
    key = current_key(request.scope)
    if environment is None and (key is None or key.environment_id is None):
        return None
    return request_environment(key, environment)


EnvironmentFilter = Annotated[str | None, Depends(environment_filter)]


async def calling_key(request: Request) -> Principal | None:
    """The API key the request was made with (None while auth is off), for services whose
    answer depends on it (a bound key manages only its environment's keys)."""
    return current_key(request.scope)


Caller = Annotated[Principal | None, Depends(calling_key)]


async def unbound_key(request: Request) -> None:
    """Only for keys bound to no environment (contract 1.1: a bound key cannot write
    environments): 403 `environment_forbidden` for a bound one, before the body is read."""
    unbound_only(current_key(request.scope), "create, change or delete environments")
