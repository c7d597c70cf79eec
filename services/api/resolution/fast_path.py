"""`GET /v1/agents/{agent}/resolved`, plain or with `?subject=` and `?environment=`,
answered in front of everything else.

Agents call this many times a second, so it is answered by the outermost layer, in one
step: the key admitted from memory (`AccessGate.admit`), the answer from the cache (a
subject costs a hash, `cache.Experiment`), the access log's line noted (`AccessLog.note`).
A miss runs the one resolve query here too (`service.resolve`, bounded by the request's
deadline) and fills the cache. Nothing else of the stack runs: the gate, the access log's
wrapper, the security headers (the cached header lists carry them) and FastAPI's routing
and dependencies cost several times what a hit does (bench/README.md has the profile).

Everything else goes to the stack unchanged, and so does every case this layer does not
answer exactly as the stack would: another query string (`at=`, `variant=`, a repeated
or unknown parameter, a subject FastAPI must judge), a key the ring cannot admit now (the
gate says why: 401, 403, 429), a request with an `Origin` when CORS is on, a root path, an
unknown agent or a failed query (the stack answers its problem). A request admitted here
keeps its key in the scope, so the gate lets it through without taking a second token.
"""

from __future__ import annotations

import time
from urllib.parse import unquote_plus

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api import tracing
from services.api.access.gate import AccessGate
from services.api.access_log import AccessLog
from services.api.deadline import deadline_of, within
from services.api.http import listed
from services.api.principal import SCOPE_KEY
from services.api.resolution import service
from services.api.resolution.cache import ResolveCache, response_headers
from services.api.security_headers import JSON_HEADERS
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

_PREFIX = "/v1/agents/"
_SUFFIX = "/resolved"
ROUTE = "/v1/agents/{agent}/resolved"
# The `explain` values this layer reads as FastAPI does; any other goes to FastAPI.
_EXPLAIN = {b"false": False, b"0": False, b"true": True, b"1": True}
SUBJECT_MAX_LENGTH = 256  # the route's `max_length`: a longer subject is FastAPI's 422
_PLAIN = (False, None, None)  # no query string: what agents send most
ENVIRONMENT_MAX_LENGTH = 64  # the parameter's `max_length`


def _decoded(value: bytes) -> str:
    """A query value decoded as Starlette decodes query strings (latin-1 bytes, then
    %-escapes as UTF-8)."""
    if b"%" in value or b"+" in value:
        return unquote_plus(value.decode("latin-1"), errors="replace")
    return value.decode("latin-1")


def parse_query(query: bytes) -> tuple[bool, str | None, str | None] | None:
    """(explain, subject, environment) for the query strings this layer answers: none, or
    `explain=`, `subject=` and `environment=`, each at most once. None for any other (`at=`,
    `variant=`, `attr.*`), which FastAPI judges."""
    if not query:
        return _PLAIN
    explain, subject, environment = False, None, None
    seen = set()
    for part in query.split(b"&"):
        name, equals, value = part.partition(b"=")
        if not equals or name in seen:
            return None
        seen.add(name)
        if name == b"explain":
            found = _EXPLAIN.get(value)
            if found is None:
                return None
            explain = found
        elif name == b"subject":
            subject = _decoded(value)
            if not subject or len(subject) > SUBJECT_MAX_LENGTH:
                return None
        elif name == b"environment":
            environment = _decoded(value)
            if not environment or len(environment) > ENVIRONMENT_MAX_LENGTH:
                return None
        else:
            return None
    return explain, subject, environment


class ResolveFastPath:
    def __init__(
        self,
        app: ASGIApp,
        state: State,
        *,
        gate: AccessGate | None,
        access_log: AccessLog | None,
        cors: bool,
        timeout_seconds: float,
    ) -> None:
        self.app = app  # the whole stack: what this layer does not answer goes there
        self.state = state  # the app's state, where the lifespan puts the cache and the database
        self.gate = gate  # None with AUTH_DISABLED
        self.access_log = access_log  # None when off
        self.cors = cors  # a browser's request (`Origin`) needs CORSMiddleware's headers
        self.timeout_seconds = timeout_seconds
        needed = gate.rules.rank_for("GET", _PREFIX + "x" + _SUFFIX) if gate is not None else 0
        assert needed is not None, f"{ROUTE} needs a key"
        self.needed = needed
        # Answers by status, for /metrics (`metrics.ServiceCollector` reads it at scrape
        # time): a plain dict bumped on the event loop, no lock, nothing kept per request.
        self.answers: dict[int, int] = {200: 0, 304: 0}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
            raw_query: bytes = scope["query_string"]
            query = parse_query(raw_query) if raw_query else _PLAIN
        else:
            query = None
        ref = path[len(_PREFIX) : -len(_SUFFIX)]
        if query is None or not ref or "/" in ref:
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        authorization = conditional = None
        for name, value in scope["headers"]:  # written out: this runs on every request
            # The first of a repeated header, as the gate and Starlette read it.
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"if-none-match":
                if conditional is None:
                    conditional = value
            elif name == b"origin" and self.cors:
                await self.app(scope, receive, send)
                return
        explain, subject, environment = query
        if self.gate is not None:
            key = self.gate.admit(authorization, self.needed)
            if key is None:
                await self.app(scope, receive, send)
                return
            bound = key.environment_id
            if bound is not None:
                if environment is not None:  # the stack judges it (403 when it is another)
                    await self.app(scope, receive, send)
                    return
                environment = bound  # a bound key's requests default to its environment
            scope[SCOPE_KEY] = key
        if environment is None:
            environment = PRODUCTION_ENVIRONMENT_ID
        # From the state's dict: `State.__getattr__` costs a hit about 1%.
        cache: ResolveCache | None = self.state._state.get("resolve_cache")
        body: bytes
        if cache is None:
            stored = None
        elif subject is None:
            stored = cache.get_stored(ref, environment, explain)
            if stored is not None:
                body, tag, headers = stored[1], stored[4], stored[3]
        else:
            stored = cache.get_context(ref, environment, explain)
            if stored is not None:
                body, _, headers, tag = stored.responses[stored.plan.pick(subject, None)]
        if stored is None:
            try:
                deadline = deadline_of(scope, self.timeout_seconds)
                rendered = await within(
                    deadline,
                    service.resolve(
                        self.state.db, cache, ref, environment=environment, subject=subject, explain=explain
                    ),
                )
            except Exception:  # noqa: BLE001 - unknown agent, database trouble: the stack answers its problem
                await self.app(scope, receive, send)
                return
            body, tag = rendered.body, rendered.etag.encode()
            headers = response_headers(body, tag)
        tracing.annotate_resolution(body)
        if conditional is not None and listed(conditional, tag, weak=True):
            status = 304
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", tag), *JSON_HEADERS]})
            await send({"type": "http.response.body", "body": b""})
        else:
            status = 200
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        self.answers[status] += 1
        if self.access_log is not None:
            self.access_log.note(scope, status, began)
