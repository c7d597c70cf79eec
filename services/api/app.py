"""The FastAPI application: routers, error handlers, lifespan, and the one ASGI stack.

A request meets these layers in this order (`_stack` builds them, in this order):

1. `ResolveFastPath`: `GET .../resolved`, plain or with `?subject=`, is answered here in
   one step (key, cache or query, access log line); anything else goes on, unchanged.
2. `AccessLog` (with ACCESS_LOG, at LOG_LEVEL info or below): a line per request.
   Then `RequestMetrics` counts what the fast path did not answer (it counts its own).
3. `CORSMiddleware` (only with CORS_ALLOW_ORIGINS): preflights carry no key.
4. `AccessGate` (unless AUTH_DISABLED): the API key and its rate limit, or a 401/403/429.
5. `SecurityHeaders`: the headers every other response carries.
6. `Deadline`: a /v1 or OFREP request not answered within REQUEST_TIMEOUT_SECONDS is a 503
   (OFREP's in its own shape; the gate's key check, when it needs the database, counts
   against the same deadline).
7. FastAPI, that is Starlette's `ServerErrorMiddleware` (an unexpected error is a 500
   problem), then
8. `BodySizeLimit`: a body over MAX_BODY_BYTES is a 413 before anything reads it,
9. `IdempotencyMiddleware`: a retried POST with its `Idempotency-Key` is replayed,
10. Starlette's `ExceptionMiddleware`: domain errors become problems (`errors.py`), or
   the console's HTML error page on its routes,
11. routing, dependencies, the router and the service.

Layers 1-6 sit in front of FastAPI, so a resolution and the gate's refusals cost none of
FastAPI's work (nor the deadline's layer); they carry the security headers themselves.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api import api_docs, errors, idempotency, tracing
from services.api.access.gate import AccessGate, refused_keys
from services.api.access.keyring import KeyRing
from services.api.access.rate_limit import Limit, RateLimiter
from services.api.access.rules import METRICS_PATH, RouteRules
from services.api.access_log import AccessLog
from services.api.agents.router import router as agents_router
from services.api.catalog.router import router as catalog_router
from services.api.console import router as console
from services.api.console import sessions as console_sessions
from services.api.db import KEYS_CHANNEL, RESOLUTION_CHANNEL, Database, asyncpg_dsn
from services.api.deadline import Deadline
from services.api.environments.router import router as environments_router
from services.api.experiments.router import router as experiments_router
from services.api.idempotency import IdempotencyMiddleware
from services.api.keys.router import router as keys_router
from services.api.limits import BodySizeLimit
from services.api.metrics import Exposition, RequestMetrics, ServiceCollector
from services.api.metrics import router as metrics_router
from services.api.ofrep.router import router as ofrep_router
from services.api.openapi import build_openapi
from services.api.outcomes.router import router as outcomes_router
from services.api.resolution.cache import ResolveCache
from services.api.resolution.fast_path import ROUTE, ResolveFastPath
from services.api.resolution.listener import ResolutionListener
from services.api.resolution.router import router as resolution_router
from services.api.resolution.watch import WatchHub
from services.api.revisions.router import router as revisions_router
from services.api.rules.router import router as rules_router
from services.api.scheduler import rollouts as rollout_scheduler
from services.api.scheduler import webhooks as webhook_dispatcher
from services.api.security_headers import SecurityHeaders
from services.api.settings import Settings
from services.api.slugs import slugify as _slugify  # the contract's name for the one slug function
from services.api.system.router import router as system_router
from services.api.undo.router import router as undo_router
from services.api.variants.router import router as variants_router
from services.api.webhooks.router import router as webhooks_router

__all__ = ["create_app", "serve", "_slugify"]

VERSION = "0.1.0"
SHUTDOWN_STEP_SECONDS = 5.0
log = logging.getLogger(__name__)


async def _purge_expired(db: Database, *, every_seconds: float = 600) -> None:
    """Delete idempotency keys past their 24 hours and console sessions past their 12,
    every ten minutes, for the app's life."""
    while True:
        for what, purge in (
            ("idempotency keys", idempotency.purge_expired),
            ("console sessions", console_sessions.purge_expired),
        ):
            try:
                purged = await purge(db)
                if purged:
                    log.info("purged %d expired %s", purged, what)
            except Exception as error:  # noqa: BLE001 - a failed purge is retried next time
                log.warning("purging expired %s failed: %s", what, error)
        await asyncio.sleep(every_seconds)


async def _flush_spans() -> None:
    await asyncio.to_thread(tracing.flush)


