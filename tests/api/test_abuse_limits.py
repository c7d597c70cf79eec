"""Limits on abuse: per-key rate limits, security headers, CORS, body and page size
limits on /v1/keys, and the statement timeout.

In-process apps on the rolled-back database, except the statement timeout tests, which
need connections of their own (live).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import cli
from services.api.access.gate import AccessGate
from services.api.access.rate_limit import Limit, RateLimiter
from services.api.app import create_app
from services.api.db import Database, sqlstate
from services.api.errors import database_unavailable
from services.api.keys import service
from services.api.keys.schemas import KeyCreate
from services.api.principal import SCOPES
from services.api.settings import DEFAULT_RATE_LIMIT, RateLimit, Settings
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID as PROD
from tests.helpers import admin_key, app_of, assert_problem, bearer, config, create_agent, settings_for_tests, unique

ORIGIN = "https://console.example"
CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


async def new_key(db: Database, name: str, scope: str) -> str:
    return (await service.create_key(db, KeyCreate(name=name, scope=scope)))["secret"]


def client_for(app: FastAPI, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers)


def gate_of(app: FastAPI) -> AccessGate:
    """The access gate in the app's ASGI chain (`app.front`)."""
    layer: Any = app.front
    while not isinstance(layer, AccessGate):
        layer = layer.app
    return layer


# ------------------------------------------------------------------------ rate limits: the bucket


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait() -> None:
    limiter = RateLimiter({"read": Limit(per_second=5, burst=3)})
    assert [limiter.take("key_a", "read") for _ in range(3)] == [None, None, None]
    assert limiter.take("key_a", "read") == 1
    assert limiter.take("key_a", "read") == 1


def test_a_bucket_refills_at_its_rate_and_a_refusal_costs_nothing() -> None:
    limiter = RateLimiter({"read": Limit(per_second=5, burst=3)})
    for _ in range(3):
        assert limiter.take("key_a", "read") is None
    assert limiter.take("key_a", "read") == 1  # refused: takes no token
    time.sleep(0.25)  # 1.25 tokens
    assert limiter.take("key_a", "read") is None
    assert limiter.take("key_a", "read") == 1


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    limiter = RateLimiter({"write": Limit(per_second=100, burst=2)})
    assert limiter.take("key_a", "write") is None
    time.sleep(0.2)  # 20 tokens' worth, capped at 2
    assert [limiter.take("key_a", "write") for _ in range(3)] == [None, None, 1]


@pytest.mark.parametrize(
    ("per_second", "burst", "wait"), [(0.5, 1, 2), (0.1, 2, 10), (1, 1, 1), (1000, 1, 1), (1 / 30, 1, 30)]
)
def test_retry_after_is_the_whole_seconds_until_the_next_token(per_second: float, burst: int, wait: int) -> None:
    limiter = RateLimiter({"resolve": Limit(per_second=per_second, burst=burst)})
    for _ in range(burst):
        assert limiter.take("key_a", "resolve") is None
    assert limiter.take("key_a", "resolve") == wait


def test_buckets_are_per_key_and_limits_per_scope() -> None:
    limiter = RateLimiter({"read": Limit(per_second=1, burst=1), "admin": Limit(per_second=1, burst=3)})
    assert limiter.take("key_a", "read") is None
    assert limiter.take("key_a", "read") == 1
    assert limiter.take("key_b", "read") is None  # another key: a bucket of its own
    assert [limiter.take("key_c", "admin") for _ in range(4)] == [None, None, None, 1]


# ------------------------------------------------------------------------ rate limits: settings


