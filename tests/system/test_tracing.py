"""OpenTelemetry traces: a real server process with `OTEL_EXPORTER_OTLP_ENDPOINT` set sends
its spans over OTLP/HTTP to a receiver on loopback (decoded with `opentelemetry-proto`):
one request span each, named by route template, with the agent, variant, environment and
revision as attributes, and database statements as child spans. Without the variable no
tracing is set up at all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.helpers import config, unique
from tests.system.test_replicas import ROOT, Server, ok, own_database, start, stop, wait_ready

pytestmark = pytest.mark.live


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: every span posted to /v1/traces, as (name, attributes, parent)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
            for scoped in resource.scope_spans:
                for span in scoped.spans:
                    attributes = {}
                    for a in span.attributes:
                        value = a.value
                        attributes[a.key] = value.string_value or value.int_value
                    self.server.spans.append(
                        {
                            "name": span.name,
                            "attributes": attributes,
                            "service": service,
                            "trace_id": span.trace_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "id": span.span_id.hex(),
                            "scope": scoped.scope.name,
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def spans_named(receiver: Receiver, name: str, *, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [span for span in receiver.spans if span["name"] == name]
        if found:
            return found
        assert time.monotonic() < deadline, sorted({span["name"] for span in receiver.spans})
        await asyncio.sleep(0.1)


async def test_spans_reach_an_otlp_receiver_named_by_route_with_their_attributes(
    server_url: str, tmp_path: Any
) -> None:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    servers: list[Server] = []
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    try:
        async with own_database(server_url, f"av_tracing_{os.getpid()}") as url:
            servers.append(
                start(
                    "traced",
                    url,
                    tmp_path,
                    migrate=True,
                    OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                    OTEL_BSP_SCHEDULE_DELAY="100",
                    OTEL_SERVICE_NAME="agent-variants-test",
                )
            )
            async with httpx.AsyncClient(timeout=10) as http:
                await wait_ready(http, servers[0])
                http.headers["Authorization"] = f"Bearer {(tmp_path / 'admin-key').read_text().strip()}"
                base = servers[0].url
                agent = await ok(
                    http.post(f"{base}/v1/agents", json={"name": unique("traced"), "config": config()}), 201
                )
                variant = await ok(
                    http.post(f"{base}/v1/agents/{agent['id']}/variants", json={"variant_name": "v"}), 201
                )
                await ok(http.post(f"{base}/v1/agents/{agent['slug']}/variants/{variant['id']}/activate"))
                for _ in range(2):  # a miss, then the fast path's hit
                    await ok(http.get(f"{base}/v1/agents/{agent['slug']}/resolved"))
            resolves = await spans_named(receiver, "GET /v1/agents/{agent}/resolved")
            assert len(resolves) >= 2 and all(span["service"] == "agent-variants-test" for span in resolves)
            for span in resolves[:2]:
                assert span["attributes"]["agent_variants.agent"] == agent["id"]
                assert span["attributes"]["agent_variants.variant"] == variant["id"]
                assert span["attributes"]["agent_variants.environment"] == "production"
                assert span["attributes"]["http.route"] == "/v1/agents/{agent}/resolved"
            (activation,) = await spans_named(receiver, "POST /v1/agents/{agent}/variants/{variant}/activate")
            assert activation["attributes"]["agent_variants.revision"].startswith("rev_")
            assert activation["attributes"]["agent_variants.variant"] == variant["id"]
            (created,) = await spans_named(receiver, "POST /v1/agents")
            # Its database statements are its children, in the same trace.
            children = [s for s in receiver.spans if s["parent"] == created["id"] and "asyncpg" in s["scope"]]
            assert children and all(s["trace_id"] == created["trace_id"] for s in children)
            # No span is named after an id or a slug.
            assert not [s["name"] for s in receiver.spans if agent["slug"] in s["name"] or agent["id"] in s["name"]]
    finally:
        for server in servers:
            stop(server)
        receiver.shutdown()


def test_without_an_endpoint_no_tracing_is_set_up() -> None:
    # FastAPI imports OpenTelemetry's API itself; the SDK, the exporter and the
    # instrumentations are ours, and stay unloaded, and no layer is added.
    code = (
        "import sys\n"
        "from services.api.app import create_app\n"
        "from services.api.resolution.fast_path import ResolveFastPath\n"
        "app = create_app()\n"
        "assert type(app.front) is ResolveFastPath, type(app.front)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter',"
        " 'opentelemetry.instrumentation'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
