"""OpenTelemetry traces (contract 1.1, "Metrics and traces"): on when the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, off and
free otherwise: nothing of OpenTelemetry is imported, no layer is added, and `annotate`
is one boolean test.

When on: one span per request, named by its route template (`GET
/v1/agents/{agent}/resolved`, never an id), from the outermost layer, so the resolve fast
path's answers are traced too; a child span per database statement (asyncpg's
instrumentation: the service's SQLAlchemy and its direct driver reads both go through
asyncpg); and on resolve and write spans the agent, variant, environment and revision as
attributes. Spans go out over OTLP/HTTP in batches, configured by the standard variables
(`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Scope

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether the process is asked to export traces: an OTLP endpoint is given, and the
    SDK is not disabled (`OTEL_SDK_DISABLED=true`, the standard switch)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


ENABLED = False


def start() -> None:
    """Set up the tracer provider, the OTLP/HTTP exporter and asyncpg's instrumentation
    (once per process); call only when `wanted()`."""
    global ENABLED
    if ENABLED:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create.
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "agent-variants"})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    ENABLED = True


def wrap(app: ASGIApp, template: Callable[[str], str | None]) -> ASGIApp:
    """The app inside OpenTelemetry's ASGI middleware, its spans named by route template."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def details(scope: Scope) -> tuple[str, dict[str, Any]]:
        method = scope.get("method", "GET") if scope["type"] == "http" else scope["type"].upper()
        route = template(scope.get("path", "")) or "unknown route"
        return f"{method} {route}", {"http.route": route}

    # The stream of a watch would get a span per chunk sent: only the request's own span.
    return OpenTelemetryMiddleware(app, default_span_details=details, exclude_spans=["receive", "send"])


def annotate(**attributes: str | int | None) -> None:
    """Put these (`agent`, `variant`, `environment`, `revision`, ...) on the current span as
    `agent_variants.<name>`, skipping None; nothing when tracing is off."""
    if not ENABLED:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    for name, value in attributes.items():
        if value is not None:
            span.set_attribute(f"agent_variants.{name}", value)


def annotate_resolution(body: bytes) -> None:
    """The agent, variant and environment of a resolution's body on the current span
    (parsed only when tracing is on: the fast path's hits keep no object to read them from)."""
    if not ENABLED:
        return
    import json

    resolved = json.loads(body)
    annotate(
        agent=resolved.get("agent_id"),
        variant=resolved.get("variant_id"),
        environment=resolved.get("environment"),
        source=resolved.get("source"),
    )


def flush(timeout_millis: int = 5000) -> None:
    """Export what is buffered (at shutdown)."""
    if not ENABLED:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis)