def test_the_default_limits_are_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract 1.1: `resolve` keys 20,000/s with bursts of 40,000 (a fleet of agents shares
    one); every other scope 1,000/s with bursts of 2,000."""
    monkeypatch.delenv("RATE_LIMITS", raising=False)
    settings = Settings(database_url=None)
    assert (DEFAULT_RATE_LIMIT.per_second, DEFAULT_RATE_LIMIT.burst) == (1000, 2000)
    expected = {scope: (20_000, 40_000) if scope == "resolve" else (1000, 2000) for scope in SCOPES}
    assert {scope: (limit.per_second, limit.burst) for scope, limit in settings.rate_limits.items()} == expected
    # And the app's gate applies them.
    limits = gate_of(create_app(settings)).limiter.limits
    assert limits == {scope: Limit(*expected[scope]) for scope in SCOPES}


def test_rate_limits_from_the_environment_override_only_the_scopes_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMITS", '{"write": {"per_second": 50, "burst": 100}}')
    limits = Settings(database_url=None).rate_limits
    assert limits["write"] == RateLimit(per_second=50, burst=100)
    assert all(limits[scope] == DEFAULT_RATE_LIMIT for scope in SCOPES if scope not in ("write", "resolve"))
    assert limits["resolve"] == RateLimit(per_second=20_000, burst=40_000)
    assert gate_of(create_app(Settings(database_url=None))).limiter.limits["write"] == Limit(50, 100)


@pytest.mark.parametrize(
    "value",
    [
        '{"superuser": {"per_second": 1, "burst": 1}}',
        '{"read": {"per_second": 1, "burst": 1}, "Write": {"per_second": 1, "burst": 1}}',
        '{"read": {"per_second": 0, "burst": 1}}',
        '{"read": {"per_second": 1, "burst": 0}}',
        '{"read": {"per_second": 1}}',
        '{"read": {"per_second": 1, "burst": 1, "window": 60}}',
        '["read"]',
        "not json",
    ],
)
def test_bad_rate_limits_in_the_environment_are_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("RATE_LIMITS", value)
    with pytest.raises(ValueError, match="(?i)rate_limits"):  # ValidationError and SettingsError are ValueErrors
        Settings(database_url=None)
    # The CLI says so and exits 2 before touching any database.
    assert cli.main(["keys", "list"]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_an_unknown_scope_in_rate_limits_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMITS", '{"superuser": {"per_second": 1, "burst": 1}}')
    with pytest.raises(ValidationError, match="unknown scope superuser"):
        Settings(database_url=None)


# ------------------------------------------------------------------------ rate limits: over HTTP


@pytest.fixture
async def limited(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """An app where read keys get 2 requests/s with bursts of 3; other scopes the defaults.
    (A slow rate, so a burst of requests on a loaded machine does not earn a token back.)"""
    settings = settings_for_tests(rate_limits={"read": {"per_second": 2, "burst": 3}})
    assert settings.rate_limits["admin"] == DEFAULT_RATE_LIMIT
    async with client_for(create_app(settings, database=db)) as http:
        yield http


async def burst(http: httpx.AsyncClient, secret: str, n: int) -> list[httpx.Response]:
    return [await http.get("/v1/agents", headers=bearer(secret)) for _ in range(n)]


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_then_recovers(
    limited: httpx.AsyncClient, db: Database
) -> None:
    reader = await new_key(db, "reader-a", "read")
    first = await burst(limited, reader, 4)
    assert [r.status_code for r in first[:3]] == [200, 200, 200]
    body = assert_problem(first[3], 429, "rate_limited")
    assert "reader-a" in body["detail"]
    retry_after = first[3].headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    for name, value in SECURITY_HEADERS.items():
        assert first[3].headers[name] == value
    # Waiting as told refills the bucket: 1 s at 2 tokens/s gives two requests back.
    assert retry_after == "1"
    await asyncio.sleep(int(retry_after))
    again = await burst(limited, reader, 3)
    assert [r.status_code for r in again] == [200, 200, 429]


async def test_a_limited_key_does_not_limit_another(limited: httpx.AsyncClient, db: Database) -> None:
    a, b = await new_key(db, "reader-a", "read"), await new_key(db, "reader-b", "read")
    assert [r.status_code for r in await burst(limited, a, 4)] == [200, 200, 200, 429]
    assert [r.status_code for r in await burst(limited, b, 3)] == [200, 200, 200]
    assert (await limited.get("/v1/agents", headers=bearer(a))).status_code == 429
    # A key of a scope left at the defaults is far from its limit.
    admin = await new_key(db, "admin-c", "admin")
    assert {r.status_code for r in await burst(limited, admin, 20)} == {200}


async def test_a_refused_key_is_401_not_429(limited: httpx.AsyncClient, db: Database) -> None:
    """The limiter counts requests of verified keys: a bad key is told it is bad."""
    reader = await new_key(db, "reader-a", "read")
    assert [r.status_code for r in await burst(limited, reader, 4)] == [200, 200, 200, 429]
    assert_problem(await limited.get("/v1/agents", headers=bearer("avk_" + "x" * 43)), 401, "unauthorized")
    assert_problem(await limited.get("/v1/agents"), 401, "unauthorized")


# ------------------------------------------------------------------------ security headers


def assert_security_headers(response: httpx.Response, *, csp: bool = True) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    assert response.headers.get_list("content-security-policy") == ([CSP] if csp else [])


async def test_json_responses_carry_the_security_headers(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    assert_security_headers(await client.get("/v1/agents"))
    assert_security_headers(await client.get(f"/v1/agents/{agent['id']}"))
    assert_security_headers(await client.get("/v1/keys"))
    assert_security_headers(await client.get("/v1/agents/nobody"))  # 404 problem
    assert_security_headers(await client.get("/v1/keys", params={"limit": 0}))  # 422 problem
    assert_security_headers(await client.get("/healthz"))
    assert_security_headers(await client.get("/openapi.json"))
    idem = {"Idempotency-Key": f"headers-{unique('k')}"}
    body = {"name": unique(), "config": config()}
    assert_security_headers(await client.post("/v1/agents", json=body, headers=idem))
    replay = await client.post("/v1/agents", json=body, headers=idem)
    assert replay.headers["idempotent-replayed"] == "true"
    assert_security_headers(replay)


async def test_the_gates_refusals_carry_the_security_headers(client: httpx.AsyncClient, db: Database) -> None:
    async with client_for(app_of(client)) as anonymous:
        unauthorized = await anonymous.get("/v1/agents")
        assert unauthorized.status_code == 401
        assert_security_headers(unauthorized)
        forbidden = await anonymous.get("/v1/keys", headers=bearer(await new_key(db, "reader", "read")))
        assert forbidden.status_code == 403
        assert_security_headers(forbidden)


async def test_cache_hits_carry_the_security_headers(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    path = f"/v1/agents/{agent['id']}/resolved"
    miss = await client.get(path)
    assert miss.status_code == 200
    assert app_of(client).state.resolve_cache.get(agent["id"], PROD, False) is not None  # the next is a hit
    hit = await client.get(path)
    assert (hit.status_code, hit.content, hit.headers["etag"]) == (200, miss.content, miss.headers["etag"])
    assert_security_headers(miss)
    assert_security_headers(hit)
    not_modified = await client.get(path, headers={"If-None-Match": hit.headers["etag"]})
    assert not_modified.status_code == 304
    assert_security_headers(not_modified)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_html_docs_have_a_policy_of_their_own(client: httpx.AsyncClient, path: str) -> None:
    """Their scripts and styles come from the service only (tests/api/test_api_docs.py
    checks that they load)."""
    async with client_for(app_of(client)) as anonymous:
        response = await anonymous.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)
    [policy] = response.headers.get_list("content-security-policy")
    directives = dict(directive.strip().split(" ", 1) for directive in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    for sources in ("script-src", "style-src", "img-src", "connect-src"):
        assert directives[sources].startswith("'self'"), policy
    assert all(source == "'self'" or source.startswith("'sha256-") for source in directives["script-src"].split())
    assert "http" not in policy and "*" not in policy


# ------------------------------------------------------------------------ CORS


def preflight(method: str = "GET", headers: str = "authorization", origin: str = ORIGIN) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    assert Settings(database_url=None).cors_allow_origins == []
    async with client_for(app_of(client)) as anonymous:
        response = await anonymous.options("/v1/agents", headers=preflight())
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-headers" not in response.headers
    actual = await client.get("/v1/agents", headers={"Origin": ORIGIN})
    assert actual.status_code == 200
    assert "access-control-allow-origin" not in actual.headers


@pytest.fixture
async def cors(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An app that lets ORIGIN call it, and an admin key's secret."""
    app = create_app(settings_for_tests(cors_allow_origins=[ORIGIN]), database=db)
    secret = await admin_key(db)
    async with client_for(app) as http:
        yield http, secret


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


