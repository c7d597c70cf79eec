"""A fault-injecting HTTP proxy for tests of the SDK against real servers: it forwards to
a server and fails chosen requests, either *refused* (503, never forwarded: nothing
happened) or *lost* (forwarded, so the server acted, then answered 502: only an
`Idempotency-Key` keeps a retry from acting twice)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn

Fault = Literal["refused", "lost"]
# Response headers the proxy does not pass on: it sets the length itself, and httpx has
# already decoded the body.
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"content-encoding"}


@dataclass(frozen=True)
class Forwarded:
    """An outcomes POST that reached the server, and what the server answered."""

    key: str
    status: int
    replayed: bool  # `Idempotent-Replayed: true`: the server answered from the key, storing nothing


@dataclass
class FaultyProxy:
    """An ASGI proxy to `upstream` (uvicorn, in a thread of its own, so a blocking client
    in the test's thread does not stop it) that fails some requests.

    `mode`:
    - "alternate": outcome POSTs number 0, 2, 4, 6, ... fail, as refused, lost, refused,
      lost, ...; the others go through;
    - "refuse": every outcome POST is refused;
    - "no_streams": every watch stream is refused (503), everything else goes through;
    - "lose_posts": every POST's first attempt (by its `Idempotency-Key`) is forwarded, then lost;
    - "silent_streams": a watch stream is answered 200 `text/event-stream`, then nothing
      ever comes on it (a proxy that buffers it); everything else goes through;
    - "maintenance": every request gets a 200 HTML page (a load balancer's);
    - "html_404": every request gets an HTML 404 (a load balancer during a deploy);
    - "pass": everything goes through (watch streams are refused).
    `fail_with_500`: a path fragment; outcome POSTs whose path holds it get a 500 (a
    server bug), in any mode. `mode` may be changed while the proxy runs.

    Watch streams are never forwarded (the proxy reads whole answers)."""

    upstream: str
    mode: Literal[
        "alternate", "refuse", "no_streams", "lose_posts", "silent_streams", "maintenance", "html_404", "pass"
    ] = "alternate"
    fail_with_500: str | None = None
    url: str = ""
    # Every request that went through: (method, path, status, If-None-Match sent).
    passed: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    # The `Last-Event-ID` of every watch request, in order (None when not sent).
    stream_ids: list[str | None] = field(default_factory=list)
    _seen_keys: set[str] = field(default_factory=set)
    outcome_posts: int = 0
    faults: list[tuple[Fault, str]] = field(default_factory=list)  # (kind, Idempotency-Key), in order
    forwarded: list[Forwarded] = field(default_factory=list)
    _http: httpx.AsyncClient | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def keys(self, kind: Fault) -> list[str]:
        return [key for fault, key in self.faults if fault == kind]

    def _fault(self) -> Fault | None:
        n = self.outcome_posts
        self.outcome_posts += 1
        if self.mode == "refuse":
            return "refused"
        if n % 2:
            return None
        return "refused" if n // 2 % 2 == 0 else "lost"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", scope["type"]
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [(name, value) for name, value in scope["headers"] if name not in (b"host", b"content-length")]
        key = next((value.decode() for name, value in headers if name == b"idempotency-key"), "")
        outcomes = scope["method"] == "POST" and scope["path"].endswith("/outcomes")
        if scope["path"].endswith("/bundle/watch"):
            self.stream_ids.append(next((v.decode() for n, v in headers if n == b"last-event-id"), None))
        if self.mode in ("maintenance", "html_404"):
            status = 200 if self.mode == "maintenance" else 404
            await _answer(send, status, b"<html>back soon</html>", [(b"content-type", b"text/html")])
            return
        if scope["path"].endswith("/bundle/watch") and self.mode == "silent_streams":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass  # hold it open, say nothing
            return
        if self.fail_with_500 and outcomes and self.fail_with_500 in scope["path"]:
            self.faults.append(("refused", key))
            await _answer(send, 500, _problem("internal_error", "A bug, for the test"))
            return
        fault = self._fault() if outcomes and self.mode in ("alternate", "refuse") else None
        if self.mode in ("no_streams", "pass") and scope["path"].endswith("/bundle/watch"):
            fault = "refused"
        if self.mode == "lose_posts" and scope["method"] == "POST" and key not in self._seen_keys:
            self._seen_keys.add(key)
            fault = "lost"
        if fault is not None:
            self.faults.append((fault, key))
        if fault == "refused":
            await _answer(send, 503, _problem("service_unavailable", "Refused by the faulty proxy"))
            return
        target = self.upstream + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        assert self._http is not None
        response = await self._http.request(scope["method"], target, headers=headers, content=body)
        condition = next((value.decode() for name, value in headers if name == b"if-none-match"), None)
        self.passed.append((scope["method"], scope["path"], response.status_code, condition))
        if outcomes:
            replayed = response.headers.get("idempotent-replayed") == "true"
            self.forwarded.append(Forwarded(key, response.status_code, replayed))
        if fault == "lost":  # the server has the batch; the SDK hears it failed
            await _answer(send, 502, _problem("bad_gateway", "The faulty proxy lost the answer"))
            return
        kept = [(name, value) for name, value in response.headers.raw if name.lower() not in HOP_BY_HOP]
        await _answer(send, response.status_code, response.content, kept)

    def start(self) -> None:
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = self._server = uvicorn.Server(config)

        async def serve() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                self._http = http
                await server.serve()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), name="faulty-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)


def _problem(code: str, detail: str) -> bytes:
    return json.dumps({"type": "about:blank", "title": detail, "status": 0, "code": code, "detail": detail}).encode()


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    if headers is None:
        headers = [(b"content-type", b"application/problem+json")]
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
