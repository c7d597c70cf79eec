"""Cache hits for `GET /v1/agents/{agent}/resolved`, answered before FastAPI runs at all.

The app calls this layer first (see `FrontDoorAPI` in `services.api.app`), ahead of
Starlette's middleware stack, routing and dependencies, which cost several times what a
hit does.

On a hit this layer sends the cached bytes (or a 304 for a matching `If-None-Match`)
itself; anything else (a miss, another query, another route) goes to the app unchanged,
and the endpoint fills the cache. Both paths send the same body and headers.
"""

from __future__ import annotations

from starlette.datastructures import State
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.http import listed
from services.api.resolution.cache import ResolveCache
from services.api.security_headers import JSON_HEADERS

_PREFIX = "/v1/agents/"
_SUFFIX = "/resolved"
# The query strings this layer understands; every other one falls through.
_EXPLAIN = {b"": False, b"explain=false": False, b"explain=0": False, b"explain=true": True, b"explain=1": True}


class ResolveFastPath:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state  # the app's state, where the lifespan puts the cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            # The routed path (without a proxy's root path), as the access gate judged it.
            path: str = get_route_path(scope) if scope.get("root_path") else scope["path"]
            explain = _EXPLAIN.get(scope.get("query_string", b""))
            if explain is not None and path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                ref = path[len(_PREFIX) : -len(_SUFFIX)]
                cache: ResolveCache | None = getattr(self.state, "resolve_cache", None)
                entry = cache.get(ref, explain) if cache is not None and ref and "/" not in ref else None
                if entry is not None:
                    etag = entry.etag_bytes
                    conditional = next((v for k, v in scope["headers"] if k == b"if-none-match"), None)
                    if conditional is not None and listed(conditional, etag, weak=True):
                        await send(
                            {"type": "http.response.start", "status": 304, "headers": [(b"etag", etag), *JSON_HEADERS]}
                        )
                        await send({"type": "http.response.body", "body": b""})
                        return
                    await send({"type": "http.response.start", "status": 200, "headers": entry.headers})
                    await send({"type": "http.response.body", "body": entry.body})
                    return
        await self.app(scope, receive, send)