async def test_a_preflight_from_an_allowed_origin_succeeds_without_a_key(
    cors: tuple[httpx.AsyncClient, str],
) -> None:
    http, _ = cors
    response = await http.options("/v1/agents", headers=preflight())
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in listed(response.headers["access-control-allow-headers"])
    assert "GET" in {m.upper() for m in listed(response.headers["access-control-allow-methods"])}
    assert "access-control-allow-credentials" not in response.headers  # bearer keys, never cookies
    # A write from the console: the headers it needs are allowed too.
    write = await http.options(
        "/v1/agents/x/variants",
        headers=preflight("POST", "authorization, content-type, idempotency-key, if-match, x-actor"),
    )
    assert write.status_code == 200, write.text
    assert write.headers["access-control-allow-origin"] == ORIGIN


async def test_an_allowed_origins_requests_can_read_the_answer_and_its_etag(
    cors: tuple[httpx.AsyncClient, str],
) -> None:
    http, secret = cors
    response = await http.get("/v1/agents", headers={"Origin": ORIGIN, **bearer(secret)})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = listed(response.headers["access-control-expose-headers"])
    assert {"etag", "retry-after", "location"} <= exposed
    assert "origin" in listed(response.headers.get("vary", ""))
    assert_security_headers(response)
    # A refusal is readable too, so the console can tell the user why.
    refused = await http.get("/v1/agents", headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN
    assert "www-authenticate" in listed(refused.headers["access-control-expose-headers"])


async def test_another_origin_gets_no_cors_headers(cors: tuple[httpx.AsyncClient, str]) -> None:
    http, secret = cors
    for origin in ("https://evil.example", "https://console.example.evil", "http://console.example"):
        response = await http.options("/v1/agents", headers=preflight(origin=origin))
        assert response.status_code != 200
        assert "access-control-allow-origin" not in response.headers
        actual = await http.get("/v1/agents", headers={"Origin": origin, **bearer(secret)})
        assert "access-control-allow-origin" not in actual.headers


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
        (" https://a.example , ", ["https://a.example"]),
        ('["https://a.example"]', ["https://a.example"]),
        ("", []),
    ],
)
def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, origins: list[str]) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", value)
    assert Settings(database_url=None).cors_allow_origins == origins


