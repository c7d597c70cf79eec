"""Webhooks in real server processes: the dispatching replica killed after sending and
before recording (a failpoint exits the process as SIGKILL does, inside the delivery's
transaction) loses no event: another replica sends it again with the same `webhook-id`,
signed per Standard Webhooks (verified with the `standardwebhooks` package)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from tests.helpers import config, unique
from tests.system.test_replicas import Server, ok, own_database, start, stop, wait_ready

pytestmark = pytest.mark.live
FAST = {"WEBHOOK_TICK_SECONDS": "0.2", "WEBHOOKS_ALLOW_PRIVATE": "true"}


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_replica_killed_after_sending_loses_no_event(server_url: str, tmp_path: Any) -> None:
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    servers: list[Server] = []
    async with own_database(server_url, f"av_webhook_replicas_{random.getrandbits(32)}") as url:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                servers.append(start("A", url, tmp_path, migrate=True, FAILPOINTS="webhook.after_send", **FAST))
                await wait_ready(http, servers[0])
                http.headers["Authorization"] = f"Bearer {(tmp_path / 'admin-key').read_text().strip()}"
                a = servers[0].url
                hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
                webhook = await ok(http.post(f"{a}/v1/webhooks", json={"url": hook, "events": ["agent.created"]}), 201)
                agent = await ok(http.post(f"{a}/v1/agents", json={"name": unique("hooked"), "config": config()}), 201)
                servers[0].process.wait(timeout=30)
                assert servers[0].process.returncode == 137  # died after sending, before recording
                assert len(receiver.got) == 1
                servers.append(start("B", url, tmp_path, migrate=False, **FAST))
                await wait_ready(http, servers[1])
                deadline = time.monotonic() + 20
                while len(receiver.got) < 2:
                    assert time.monotonic() < deadline, receiver.got
                    await asyncio.sleep(0.1)
                verifier = Verifier(webhook["secret"])
                (first_headers, first), (again_headers, again) = receiver.got[:2]
                assert first_headers["webhook-id"] == again_headers["webhook-id"]  # the same event, sent again
                for headers, body in receiver.got[:2]:
                    payload = verifier.verify(body, headers)
                    assert payload["type"] == "agent.created"
                    assert payload["data"]["revision"]["target_id"] == agent["id"]
                log = await ok(http.get(f"{servers[1].url}/v1/webhooks/{webhook['id']}/deliveries"))
                assert [(d["status"], d["attempts"]) for d in log["data"]] == [("delivered", 1)]
        finally:
            for server in servers:
                stop(server)
            receiver.shutdown()
