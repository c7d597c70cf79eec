"""What a request may carry: the query parameters its route declares, JSON in UTF-8 with no key repeated.

`StrictRoute` is the route class of the API's routers (the console has its own). A query
parameter the route does not declare is a 422 `unknown_parameter` (a misspelt `after` would
otherwise page from the start, forever); only routes under /v1 check it. The names come from
the route's own dependant (its signature and its dependencies), computed once when the route
is built. A JSON body is parsed once, by `loads`: a charset other than UTF-8 in
`Content-Type`, or a body in UTF-16 or UTF-32, is a 415; a key repeated in one object is a
400 `malformed_json` naming the key (RFC 8259 leaves which value wins to the parser; we
don't guess).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from services.api.errors import validation_detail
from services.api.exceptions import FieldError, UnknownParameter

_UTF8 = frozenset({"utf-8", "utf8"})


class NotUtf8(ValueError):
    """The body is in another Unicode encoding (UTF-16 or UTF-32, with or without a BOM)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"The body is in {encoding.upper()}; send it in UTF-8")


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Called once per JSON object: the dict costs what json.loads would spend anyway, and
    # only an object with a repeated key pays for the search.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return result


def loads(body: bytes) -> Any:
    """`json.loads` of a request body, strictly: UTF-8 only (`NotUtf8` otherwise; a UTF-8
    BOM is allowed, as json.loads allows it), and no key repeated in an object
    (`json.JSONDecodeError` naming it). Lone surrogates decode as json.loads decodes them."""
    encoding = json.detect_encoding(body)
    if not encoding.startswith("utf-8"):
        raise NotUtf8(encoding)
    try:
        text = body.decode(encoding, "surrogatepass")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError(f"invalid UTF-8 at byte {error.start}", "", 0) from None
    try:
        return json.loads(text, object_pairs_hook=_object)
    except _RepeatedKey as repeated:
        raise json.JSONDecodeError(f"the key '{repeated.key}' is repeated in an object", text, 0) from None


# Where the parsed body waits in the ASGI scope: the idempotency layer parses a keyed POST's
# body for its fingerprint, and the route reuses it instead of parsing the same bytes again.
_PARSED = "strict.parsed_body"


def parse_body(scope: Scope, body: bytes) -> Any:
    """`loads(body)`, once per request: a body already parsed for this scope is not parsed again."""
    parsed = scope.get(_PARSED)
    if parsed is not None and parsed[0] == body:  # a memcmp, microseconds for a 1,000-outcome batch
        return parsed[1]
    value = loads(body)
    scope[_PARSED] = (body, value)
    return value


def _charset(content_type: str | None) -> str | None:
    """The `charset` parameter of a Content-Type, lowercased, or None."""
    if not content_type or ";" not in content_type:
        return None
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


class StrictRequest(Request):
    """A request whose JSON body is read by `loads` (FastAPI calls `json()` for JSON bodies)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            charset = _charset(self.headers.get("content-type"))
            if charset is not None and charset not in _UTF8:
                raise HTTPException(415, f"The body must be UTF-8 JSON (Content-Type says charset={charset})")
            try:
                self._json = parse_body(self.scope, await self.body())
            except NotUtf8 as error:
                raise HTTPException(415, str(error)) from None
        return self._json


def query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included."""
    return frozenset(field.alias for field in get_flat_params(dependant) if isinstance(field.field_info, params.Query))


def suggestion(name: str, known: Iterable[str]) -> str | None:
    """The declared name a client probably meant: the same in another case, a close
    spelling (`limt`), or one inside it (`starting_after` -> `after`)."""
    lowered = {k.lower(): k for k in known}
    wanted = name.lower()
    close = difflib.get_close_matches(wanted, lowered, n=1, cutoff=0.6)
    if close:
        return lowered[close[0]]
    inside = [k for k in lowered if len(k) >= 3 and k in wanted]
    return lowered[max(inside, key=len)] if inside else None


def unknown_parameters(names: Iterable[str], known: frozenset[str], prefixes: tuple[str, ...] = ()) -> list[FieldError]:
    errors = []
    for name in names:
        if name in known or (prefixes and name.startswith(prefixes)):
            continue
        close = suggestion(name, known)
        if close is not None:
            message = f"Unknown query parameter; did you mean `{close}`?"
        elif known:
            message = "Unknown query parameter; this route takes " + ", ".join(f"`{k}`" for k in sorted(known))
        else:
            message = "Unknown query parameter; this route takes none"
        errors.append(FieldError(name, message))
    return errors


class StrictRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = query_names(self.dependant)
        # A family of parameters a route reads itself (`attr.*` on `.../resolved`): `query_prefixes`.
        prefixes: tuple[str, ...] = getattr(self.endpoint, "query_prefixes", ())
        checked = self.path.startswith("/v1/")
        reads_body = self.body_field is not None

        async def strict_handler(request: Request) -> Response:
            # A few microseconds: the query string is parsed once (FastAPI reads the same
            # request's parsed parameters), and only a route with a body makes a new request.
            if reads_body:
                request = StrictRequest(request.scope, request.receive)
            if checked and request.scope["query_string"] and not known.issuperset(request.query_params):
                errors = unknown_parameters(request.query_params, known, prefixes)
                if errors:
                    raise UnknownParameter(validation_detail(errors), errors=errors)
            return await handler(request)

        return strict_handler
