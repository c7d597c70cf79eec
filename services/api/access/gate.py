"""The ASGI layer in front of everything else: who is calling, and may they?

It runs before the resolve cache's fast path, so cached resolutions are authenticated
too, and costs no database round trip on the way (see `keyring`). The verified key is
left in the ASGI scope (`scope["api_key"]`) for the routes (revisions record its name).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.access.keyring import KeyRefused, KeyRing
from services.api.access.rate_limit import Limit, RateLimiter
from services.api.access.rules import OFREP_PREFIX, RouteRules
from services.api.deadline import deadline_of, within
from services.api.errors import PROBLEMS, database_unavailable, ofrep_general_error, problem
from services.api.principal import SCOPE_KEY, SCOPES, Principal
from services.api.security_headers import JSON_HEADERS_DICT

log = logging.getLogger(__name__)

REALM = 'Bearer realm="agent-variants"'
# Per client address: how many refused keys it may send (a misconfigured agent retrying
# is well within this; guessing at secrets is pointless at 256 bits anyway).
FAILURES = "failures"
FAILURE_LIMIT = Limit(per_second=10, burst=100)
OFREP_PATHS = (OFREP_PREFIX + "/", OFREP_PREFIX)


def refused_keys() -> RateLimiter:
    """The allowance of refused keys per client address (`FAILURE_LIMIT`): one per app,
    taken from by the gate and by the console's sign-in, so neither door is a way around it."""
    return RateLimiter({FAILURES: FAILURE_LIMIT})


def client_address(scope: Scope) -> str:
    """What refused keys are counted by: the client's address ("" when unknown)."""
    return scope["client"][0] if scope.get("client") else ""


def _bearer(scope: Scope) -> bytes | None:
    """The token of `Authorization: Bearer <token>`, b"" for another form, None when absent."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() != b"bearer ":
                return b""
            return value[7:].strip()
    return None


class AccessGate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: RouteRules,
        ring: KeyRing,
        limiter: RateLimiter,
        failures: RateLimiter | None = None,
        timeout_seconds: float = 4.0,
    ) -> None:
        self.app = app
        self.timeout_seconds = timeout_seconds  # REQUEST_TIMEOUT_SECONDS: see `deadline`
        self.rules = rules
        self.ring = ring
        self.limiter = limiter
        self.failures = failures if failures is not None else refused_keys()  # see `refused_keys`

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            method = scope["method"]
        elif kind == "websocket":
            method = "GET"
        else:  # lifespan
            await self.app(scope, receive, send)
            return
        if SCOPE_KEY in scope:  # admitted already, by the resolve fast path (see `admit`)
            await self.app(scope, receive, send)
            return
        # The path as the router sees it: without the root path a proxy or mount adds.
        path = get_route_path(scope) if scope.get("root_path") else scope["path"]
        needed = self.rules.required(method, path)  # the least rank, or None
        if needed is None:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is None:
            await self._refuse(
                scope,
                receive,
                send,
                "unauthorized",
                "An API key is required: send it as `Authorization: Bearer <key>`",
                REALM,
            )
            return
        if not token:
            await self._refuse(
                scope,
                receive,
                send,
                "unauthorized",
                "The Authorization header must be `Bearer <key>`",
                f'{REALM}, error="invalid_request"',
            )
            return
        # The hot path answers from memory; only a ring that cannot answer now, or a key
        # it refuses (to say why), awaits the slow path.
        key = self.ring.verify_now(token)
        if key is None:
            # Callers whose keys keep failing may not make us check more: the slow path
            # can cost a query (while the listener is down), so it is rationed per client.
            client = client_address(scope)
            wait = self.failures.blocked(client, FAILURES)
            if wait is not None:
                await self._refuse(
                    scope,
                    receive,
                    send,
                    "rate_limited",
                    f"Too many requests with keys that do not work; retry in {wait} s",
                    None,
                    retry_after=wait,
                )
                return
            try:
                # Possibly a query: bounded by the request's deadline (later layers get what is left).
                key = await within(deadline_of(scope, self.timeout_seconds), self.ring.verify(token))
            except KeyRefused as refused:
                self.failures.take(client, FAILURES)
                await self._refuse(
                    scope, receive, send, "unauthorized", str(refused), f'{REALM}, error="invalid_token"'
                )
                return
            except Exception as error:
                # Outside FastAPI's handlers: answer problem+json here, never a bare 500.
                if database_unavailable(error):
                    log.warning("checking an API key failed, database unavailable: %s", error)
                    await self._refuse(
                        scope,
                        receive,
                        send,
                        "service_unavailable",
                        "The database is unavailable; retry shortly",
                        None,
                        retry_after=1,
                    )
                else:
                    log.exception("checking an API key failed", exc_info=error)
                    await self._refuse(
                        scope, receive, send, "internal_error", "An unexpected error occurred; it has been logged", None
                    )
                return
        if key.rank < needed:
            scope_needed = SCOPES[needed]
            await self._refuse(
                scope,
                receive,
                send,
                "insufficient_scope",
                f"The API key '{key.name}' has scope '{key.scope}'; this needs '{scope_needed}' or above",
                f'{REALM}, error="insufficient_scope", scope="{scope_needed}"',
            )
            return
        wait = self.limiter.take(key.id, key.scope)
        if wait is not None:
            await self._refuse(
                scope,
                receive,
                send,
                "rate_limited",
                f"The API key '{key.name}' is over its rate limit; retry in {wait} s",
                None,
                retry_after=wait,
            )
            return
        self.ring.note_use(key)
        scope[SCOPE_KEY] = key
        await self.app(scope, receive, send)

    def admit(self, authorization: bytes | None, needed: int) -> Principal | None:
        """The hot path's admission, from memory and in one step: the key of this
        `Authorization` value when the ring knows it, its scope ranks `needed` or above and
        its rate limit has a token (taken, and the use noted). None when any of it does not
        hold, or the ring cannot answer now: `__call__` then decides as it always does (a
        refused token was not taken, so deciding again counts nothing twice). The caller
        puts the key in the scope, where `__call__` finds it and lets the request through."""
        if authorization is None:
            return None
        if not authorization.startswith(b"Bearer ") and authorization[:7].lower() != b"bearer ":
            return None  # (the usual spelling first: no lowered copy to make)
        key = self.ring.verify_now(authorization[7:].strip())
        if key is None or key.rank < needed or self.limiter.take(key.id, key.scope) is not None:
            return None
        self.ring.note_use(key)
        return key

    @staticmethod
    async def _refuse(
        scope: Scope,
        receive: Receive,
        send: Send,
        code: str,
        detail: str,
        challenge: str | None,
        *,
        retry_after: int | None = None,
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": code})  # policy violation
            return
        headers = dict(JSON_HEADERS_DICT)  # made before SecurityHeaders would see it
        if challenge is not None:
            headers["WWW-Authenticate"] = challenge
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        path = get_route_path(scope) if scope.get("root_path") else scope["path"]
        if path.startswith(OFREP_PATHS):  # OFREP's clients read its shape, not problem+json
            status = PROBLEMS[code].status
            await ofrep_general_error(status, detail, headers)(scope, receive, send)
            return
        await problem(code, detail, request=Request(scope), headers=headers)(scope, receive, send)
