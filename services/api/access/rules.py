"""The scope each route needs, by method and path template.

Scopes nest (`admin` > `write` > `read` > `resolve`), so a rule names the least scope
that may call the route. The table of every route's rule is built from the app's own
routes, and the access matrix test checks it against a table of its own, so a new route
cannot go unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.routing import BaseRoute, compile_path

from services.api.keys.schemas import RANK
from services.api.routes import every_route

# Open to anyone: probes and the API's own description.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# What an agent in production needs.
RESOLVE_ROUTES = frozenset({
    ("GET", "/v1/agents/{agent}/resolved"),
    ("GET", "/v1/agents/{agent}/bundle"),
    ("GET", "/v1/agents/{agent}/bundle/watch"),
    ("POST", "/v1/agents/{agent}/outcomes"),
})
READ_METHODS = frozenset({"GET", "HEAD"})


def required_scope(method: str, path: str) -> str | None:
    """The least scope for `method` on the route `path` (a template), or None when open.

    Routes outside /v1 are open (the bench baselines; the console signs people in itself).
    """
    if path in OPEN_PATHS or not path.startswith("/v1/"):
        return None
    if path == "/v1/keys" or path.startswith("/v1/keys/"):
        return "admin"
    if (("GET" if method == "HEAD" else method), path) in RESOLVE_ROUTES:
        return "resolve"
    return "read" if method in READ_METHODS else "write"


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    template: str


class RouteRules:
    """Finds the route a request path belongs to, in the app's order, and its scope."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        templates = dict.fromkeys(path for path, _methods in every_route(routes))  # in order, once each
        self._rules = [_Rule(compile_path(path)[0], path) for path in templates]

    def template(self, path: str) -> str | None:
        for rule in self._rules:
            if rule.regex.match(path):
                return rule.template
        return None

    def required(self, method: str, path: str) -> str | None:
        """The scope a request needs. A /v1 path no route serves needs a valid key of any
        scope, so the API's shape is not shown to callers without one."""
        template = self.template(path)
        if template is None:
            return "resolve" if path.startswith("/v1/") or path == "/v1" else None
        return required_scope(method, template)


def allows(scope: str, needed: str) -> bool:
    return RANK[scope] >= RANK[needed]
