"""Every route the app serves, as (path template, methods), whatever its routers' nesting.

FastAPI 0.16x keeps included routers as nested `_IncludedRouter` entries in `app.routes`
that resolve their routes lazily, so `app.routes` alone no longer lists every route.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from starlette.routing import BaseRoute, Route


def every_route(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, frozenset[str]]]:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for context in contexts():
                methods = getattr(context.original_route, "methods", None) or ()
                yield context.path, frozenset(methods)
        elif isinstance(route, Route):
            yield route.path, frozenset(route.methods or ())
