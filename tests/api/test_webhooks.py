"""Webhooks through the real app: subscriptions (the secret shown once), their checks, the
outbox written in the change's own transaction, and the dispatcher's delivery to a real
HTTP receiver on loopback, signed per Standard Webhooks (verified with `standardwebhooks`),
retried with backoff. And the delivery client's pinning: a name is resolved once per
connection, every address checked, and the connection made to a checked address only (a
DNS rebinding cannot reach a private one), with TLS verified for the name."""

from __future__ import annotations

import ipaddress
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from services.api.app import create_app
from services.api.db import Database
from services.api.scheduler import webhooks as dispatcher
from services.api.webhooks import targets
from services.api.webhooks.targets import TargetRefused, delivery_client
from tests.helpers import admin_key, assert_problem, create_agent, create_variant, problem_params, settings_for_tests


class Receiver(ThreadingHTTPServer):
    """A real HTTP server on loopback answering `status` and keeping what it got."""

    def __init__(self, status: int = 204, *, tls: ssl.SSLContext | None = None) -> None:
        self.status = status
        self.got: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    @property
    def port(self) -> int:
        return int(self.server_address[1])


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


PUBLIC = "93.184.215.14"  # a global address: the check's answer in the tests below


class Rebinding:
    """The lookup `targets` uses, answering `first` once and `later` after: a DNS rebinding."""

    def __init__(self, first: list[str], later: list[str]) -> None:
        self.first, self.later = first, later
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[Any]:
        self.asked.append(host)
        return [ipaddress.ip_address(a) for a in (self.first if len(self.asked) == 1 else self.later)]


class Network(httpcore.AsyncNetworkBackend):
    """Real sockets under a fake internet: each host asked for is recorded, then routed by
    `routes` (host -> a loopback receiver's port). A name asked for here is resolved by the
    network itself, at connect time, as httpx would do: the routes give that answer."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.asked: list[str] = []
        self.real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        return await self.real.connect_tcp("127.0.0.1", self.routes[host], timeout, local_address, socket_options)


async def test_a_name_is_connected_only_at_the_address_its_check_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    checked, private = Receiver(), Receiver()
    # The check's lookup answers a public address, then a private one; the network's own
    # lookup of the name answers the private receiver (what a rebinding serves at connect time).
    lookup = Rebinding(first=[PUBLIC], later=["127.0.0.1"])
    monkeypatch.setattr(targets, "resolve", lookup)
    network = Network({PUBLIC: checked.port, "hook.example": private.port})
    url = f"http://hook.example:{checked.port}/hook"
    async with delivery_client(allow_private=False, timeout=5, network=network) as client:
        assert (await client.post(url, content=b"{}")).status_code == 204
        # The receiver closed that connection: the next opens another, resolved and checked anew.
        with pytest.raises(TargetRefused, match="127.0.0.1"):
            await client.post(url, content=b"{}")
    assert lookup.asked == ["hook.example", "hook.example"]  # one lookup per connection, the check's
    assert network.asked == [PUBLIC]  # the checked address, never the name nor the private answer
    assert private.got == []
    ((headers, _),) = checked.got
    assert headers["host"] == f"hook.example:{checked.port}"  # the Host header keeps the name
    checked.shutdown()
    private.shutdown()


async def test_every_address_of_a_name_must_be_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "resolve", Rebinding(first=[PUBLIC, "10.0.0.7"], later=[]))
    network = Network({})
    async with delivery_client(allow_private=False, timeout=5, network=network) as client:
        with pytest.raises(TargetRefused, match="10.0.0.7"):
            await client.post("https://hook.example/hook", content=b"{}")
    assert network.asked == []


def _certificates(tmp_path: Path, *names: str) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A test CA (openssl's command line) and a certificate signed by it for each name."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test CA")
    issued = {}
    for name in names:
        (tmp_path / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")  # fmt: skip
        issued[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}.key")
    return tmp_path / "ca.pem", issued


async def test_tls_is_verified_for_the_name_not_the_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca, issued = _certificates(tmp_path, "hook.example", "other.example")
    receivers = {}
    for name, (cert, key) in issued.items():
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        receivers[name] = Receiver(tls=tls)
    trusted = ssl.create_default_context(cafile=str(ca))
    monkeypatch.setattr(targets, "resolve", Rebinding(first=[PUBLIC], later=[PUBLIC]))
    for name, receiver in receivers.items():
        network = Network({PUBLIC: receiver.port})  # the public address reaches this name's receiver
        async with delivery_client(allow_private=False, timeout=5, network=network, verify=trusted) as client:
            # Connected to the address, yet verified for the URL's name: hook.example's
            # certificate (no address in it) is accepted, other.example's is not.
            url = f"https://hook.example:{receiver.port}/hook"
            if name == "hook.example":
                assert (await client.post(url, content=b"{}")).status_code == 204
            else:
                with pytest.raises(httpx.ConnectError, match="hook.example"):
                    await client.post(url, content=b"{}")
        assert network.asked == [PUBLIC]
    ((headers, _),) = receivers["hook.example"].got
    assert headers["host"] == f"hook.example:{receivers['hook.example'].port}"
    assert receivers["other.example"].got == []
    for receiver in receivers.values():
        receiver.shutdown()


async def test_the_dispatcher_refuses_a_name_rebound_to_a_private_address_after_it_was_written(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = Receiver()
    monkeypatch.setattr(targets, "resolve", Rebinding(first=[PUBLIC], later=["127.0.0.1"]))
    url = f"http://hook.example:{private.port}/hook"
    made = await client.post("/v1/webhooks", json={"url": url, "events": ["webhook.test"]})
    assert made.status_code == 201, made.text  # checked when written: the public answer
    webhook = made.json()
    assert (await client.post(f"/v1/webhooks/{webhook['id']}/test")).status_code == 200
    network = Network({"127.0.0.1": private.port, "hook.example": private.port})
    async with delivery_client(allow_private=False, timeout=5, network=network) as sender:
        assert await dispatcher.dispatch(db, sender) == 1
    (delivery,) = (await client.get(f"/v1/webhooks/{webhook['id']}/deliveries")).json()["data"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("pending", 1, None)
    assert delivery["last_error"].startswith("refused: its host resolves to 127.0.0.1")
    assert network.asked == [] and private.got == []
    private.shutdown()