def _cache(settings: Settings, *, trusted: bool) -> ResolveCache:
    return ResolveCache(
        max_entries=settings.resolve_cache_size, ttl_seconds=settings.resolve_cache_ttl_seconds, trusted=trusted
    )


class FrontDoorAPI(FastAPI):
    """FastAPI with a front door: `front` is the ASGI app uvicorn really calls. By default
    it is FastAPI itself; layers put in front of it (the resolve cache's fast path) answer
    what they can before Starlette's middleware stack, routing and dependencies run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front: ASGIApp = super().__call__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)


def _cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    """Browsers on these origins may call the API with a bearer key (no cookies)."""
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-Match",
            "If-None-Match",
            "X-Actor",
            "Last-Event-ID",
        ],
        expose_headers=["ETag", "Location", "Retry-After", "Idempotent-Replayed", "WWW-Authenticate"],
        max_age=600,
    )


def _subscribe(db: Database, *, cache: ResolveCache, ring: KeyRing, hub: WatchHub) -> None:
    """What this process does after each of its own commits (`announce`), before the write
    is answered: forget the changed agents' cached answers, wake their watch streams, and
    reload the key ring. Other processes' commits reach the same three through the listener."""
    db.on_commit[RESOLUTION_CHANNEL] += [cache.invalidate, hub.changed]
    db.on_commit[KEYS_CHANNEL] += [ring.invalidate, hub.changed_all]