# ------------------------------------------------------------------------ sizes on /v1/keys


def padded_key_body(size: int) -> bytes:
    head = json.dumps({"name": "big", "scope": "read", "pad": ""}).encode()
    return head[:-2] + b"a" * (size - len(head)) + head[-2:]


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_body_over_4_mib_on_keys_is_413(client: httpx.AsyncClient, idempotent: bool) -> None:
    body = padded_key_body(4 * 1024 * 1024 + 1)
    headers = {"Content-Type": "application/json"} | ({"Idempotency-Key": unique("big")} if idempotent else {})
    response = await client.post("/v1/keys", content=body, headers=headers)
    assert_problem(response, 413, "payload_too_large")
    assert [k["name"] for k in (await client.get("/v1/keys")).json()["data"]] == ["test-admin"]


async def test_a_streamed_body_over_the_limit_on_keys_is_413(db: Database) -> None:
    app = create_app(settings_for_tests(max_body_bytes=1024), database=db)

    async def chunks() -> AsyncIterator[bytes]:
        body = padded_key_body(4096)
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with client_for(app, **bearer(await admin_key(db))) as http:
        response = await http.post("/v1/keys", content=chunks(), headers={"Content-Type": "application/json"})
        assert_problem(response, 413, "payload_too_large")
        small = await http.post("/v1/keys", json={"name": "small", "scope": "read"})
        assert small.status_code == 201, small.text


@pytest.mark.parametrize("limit", ["101", "0", "-1", "1000", "ten", ""])
async def test_a_page_size_outside_1_to_100_on_keys_is_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/v1/keys", params={"limit": limit})
    body = assert_problem(response, 422, "validation_error")
    assert {error["param"] for error in body["errors"]} == {"limit"}


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_page_sizes_1_and_100_on_keys_are_fine(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/v1/keys", params={"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1


# ------------------------------------------------------------------------ statement timeout


@pytest.mark.live
async def test_a_statement_over_the_timeout_is_cancelled_and_reads_as_unavailable(live_url: str) -> None:
    db = Database.from_url(live_url, pool_size=1, max_overflow=0, statement_timeout_seconds=0.2)
    try:
        async with db.read() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "200ms"
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            async with db.read() as conn:
                await conn.execute(text("SELECT pg_sleep(1)"))
        assert time.monotonic() - started < 0.9  # cancelled, not waited out
        assert sqlstate(caught.value) == "57014"  # query_canceled
        assert database_unavailable(caught.value)
        # In a transaction too; and the pooled connection is fine afterwards.
        with pytest.raises(Exception) as in_transaction:
            await db.transaction(lambda conn: conn.execute(text("SELECT pg_sleep(1)")))
        assert database_unavailable(in_transaction.value)
        async with db.read() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await db.dispose()


@pytest.mark.live
async def test_a_write_stuck_past_the_timeout_answers_503_not_500(live_url: str, live_db: Database) -> None:
    """A PATCH waiting on a row another transaction holds is cancelled by the timeout."""
    secret = await admin_key(live_db, unique("timeout").replace(" ", "-"))
    slow = Database.from_url(live_url, pool_size=2, max_overflow=0, statement_timeout_seconds=0.2)
    try:
        async with client_for(create_app(settings_for_tests(), database=slow), **bearer(secret)) as http:
            agent = await create_agent(http)
            assert live_db.engine is not None
            holder: AsyncConnection
            async with live_db.engine.connect() as holder, holder.begin():
                await holder.execute(text("SELECT 1 FROM agents WHERE id = :id FOR UPDATE"), {"id": agent["id"]})
                started = time.monotonic()
                response = await http.patch(f"/v1/agents/{agent['id']}", json={"description": "blocked"})
                assert time.monotonic() - started < 5
            assert_problem(response, 503, "service_unavailable")
            assert response.headers["retry-after"] == "1"
            # Once the lock is gone, the same write goes through.
            again = await http.patch(f"/v1/agents/{agent['id']}", json={"description": "free"})
            assert again.status_code == 200, again.text
    finally:
        await slow.dispose()


@pytest.mark.live
async def test_the_app_applies_the_statement_timeout_setting(live_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_STATEMENT_TIMEOUT_SECONDS", raising=False)
    assert Settings(database_url=None).db_statement_timeout_seconds == 30.0
    app = create_app(settings_for_tests(database_url=live_url, db_statement_timeout_seconds=0.25))
    async with app.router.lifespan_context(app):
        async with app.state.db.read() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "250ms"
