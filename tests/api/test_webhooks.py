"""Webhooks through the real app: subscriptions (the secret shown once), their checks, the
outbox written in the change's own transaction, and the dispatcher's delivery to a real
HTTP receiver on loopback, signed per Standard Webhooks (verified with `standardwebhooks`),
retried with backoff."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from services.api.app import create_app
from services.api.db import Database
from services.api.scheduler import webhooks as dispatcher
from services.api.webhooks.targets import delivery_client
from tests.helpers import admin_key, assert_problem, create_agent, create_variant, problem_params, settings_for_tests


class Receiver(ThreadingHTTPServer):
    """A real HTTP server on loopback answering `status` and keeping what it got."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.got: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
async def private_client(db: Database) -> Any:
    """The app allowing loopback targets (the receivers here are on 127.0.0.1)."""
    app = create_app(settings_for_tests(webhooks_allow_private=True), database=db)
    secret = await admin_key(db, "webhooks-admin")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers={"Authorization": f"Bearer {secret}"}
    ) as http:
        yield http


async def deliver(db: Database) -> int:
    async with delivery_client(allow_private=True, timeout=5) as client:
        return await dispatcher.dispatch(db, client)


async def test_a_subscription_is_checked_and_its_secret_shown_once(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        "/v1/webhooks", json={"url": "ftp://x", "events": ["variant.activated", "nope", "rollout.*"]}
    )
    assert_problem(bad, 422, "validation_error")
    assert problem_params(bad) == {"url", "events"}
    loopback = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["*"]})
    assert_problem(loopback, 422, "validation_error")
    assert problem_params(loopback) == {"url"} and "private" in loopback.json()["detail"]
    link_local = await client.post("/v1/webhooks", json={"url": "http://169.254.169.254/", "events": ["*"]})
    assert_problem(link_local, 422, "validation_error")
    made = await client.post("/v1/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["variant.*"]})
    assert made.status_code == 201, made.text
    assert made.json()["secret"].startswith("whsec_") and made.headers["Cache-Control"] == "no-store"
    shown = (await client.get(f"/v1/webhooks/{made.json()['id']}")).json()
    assert shown["secret"] is None and shown["events"] == ["variant.*"]
    rotated = (await client.post(f"/v1/webhooks/{shown['id']}/rotate_secret")).json()
    assert rotated["secret"] not in (None, made.json()["secret"])


async def test_changes_are_delivered_signed_with_their_revision(
    private_client: httpx.AsyncClient, db: Database
) -> None:
    receiver = Receiver()
    made = await private_client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["variant.activated", "agent.*"]}
    )
    webhook = made.json()
    agent = await create_agent(private_client)
    variant = await create_variant(private_client, agent["id"])
    activated = await private_client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert activated.status_code == 200
    assert await deliver(db) == 2  # agent.created and variant.activated: not variant.created
    assert await deliver(db) == 0
    verifier = Verifier(webhook["secret"])
    events = []
    for headers, body in receiver.got:
        payload = verifier.verify(body, headers)  # raises unless signed with the webhook's secret
        events.append((payload["type"], payload["data"]["revision"]["action"], headers["webhook-id"]))
    assert [(kind, action) for kind, action, _ in events] == [
        ("agent.created", "create"),
        ("variant.activated", "activate"),
    ]
    log = (await private_client.get(f"/v1/webhooks/{webhook['id']}/deliveries")).json()["data"]
    assert [(d["event"], d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
        ("variant.activated", "delivered", 1, 204),
        ("agent.created", "delivered", 1, 204),
    ]
    assert {d["message_id"] for d in log} == {message_id for _, _, message_id in events}
    receiver.shutdown()


async def test_a_failing_receiver_is_retried_with_backoff_and_a_test_event_reaches_it(
    private_client: httpx.AsyncClient, db: Database
) -> None:
    receiver = Receiver(status=500)
    webhook = (await private_client.post("/v1/webhooks", json={"url": receiver.url, "events": ["webhook.test"]})).json()
    queued = await private_client.post(f"/v1/webhooks/{webhook['id']}/test")
    assert queued.status_code == 200 and queued.json()["event"] == "webhook.test"
    assert await deliver(db) == 1
    (delivery,) = (await private_client.get(f"/v1/webhooks/{webhook['id']}/deliveries")).json()["data"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("pending", 1, 500)
    assert delivery["next_attempt_at"] > delivery["created_at"]
    assert await deliver(db) == 0  # not due yet: backoff
    assert [dispatcher.retry_delay(n).total_seconds() for n in (1, 2, 3, 12, 20)] == [5, 10, 20, 3600, 3600]
    headers, body = receiver.got[0]
    assert json.loads(body)["type"] == "webhook.test" and headers["webhook-id"] == delivery["message_id"]
    receiver.shutdown()
