"""`GET /metrics`: the service's counts and gauges in Prometheus' text format.

Counting costs a request no lock and keeps nothing per request: the resolve fast path and
`RequestMetrics` add 1 to a plain integer in a dict keyed by the route's *template* (never
an agent id), the method and the status; the cache, the listener and the services keep
their own integers (`counters`). Nothing is turned into metrics until a scrape, when
`ServiceCollector` reads them all, with the gauges (cache size and trust, the listener,
open watch streams, the pools) read as they are then.

With one worker that is all: a scrape reads this process. With several (`serve --workers
N`) a scrape reaches one worker and must sum them all: `serve` gives every worker one
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and each worker copies
its numbers into its memory-mapped files there every `PUBLISH_SECONDS`, and just before it
answers a scrape, so the answer sums every worker (the others' numbers are at most that
old). Counts of workers that have exited stay in the sum (a counter never goes back);
gauges sum the live workers only.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import State
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.counters import COUNTS

PATH = "/metrics"
# A worker copies its numbers to the shared files this often (multi-worker `serve` only).
PUBLISH_SECONDS = 1.0
# A method outside these is counted as `other`: a label's values must be bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The route of a request no route serves (a 404 for an unknown path, say).
UNMATCHED = "unmatched"
PREFIX = "agent_variants_"

# (route template, method, status): requests answered. Status 0: the client left first.
RequestKey = tuple[str, str, int]

router = APIRouter(tags=["service"])


@router.get(PATH, include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The metrics of this process, or of every worker of this server (see the module)."""
    exposition: Exposition = request.app.state.metrics
    return Response(exposition.render(), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI layer, just inside the resolve fast path (which counts its own answers): counts
    every other HTTP request by route template, method and status when its handling ends."""

    def __init__(self, app: ASGIApp, *, template: Callable[[str], str | None]) -> None:
        self.app = app
        # The template of a path no route has claimed (the gate refused it before routing).
        self.template = template
        self.counts: dict[RequestKey, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self.note(scope, status)

    def note(self, scope: Scope, status: int) -> None:
        # Routing leaves the route it chose in the scope (the same dict all the way down).
        route = scope.get("route")
        template: str | None = getattr(route, "path", None)
        if template is None:
            template = self.template(get_route_path(scope)) or UNMATCHED
        method = scope["method"]
        key = (template, method if method in METHODS else "other", status)
        self.counts[key] = self.counts.get(key, 0) + 1


class ServiceCollector(Collector):
    """Every metric of this process, read at scrape time (prometheus-client's custom
    collector): the request counts, the resolve cache, the listener, the watch streams, the
    database pools, the services' counters."""

    def __init__(self, state: State, requests: RequestMetrics, *, fast_route: str, fast: dict[int, int]) -> None:
        self.state = state  # the app's: the lifespan puts the cache, the listener, the database there
        self.requests = requests
        self.fast_route = fast_route  # the resolve fast path's route, and its counts by status
        self.fast = fast

    def collect(self) -> Iterator[Metric]:
        state: dict[str, Any] = self.state._state
        requests = CounterMetricFamily(
            PREFIX + "http_requests",
            "HTTP requests answered, by route template, method and status (0: the client left before an answer).",
            labels=["route", "method", "status"],
        )
        totals = dict(self.requests.counts)
        for status, count in self.fast.items():
            key = (self.fast_route, "GET", status)
            totals[key] = totals.get(key, 0) + count
        for (route, method, status), count in sorted(totals.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests

        cache = state.get("resolve_cache")
        yield _counter("resolve_cache_hits", "Resolutions answered from the resolve cache.", cache and cache.hits)
        yield _counter(
            "resolve_cache_misses",
            "Cache lookups not answered from it (all of them while it is not trusted or is off).",
            cache and cache.misses,
        )
        evictions = CounterMetricFamily(
            PREFIX + "resolve_cache_evictions",
            "Entries dropped: `capacity` to stay within RESOLVE_CACHE_SIZE, `expired` past their TTL.",
            labels=["reason"],
        )
        evictions.add_metric(["capacity"], cache.evicted if cache is not None else 0)
        evictions.add_metric(["expired"], cache.expired if cache is not None else 0)
        yield evictions
        yield _gauge("resolve_cache_entries", "Responses held by the resolve cache.", len(cache) if cache else 0)
        yield _gauge(
            "resolve_cache_trusted",
            "1 while the resolve cache is served from (its process hears every change), else 0; summed over workers.",
            int(bool(cache is not None and cache.trusted)),
        )

        listener = state.get("resolution_listener")
        yield _gauge(
            "listener_connected",
            "1 while the process LISTENs for other processes' changes, else 0; summed over workers.",
            int(listener is not None and listener.connected.is_set()),
        )
        yield _counter(
            "listener_connects",
            "LISTEN connections set up (the first, then one per reconnect).",
            listener and listener.connects,
        )
        hub = state.get("watch_hub")
        yield _gauge("watch_streams", "Open `.../bundle/watch` streams.", hub.watchers if hub is not None else 0)

        db = state.get("db")
        in_use = GaugeMetricFamily(
            PREFIX + "db_pool_in_use",
            "Connections checked out, per pool (write: transactions, read: reads, resolve: the resolver's).",
            labels=["pool"],
        )
        waiting = GaugeMetricFamily(
            PREFIX + "db_pool_waiting", "Tasks waiting for a connection, per pool.", labels=["pool"]
        )
        size = GaugeMetricFamily(PREFIX + "db_pool_max", "The most connections a pool opens.", labels=["pool"])
        for pool, (used, waiters, most) in (db.pool_usage() if db is not None else {}).items():
            in_use.add_metric([pool], used)
            waiting.add_metric([pool], waiters)
            size.add_metric([pool], most)
        yield from (in_use, waiting, size)

        yield _counter("outcomes_ingested", "Outcomes stored (`POST .../outcomes`).", COUNTS.outcomes_ingested)
        transitions = CounterMetricFamily(
            PREFIX + "split_transitions",
            "Rollout transitions the scheduler made, by action (advance, complete, roll_back, pause).",
            labels=["action"],
        )
        for action, count in sorted(COUNTS.split_transitions.items()):
            transitions.add_metric([action], count)
        yield transitions
        webhooks = CounterMetricFamily(
            PREFIX + "webhook_deliveries",
            "Webhook delivery attempts this process made, by result: delivered (a 2xx), retrying (to be tried again),"
            " failed (given up after 24 hours).",
            labels=["result"],
        )
        for result, count in sorted(COUNTS.webhook_attempts.items()):
            webhooks.add_metric([result], count)
        yield webhooks
        yield _gauge("workers", "Worker processes serving (1 per process, summed over workers).", 1)


def _counter(name: str, documentation: str, value: int | None) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value or 0)


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


class Exposition:
    """What `/metrics` answers: with `multiprocess_dir` (several workers), every worker's
    numbers summed through the files there; without, this process's, read directly."""

    def __init__(self, collector: ServiceCollector, *, multiprocess_dir: Path | None) -> None:
        self.collector = collector
        self.directory = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=False)
        if multiprocess_dir is None:
            self.registry.register(collector)
        else:
            multiprocess.MultiProcessCollector(self.registry, path=str(multiprocess_dir))
        # Multi-worker: prometheus-client's metric per family, and what each sample was when
        # last published (counters publish the difference).
        self._metrics: dict[str, Counter | Gauge] = {}
        self._published: dict[tuple[str, tuple[str, ...]], float] = {}

    def render(self) -> bytes:
        if self.directory is not None:
            self.publish()
            forget_dead_workers(self.directory)
        return generate_latest(self.registry)

    def publish(self) -> None:
        """Copy this process's numbers into its multiprocess files (a counter by how much it
        grew since, a gauge as it is)."""
        for family in self.collector.collect():
            for sample in family.samples:
                names = tuple(sample.labels)
                metric = self._metrics.get(family.name)
                if metric is None:
                    if family.type == "counter":
                        metric = Counter(family.name, family.documentation, names, registry=None)
                    else:
                        metric = Gauge(
                            family.name, family.documentation, names, registry=None, multiprocess_mode="livesum"
                        )
                    self._metrics[family.name] = metric
                values = tuple(sample.labels[name] for name in names)
                child = metric.labels(*values) if names else metric
                if isinstance(child, Counter):
                    key = (family.name, values)
                    grown = sample.value - self._published.get(key, 0)
                    if grown > 0:
                        child.inc(grown)
                        self._published[key] = sample.value
                else:
                    child.set(sample.value)

    async def publish_forever(self) -> None:
        """Publish every PUBLISH_SECONDS; when cancelled (the worker stops), a last time, and
        take this worker's gauges out of the sums."""
        try:
            while True:
                self.publish()
                await asyncio.sleep(PUBLISH_SECONDS)
        finally:
            self.publish()
            assert self.directory is not None
            multiprocess.mark_process_dead(os.getpid(), str(self.directory))


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def forget_dead_workers(directory: Path) -> None:
    """Take the gauges of workers that died without stopping (a kill -9, a crash) out of the
    sums; their counters stay."""
    for name in os.listdir(directory):
        found = _LIVE_GAUGE_FILE.match(name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))
        except PermissionError:  # alive, someone else's: not ours to judge
            pass