def _stack(app: FrontDoorAPI, settings: Settings) -> ASGIApp:
    """The ASGI stack of the module docstring, in the order a request meets it: the layers
    in front of FastAPI wrap `app.front`, the rest go inside it, around the router."""
    assert not app.user_middleware, "the middleware inside FastAPI is declared here, with the rest"
    app.user_middleware = [
        Middleware(BodySizeLimit, limit=settings.max_body_bytes),  # 8: before anything reads the body
        Middleware(IdempotencyMiddleware),  # 9
    ]
    stack: ASGIApp = app.front  # 7-11: FastAPI itself
    stack = Deadline(stack, seconds=settings.request_timeout_seconds)  # 6
    stack = SecurityHeaders(stack)  # 5
    gate = None
    rules = RouteRules(app.routes, opened=[METRICS_PATH] if settings.metrics_open else [])
    if not settings.auth_disabled:
        limits = {scope: Limit(limit.per_second, limit.burst) for scope, limit in settings.rate_limits.items()}
        stack = gate = AccessGate(
            stack,
            rules=rules,
            ring=app.state.key_ring,
            limiter=RateLimiter(limits),
            failures=app.state.refused_keys,  # shared with the console's sign-in
            timeout_seconds=settings.request_timeout_seconds,
        )  # 4
    if settings.cors_allow_origins:
        stack = _cors(stack, settings.cors_allow_origins)  # 3
    stack = requests = RequestMetrics(stack, template=rules.template)  # 2, just inside the access log
    access_log = None
    if settings.access_log and settings.log_level in ("info", "debug", "trace"):
        stack = access_log = AccessLog(stack)  # 2
    fast_path = ResolveFastPath(  # 1
        stack,
        app.state,
        gate=gate,
        access_log=access_log,
        cors=bool(settings.cors_allow_origins),
        timeout_seconds=settings.request_timeout_seconds,
    )
    collector = ServiceCollector(app.state, requests, fast_route=ROUTE, fast=fast_path.answers)
    app.state.metrics = Exposition(collector, multiprocess_dir=settings.prometheus_multiproc_dir)
    front: ASGIApp = fast_path
    if tracing.wanted():  # 0: OpenTelemetry's span around everything, the fast path's answers too
        tracing.start()
        front = tracing.wrap(front, RouteRules(app.routes).template)
    return front


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """Build the app. Tests pass a `database`; otherwise one is made from DATABASE_URL."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth_disabled:
            log.warning(
                "AUTH_DISABLED is set: every request is served without an API key. Use this for local experiments only."
            )
        if database is not None:
            yield
            return
        if settings.database_url is None:
            raise RuntimeError(
                "DATABASE_URL is not set. Run `agent-variants serve` (it starts an embedded "
                "PostgreSQL when DATABASE_URL is unset) or set DATABASE_URL."
            )
        db = Database.from_url(
            settings.database_url,
            pool_size=settings.db_pool_size,
            read_pool_size=settings.db_read_pool_size,
            max_overflow=settings.db_max_overflow,
            statement_timeout_seconds=settings.db_statement_timeout_seconds,
            idle_in_transaction_timeout_seconds=settings.db_idle_in_transaction_timeout_seconds,
            connect_timeout_seconds=settings.db_connect_timeout_seconds,
            command_timeout_seconds=settings.db_command_timeout_seconds,
            pool_timeout_seconds=settings.db_pool_timeout_seconds,
        )
        await db.open()  # connects nothing yet
        app.state.db = db
        # Other processes may write: trust the cache and the key ring only once we
        # listen for their changes.
        cache = _cache(settings, trusted=False)
        app.state.resolve_cache = cache
        ring: KeyRing = app.state.key_ring
        ring.listening = False
        hub: WatchHub = app.state.watch_hub
        _subscribe(db, cache=cache, ring=ring, hub=hub)
        listener = ResolutionListener(
            asyncpg_dsn(settings.database_url),
            cache,
            keys=ring,
            watches=hub,
            connect_timeout=settings.db_connect_timeout_seconds,
        )
        listener.start()
        app.state.resolution_listener = listener
        background = [
            asyncio.create_task(_purge_expired(db)),
            asyncio.create_task(ring.flush_usage_forever()),
            asyncio.create_task(rollout_scheduler.run_forever(db, every_seconds=settings.rollout_tick_seconds)),
            asyncio.create_task(
                webhook_dispatcher.run_forever(
                    db, every_seconds=settings.webhook_tick_seconds, allow_private=settings.webhooks_allow_private
                )
            ),
        ]
        if settings.prometheus_multiproc_dir is not None:  # several workers sum their metrics
            background.append(asyncio.create_task(app.state.metrics.publish_forever()))
        # Everything loaded so far (modules, routes, models) lives as long as the process:
        # out of the collector's sight, a full collection takes about 1 ms instead of about
        # 85 ms (bench/console.py measured the pauses in the p95 of the console's pages).
        gc.collect()  # what startup left behind (the migrations' garbage) is freed, not frozen
        gc.freeze()
        try:
            yield
        finally:
            hub.close()
            for task in background:
                task.cancel()
            # Each step is bounded: a server told to stop must stop, whatever the database does.
            for what, step in (
                ("stopping the listener", listener.stop),
                ("recording API key use", ring.flush_usage),
                ("closing the database pool", db.dispose),
                ("exporting the last spans", _flush_spans),
            ):
                try:
                    await asyncio.wait_for(step(), SHUTDOWN_STEP_SECONDS)
                except Exception as error:  # noqa: BLE001 - shutting down: log and go on
                    log.warning("%s at shutdown failed: %r", what, error)

    app = FrontDoorAPI(
        # FastAPI's own OpenTelemetry layer stays off: our span wraps the whole stack (the
        # fast path's answers too) when tracing is on (`tracing`), so a request has one span.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="agent-variants",
        version=VERSION,
        summary="Configuration of LLM agents and their variants.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are api_docs.py's: no CDN
        redoc_url=None,
    )
    # A database handed in is this process's alone (tests, embedding): its own commits
    # are all the invalidation the cache and the key ring need.
    app.state.key_ring = KeyRing(lambda: app.state.db, listening=database is not None)
    app.state.refused_keys = refused_keys()  # per client address: the gate and the console's sign-in
    app.state.watch_hub = WatchHub()
    app.state.watch_keepalive_seconds = settings.watch_keepalive_seconds
    app.state.auth_disabled = settings.auth_disabled
    app.state.webhooks_allow_private = settings.webhooks_allow_private
    if database is not None:
        app.state.db = database
        app.state.resolve_cache = _cache(settings, trusted=True)
        _subscribe(database, cache=app.state.resolve_cache, ring=app.state.key_ring, hub=app.state.watch_hub)
    errors.install(app, html_pages=(console.PREFIX, console.error_page))  # the console: its own error page
    # The hot route first: routing tries routes in order.
    for router in (
        resolution_router,
        system_router,
        agents_router,
        variants_router,
        rules_router,
        revisions_router,
        undo_router,
        experiments_router,
        outcomes_router,
        keys_router,
        environments_router,
        catalog_router,
        webhooks_router,
        ofrep_router,
        metrics_router,
        api_docs.router,
    ):
        app.include_router(router)
    console.install(app)

    app.front = _stack(app, settings)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def serve() -> ASGIApp:
    """What `agent-variants serve` hands uvicorn: the app's front (its whole ASGI stack, the
    lifespan included) called directly, without `FrontDoorAPI.__call__`'s extra hop (about
    1% of a cached resolution)."""
    app = create_app()
    front: ASGIApp = app.front  # type: ignore[attr-defined]
    return front
