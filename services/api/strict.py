"""What a request may carry: the query parameters its route declares.

`StrictRoute` is the route class of the API's routers (the console has its own). A query
parameter the route does not declare is a 422 `unknown_parameter` (a misspelt `after` would
otherwise page from the start, forever); only routes under /v1 check it. The names come from
the route's own dependant (its signature and its dependencies), computed once when the route
is built.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from services.api.errors import validation_detail
from services.api.exceptions import FieldError, UnknownParameter


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


def unknown_parameters(names: Iterable[str], known: frozenset[str]) -> list[FieldError]:
    errors = []
    for name in names:
        if name in known:
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
        checked = self.path.startswith("/v1/")

        async def strict_handler(request: Request) -> Response:
            # A few microseconds: the query string is parsed once (FastAPI reads the same
            # request's parsed parameters).
            if checked and request.scope["query_string"] and not known.issuperset(request.query_params):
                errors = unknown_parameters(request.query_params, known)
                raise UnknownParameter(validation_detail(errors), errors=errors)
            return await handler(request)

        return strict_handler
