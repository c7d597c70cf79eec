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

from services.api.principal import RANK
from services.api.routes import every_route

# Open to anyone: probes, the API's own description, and `/` (a redirect to the console).
# The docs pages' scripts and styles (/docs/assets/...) are open as every path outside /v1 is.
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})
# What an agent in production needs. The bundle routes come with the SDK (issue 8): their
# rule is in place before they are.
RESOLVE_ROUTES = frozenset(
    {
        ("GET", "/v1/agents/{agent}/resolved"),
        ("POST", "/v1/agents/{agent}/resolve"),  # contract 1.1: a read with a typed context
        ("POST", "/v1/agents/{agent}/render"),  # contract 1.1: its prompts rendered
        ("GET", "/v1/agents/{agent}/bundle"),
        ("GET", "/v1/agents/{agent}/bundle/watch"),
        ("POST", "/v1/agents/{agent}/outcomes"),
    }
)
# Prometheus' text format: `read`, unless METRICS_OPEN opens it (`RouteRules(opened=...)`).
METRICS_PATH = "/metrics"
# OpenFeature's Remote Evaluation Protocol: every path under it evaluates, so needs `resolve`.
OFREP_PREFIX = "/ofrep"
# OPTIONS changes nothing either (with CORS on, preflights never reach the gate).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(method: str, path: str) -> str | None:
    """The least scope for `method` on the route `path` (a template), or None when open.

    Routes outside /v1 are open (the bench baselines; the console signs people in itself),
    but OFREP's (contract 1.1, "Interoperability"): evaluations, the `resolve` scope's reads,
    and /metrics (`read`, unless the operator opens it).
    """
    if path == METRICS_PATH:
        return "read"
    if path == OFREP_PREFIX or path.startswith(OFREP_PREFIX + "/"):
        return "resolve"
    if path in OPEN_PATHS or not path.startswith("/v1/"):
        return None
    if path == "/v1/keys" or path.startswith("/v1/keys/"):
        return "admin"
    if path == "/v1/webhooks" or path.startswith("/v1/webhooks/"):
        return "admin"  # contract 1.1: webhooks are admin's, reads too (their URLs and logs)
    if path == "/v1/environments" or path.startswith("/v1/environments/"):
        # Contract 1.1: environment writes need `admin`, reads `read`.
        return "read" if method in READ_METHODS else "admin"
    if path == "/v1/models" or path.startswith("/v1/models/"):
        # Contract 1.1: model writes need `admin`, reads `read`.
        return "read" if method in READ_METHODS else "admin"
    if (("GET" if method == "HEAD" else method), path) in RESOLVE_ROUTES:
        return "resolve"
    return "read" if method in READ_METHODS else "write"


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    template: str


_UNKNOWN = object()
_MEMO_SIZE = 4096
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _ranks(template: str) -> dict[str, int | None]:
    """The least rank per method for one route template (computed once, not per request)."""
    ranks = {}
    for method in _METHODS:
        scope = required_scope(method, template)
        ranks[method] = RANK[scope] if scope is not None else None
    return ranks


class RouteRules:
    """Finds the route a request path belongs to, in the app's order, and its scope."""

    def __init__(self, routes: Iterable[BaseRoute], *, opened: Iterable[str] = ()) -> None:
        """`opened`: templates the operator opened to anyone (METRICS_OPEN: /metrics)."""
        templates = dict.fromkeys(path for path, _methods in every_route(routes))  # in order, once each
        # Paths without parameters by a dict lookup; the others by their regexes, in order.
        self._static = {path: path for path in templates if "{" not in path}
        self._rules = [_Rule(compile_path(path)[0], path) for path in templates if "{" in path]
        self._ranks = {template: _ranks(template) for template in templates}
        for template in set(opened) & set(templates):
            self._ranks[template] = dict.fromkeys(self._ranks[template])
        self._memo: dict[tuple[str, str], int | None] = {}

    def template(self, path: str) -> str | None:
        static = self._static.get(path)
        if static is not None:
            return static
        for rule in self._rules:
            if rule.regex.match(path):
                return rule.template
        return None

    def required(self, method: str, path: str) -> int | None:
        """`rank_for`, remembered for the paths asked most (agents resolve the same few
        paths over and over); forgotten wholesale when the memo fills."""
        memo_key = (method, path)
        rank = self._memo.get(memo_key, _UNKNOWN)
        if rank is _UNKNOWN:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            rank = self._memo[memo_key] = self.rank_for(method, path)
        return rank  # type: ignore[return-value]

    def rank_for(self, method: str, path: str) -> int | None:
        """The rank of the least scope a request needs (`RANK`), or None when it is open.

        A path no known route serves is judged by the path itself, as if it were a
        template: a /v1 path needs a key (so the API's shape is not shown to callers
        without one) and never less than its method and prefix ask for. Should a route
        ever be missing from the table, it fails closed, not open."""
        template = self.template(path)
        if template is None:
            scope = required_scope(method, "/v1/" if path == "/v1" else path)
            return RANK[scope] if scope is not None else None
        ranks = self._ranks[template]
        if method in ranks:
            return ranks[method]
        scope = required_scope(method, template)  # a method nobody uses: work it out
        return RANK[scope] if scope is not None else None
