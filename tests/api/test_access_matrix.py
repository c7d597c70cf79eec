"""The access matrix: every route the app serves × every kind of credential gets exactly
the status the contract ("Access control") says.

The routes are read from the app itself; what each needs is this test's own table,
written out by hand from the contract (never computed by `services.api.access.rules`), so
a rule that drifts from the contract, a new route nobody gave a rule, or a rule for a
route that is gone each fail here.

Every request is built to change nothing: GETs point at a real agent, variant,
experiment, revision, key and environment (`production`); changes point at ids that do not exist (or send an invalid
body), so the admin key gets a 4xx and every other key either the same status or a
refusal.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.api import api_docs
from services.api.app import create_app
from services.api.db import Database
from services.api.keys import repository, tokens
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.api.routes import every_route
from services.shared.identifiers import new_id
from tests.helpers import admin_key, assert_problem, bearer, create_agent, create_variant, settings_for_tests

# --- the expectation table, by hand from the contract ------------------------------------

OPEN = None
RESOLVE, READ, WRITE, ADMIN = "resolve", "read", "write", "admin"
SCOPES = (RESOLVE, READ, WRITE, ADMIN)  # each allows what those before it allow
RANK = {scope: rank for rank, scope in enumerate(SCOPES)}

A = "/v1/agents/{agent}"
EXPECTED: dict[tuple[str, str], str | None] = {
    # Open: probes and the API's own description (Swagger UI and ReDoc, with their
    # scripts and styles), and `/`, a redirect to the console.
    ("GET", "/"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/redoc"): OPEN,
    # Prometheus' text format: `read` (METRICS_OPEN opens it; tests/api/test_metrics.py).
    ("GET", "/metrics"): READ,
    ("GET", "/docs/assets/{version}/{asset}"): OPEN,
    # The console signs people in itself (a session cookie opened with a key; its scope
    # decides what the pages let you change): the gate lets it through, whatever the
    # Authorization header says. tests/console checks its sessions and scopes.
    ("GET", "/console"): OPEN,
    ("GET", "/console/static/{name}"): OPEN,
    ("GET", "/console/sign-in"): OPEN,
    ("POST", "/console/sign-in"): OPEN,
    ("POST", "/console/sign-out"): OPEN,
    ("GET", "/console/agents/{agent}/history"): OPEN,
    ("GET", "/console/agents/{agent}/undo"): OPEN,
    ("POST", "/console/agents/{agent}/undo"): OPEN,
    ("POST", "/console/agents/{agent}/variants/{variant}/restore"): OPEN,
    ("GET", "/console/agents/{agent}/experiments"): OPEN,
    ("POST", "/console/agents/{agent}/experiments"): OPEN,
    ("GET", "/console/agents/{agent}/experiments/{experiment}"): OPEN,
    ("GET", "/console/agents/{agent}/experiments/{experiment}/{action}"): OPEN,
    ("POST", "/console/agents/{agent}/experiments/{experiment}/{action}"): OPEN,
    ("GET", "/console/agents"): OPEN,
    ("POST", "/console/agents"): OPEN,
    ("GET", "/console/agents/{agent}"): OPEN,
    ("GET", "/console/agents/{agent}/edit"): OPEN,
    ("POST", "/console/agents/{agent}/edit"): OPEN,
    ("POST", "/console/agents/{agent}/variants"): OPEN,
    ("GET", "/console/agents/{agent}/variants/{variant}"): OPEN,
    ("POST", "/console/agents/{agent}/variants/{variant}/edit"): OPEN,
    ("POST", "/console/agents/{agent}/variants/{variant}/rollout"): OPEN,
    ("GET", "/console/agents/{agent}/variants/{variant}/{action}"): OPEN,
    ("POST", "/console/agents/{agent}/variants/{variant}/{action}"): OPEN,
    ("GET", "/console/agents/{agent}/rules"): OPEN,
    ("POST", "/console/agents/{agent}/rules"): OPEN,
    # resolve: what an agent in production needs.
    ("GET", f"{A}/resolved"): RESOLVE,
    ("POST", f"{A}/resolve"): RESOLVE,
    ("POST", f"{A}/render"): RESOLVE,
    ("GET", f"{A}/bundle"): RESOLVE,
    ("GET", f"{A}/bundle/watch"): RESOLVE,
    ("POST", f"{A}/outcomes"): RESOLVE,
    # OpenFeature's Remote Evaluation Protocol (1.1): evaluations are resolutions.
    ("POST", "/ofrep/v1/evaluate/flags/{agent}"): RESOLVE,
    ("POST", "/ofrep/v1/evaluate/flags"): RESOLVE,
    # read: every other GET but keys.
    ("GET", "/v1/inspect/routes"): READ,
    ("GET", "/v1/agents"): READ,
    ("GET", A): READ,
    ("GET", f"{A}/variants"): READ,
    ("GET", f"{A}/variants/{{variant}}"): READ,
    ("GET", f"{A}/variants/{{variant}}/diff"): READ,
    ("GET", f"{A}/revisions"): READ,
    ("GET", f"{A}/revisions/{{revision}}"): READ,
    ("GET", f"{A}/experiments"): READ,
    ("GET", f"{A}/experiments/{{experiment}}"): READ,
    ("GET", f"{A}/experiments/{{experiment}}/results"): READ,
    ("GET", f"{A}/experiments/{{experiment}}/guardrail_history"): READ,
    ("GET", f"{A}/usage"): READ,
    ("GET", f"{A}/rules"): READ,
    # write: every change but keys.
    ("POST", "/v1/agents"): WRITE,
    ("PATCH", A): WRITE,
    ("DELETE", A): WRITE,
    ("POST", f"{A}/unarchive"): WRITE,
    ("POST", f"{A}/variants"): WRITE,
    ("PATCH", f"{A}/variants/{{variant}}"): WRITE,
    ("DELETE", f"{A}/variants/{{variant}}"): WRITE,
    ("POST", f"{A}/variants/{{variant}}/activate"): WRITE,
    ("POST", f"{A}/variants/{{variant}}/deactivate"): WRITE,
    ("POST", f"{A}/variants/{{variant}}/restore"): WRITE,
    ("POST", f"{A}/undo"): WRITE,
    ("POST", f"{A}/experiments"): WRITE,
    ("PATCH", f"{A}/experiments/{{experiment}}"): WRITE,
    ("DELETE", f"{A}/experiments/{{experiment}}"): WRITE,
    ("POST", f"{A}/experiments/{{experiment}}/start"): WRITE,
    ("POST", f"{A}/experiments/{{experiment}}/stop"): WRITE,
    ("POST", f"{A}/experiments/{{experiment}}/pause"): WRITE,
    ("POST", f"{A}/experiments/{{experiment}}/resume"): WRITE,
    ("PUT", f"{A}/rules"): WRITE,
    # Environments (1.1): reads need read, writes admin.
    ("GET", "/v1/environments"): READ,
    ("GET", "/v1/environments/{environment}"): READ,
    ("POST", "/v1/environments"): ADMIN,
    ("PATCH", "/v1/environments/{environment}"): ADMIN,
    ("DELETE", "/v1/environments/{environment}"): ADMIN,
    # The model catalog (1.1): reads need read, writes admin.
    ("GET", "/v1/models"): READ,
    ("GET", "/v1/models/{provider}/{name:path}"): READ,
    ("PUT", "/v1/models/{provider}/{name:path}"): ADMIN,
    ("DELETE", "/v1/models/{provider}/{name:path}"): ADMIN,
    # admin: /v1/keys.
    ("POST", "/v1/keys"): ADMIN,
    ("GET", "/v1/keys"): ADMIN,
    ("GET", "/v1/keys/{key}"): ADMIN,
    ("DELETE", "/v1/keys/{key}"): ADMIN,
    ("POST", "/v1/webhooks"): ADMIN,
    ("GET", "/v1/webhooks"): ADMIN,
    ("GET", "/v1/webhooks/{webhook}"): ADMIN,
    ("PATCH", "/v1/webhooks/{webhook}"): ADMIN,
    ("DELETE", "/v1/webhooks/{webhook}"): ADMIN,
    ("POST", "/v1/webhooks/{webhook}/rotate_secret"): ADMIN,
    ("GET", "/v1/webhooks/{webhook}/deliveries"): ADMIN,
    ("POST", "/v1/webhooks/{webhook}/test"): ADMIN,
}


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, template) of every route the app serves, HEAD aside, in the app's order."""
    pairs = {
        (method, path): None
        for path, methods in every_route(app.routes)
        for method in sorted(methods)
        if method != "HEAD"
    }
    return list(pairs)


def coverage_problems(routes: Iterable[tuple[str, str]], table: dict[tuple[str, str], str | None]) -> list[str]:
    """Each route the app serves that the table has no rule for, and each rule for a route
    the app does not serve."""
    served = set(routes)
    missing = [f"route {method} {path} has no access rule in this test" for method, path in sorted(served - set(table))]
    stale = [
        f"this test has an access rule for {method} {path}, which the app does not serve"
        for method, path in sorted(set(table) - served)
    ]
    return missing + stale


# --- credentials ----------------------------------------------------------------------------

NO_KEY, MALFORMED, UNKNOWN, REVOKED, EXPIRED = "no key", "malformed", "unknown key", "revoked key", "expired key"
REFUSED = (NO_KEY, MALFORMED, UNKNOWN, REVOKED, EXPIRED)
CREDENTIALS = (*REFUSED, *SCOPES)


@dataclass
class World:
    http: httpx.AsyncClient
    app: FastAPI
    headers: dict[str, dict[str, str]]  # credential -> request headers
    read_params: dict[str, str]  # path parameter -> a real one (for GETs)
    write_params: dict[str, str]  # path parameter -> one that does not exist (for changes)


async def _expired_key(db: Database, app: FastAPI) -> str:
    """An admin key that expired an hour ago (KeyCreate refuses past times: straight to the
    repository), and the key ring told to reload."""
    secret = tokens.new_secret()

    async def unit(conn: Any) -> None:
        row = await repository.insert_one(
            conn,
            id=new_id("api_key"),
            name="matrix-lapsed",
            scope="admin",
            secret_hash=tokens.digest(secret),
            expires_at=datetime.now(UTC) - timedelta(hours=1),
        )
        assert row is not None

    await db.transaction(unit)
    app.state.key_ring.invalidate()
    return secret


@asynccontextmanager
async def opened_world(db: Database) -> AsyncIterator[World]:
    """The app, a key of every kind and real objects to point GETs at (test_bound_keys adds
    keys bound to an environment to the same world)."""
    app = create_app(settings_for_tests(), database=db)
    headers: dict[str, dict[str, str]] = {
        NO_KEY: {},
        MALFORMED: {"Authorization": "Basic abc"},
        UNKNOWN: bearer(tokens.PREFIX + "x" * 43),
        ADMIN: bearer(await admin_key(db)),
    }
    for scope in (RESOLVE, READ, WRITE):
        key = await keys_service.create_key(db, KeyCreate(name=f"matrix-{scope}", scope=scope))
        headers[scope] = bearer(key["secret"])
    revoked = await keys_service.create_key(db, KeyCreate(name="matrix-withdrawn", scope="admin"))
    await keys_service.revoke_key(db, "matrix-withdrawn")
    headers[REVOKED] = bearer(revoked["secret"])
    headers[EXPIRED] = bearer(await _expired_key(db, app))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        admin = httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers[ADMIN])
        async with admin:
            agent = await create_agent(admin)
            variant = await create_variant(admin, agent["id"])
            response = await admin.post(
                f"/v1/agents/{agent['id']}/experiments",
                json={
                    "name": "Matrix",
                    "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}],
                },
            )
            assert response.status_code == 201, response.text
            experiment = response.json()
            revisions = (await admin.get(f"/v1/agents/{agent['id']}/revisions")).json()["data"]
            assert revisions, "creating an agent wrote a revision"
            # A model whose name is the `name` the console's static route reads too.
            model = await admin.put("/v1/models/matrix/console.css", json={"context_window": 1000})
            assert model.status_code == 201, model.text
            hook = await admin.post("/v1/webhooks", json={"url": "https://93.184.215.14/hook", "events": ["*"]})
            assert hook.status_code == 201, hook.text
        yield World(
            http=http,
            app=app,
            headers=headers,
            read_params={
                "agent": agent["slug"],
                "variant": variant["id"],
                "experiment": experiment["id"],
                "revision": revisions[0]["id"],
                "webhook": hook.json()["id"],
                "key": "matrix-read",
                "environment": "production",
                "provider": "matrix",
                "name": "console.css",
                "action": "activate",
                "version": api_docs.VERSION,
                "asset": "swagger-ui.css",
            },
            write_params={
                "agent": "zz-no-such-agent",
                "variant": "zz-no-such-variant",
                "experiment": "zz-no-such-experiment",
                "revision": "zz-no-such-revision",
                "webhook": "whk_00000000000000000000000000",
                "key": "zz-no-such-key",
                "environment": "zz-no-such-environment",
                "provider": "zz",
                "name": "zz",
                "action": "activate",
                "version": "zz",
                "asset": "zz",
            },
        )


@pytest.fixture
async def world(db: Database) -> AsyncIterator[World]:
    async with opened_world(db) as opened:
        yield opened


PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
# Query parameters a GET needs to be answered 200 rather than 422.
QUERIES = {f"{A}/variants/{{variant}}/diff": {"against": "base"}}
# Streams never end, and the in-process transport waits for the whole body: these GETs
# name a missing agent, so the route answers 404 before it would start streaming.
STREAMS = {f"{A}/bundle/watch"}


async def send(world: World, method: str, template: str, credential: str) -> httpx.Response:
    """The request for this route that changes nothing, with this credential."""
    params = world.read_params if method == "GET" and template not in STREAMS else world.write_params

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in params, f"no value to put in {{{name}}} of {template}: add one to the fixture"
        return params[name]

    path = PARAM.sub(substitute, template)
    body = {} if method in ("POST", "PATCH") else None
    query = QUERIES.get(template) if method == "GET" else None
    return await world.http.request(method, path, params=query, json=body, headers=world.headers[credential])


# --- the tests --------------------------------------------------------------------------------


async def test_every_route_has_exactly_one_rule(world: World) -> None:
    problems = coverage_problems(app_routes(world.app), EXPECTED)
    assert not problems, "\n".join(problems)


def test_a_new_route_without_a_rule_is_reported(db: Database) -> None:
    app = create_app(settings_for_tests(), database=db)
    before = set(coverage_problems(app_routes(app), EXPECTED))

    @app.get("/v1/zz-new")
    async def zz_new() -> dict[str, str]:
        return {}

    after = set(coverage_problems(app_routes(app), EXPECTED))
    assert after - before == {"route GET /v1/zz-new has no access rule in this test"}
    # ... and a rule whose route is gone too.
    table = {**EXPECTED, ("GET", "/v1/zz-new"): READ, ("GET", "/v1/zz-gone"): READ}
    assert set(coverage_problems(app_routes(app), table)) - before == {
        "this test has an access rule for GET /v1/zz-gone, which the app does not serve"
    }


def _refusal(response: httpx.Response, template: str) -> dict[str, Any]:
    """The body of a 401: problem+json, or OFREP's `{"errorDetails"}` on its routes (as a
    problem's `detail`, so the checks read one shape)."""
    if not template.startswith("/ofrep/"):
        return assert_problem(response, 401, "unauthorized")
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json", response.headers
    return {"detail": response.json()["errorDetails"]}


def _check_refused(response: httpx.Response, credential: str, template: str = "") -> str | None:
    """Why this 401 is not the one it should be, or None."""
    try:
        body = _refusal(response, template)
    except AssertionError as error:
        return f"expected a 401 unauthorized problem, got {response.status_code}: {error}"
    challenge = response.headers.get("www-authenticate", "")
    if not challenge.startswith("Bearer"):
        return f"WWW-Authenticate is {challenge!r}, not a Bearer challenge"
    if credential in (UNKNOWN, REVOKED, EXPIRED) and 'error="invalid_token"' not in challenge:
        return f"WWW-Authenticate {challenge!r} does not say invalid_token"
    if credential == REVOKED and "revoked" not in body["detail"]:
        return f"the detail {body['detail']!r} does not say the key was revoked"
    if credential == EXPIRED and "expired" not in body["detail"]:
        return f"the detail {body['detail']!r} does not say the key expired"
    return None


@pytest.mark.parametrize("credential", CREDENTIALS)
async def test_access_matrix(world: World, credential: str) -> None:
    routes = app_routes(world.app)
    problems = coverage_problems(routes, EXPECTED)
    assert not problems, "\n".join(problems)
    failures = []
    for method, template in routes:
        needed = EXPECTED[(method, template)]
        baseline = await send(world, method, template, ADMIN)
        if template in STREAMS:
            assert baseline.status_code == 404, f"GET {template} as admin: {baseline.status_code} {baseline.text}"
        elif template == "/":  # to the console
            assert baseline.status_code == 307, f"GET / as admin: {baseline.status_code} {baseline.text}"
        elif template.startswith("/console"):  # no session: the sign-in page (or its refusals) for everyone
            assert baseline.status_code in (200, 303, 403), f"{method} {template}: {baseline.status_code}"
        elif method == "GET":  # real path parameters: the route itself answers
            assert baseline.status_code == 200, f"GET {template} as admin: {baseline.status_code} {baseline.text}"
        else:  # changes nothing
            assert 400 <= baseline.status_code < 500, (
                f"{method} {template} as admin must change nothing, got {baseline.status_code} {baseline.text}"
            )
        response = await send(world, method, template, credential)
        where = f"{method} {template} with {credential} (needs {needed or 'nothing'})"
        if needed is OPEN or (credential in SCOPES and RANK[credential] >= RANK[needed]):
            # (A console form refused for its missing CSRF token is a 403 for every credential alike.)
            gate_refused = response.status_code == 401 or (
                response.status_code == 403 and not template.startswith("/console")
            )
            if gate_refused or response.status_code != baseline.status_code:
                failures.append(
                    f"{where}: {response.status_code}, the admin key got {baseline.status_code}: {response.text[:200]}"
                )
        elif credential in REFUSED:
            why = _check_refused(response, credential, template)
            if why is not None:
                failures.append(f"{where}: {why}")
        else:
            try:
                assert_problem(response, 403, "insufficient_scope")
            except AssertionError as error:
                failures.append(f"{where}: expected 403 insufficient_scope, got {response.status_code}: {error}")
    assert not failures, f"{len(failures)} of {len(routes)} routes wrong:\n" + "\n".join(failures)


async def test_no_key_listing_shows_a_secret(world: World) -> None:
    listed = await world.http.get("/v1/keys", params={"limit": 100}, headers=world.headers[ADMIN])
    assert listed.status_code == 200, listed.text
    keys = listed.json()["data"]
    assert {key["name"] for key in keys} >= {
        "test-admin",
        "matrix-resolve",
        "matrix-read",
        "matrix-write",
        "matrix-withdrawn",
        "matrix-lapsed",
    }
    assert all(key["secret"] is None for key in keys), keys
    every_secret = [
        header["Authorization"].removeprefix("Bearer ")
        for header in world.headers.values()
        if header.get("Authorization", "").startswith("Bearer ")
    ]
    assert not any(secret in listed.text for secret in every_secret)
    one = await world.http.get("/v1/keys/matrix-read", headers=world.headers[ADMIN])
    assert one.status_code == 200 and one.json()["secret"] is None


async def test_the_matrix_changed_nothing(world: World) -> None:
    """Sending every request with every credential leaves agents, revisions and keys as
    they were (so the admin baselines above are the same for every credential)."""
    admin = world.headers[ADMIN]

    async def snapshot() -> list[Any]:
        agent = world.read_params["agent"]
        return [
            (await world.http.get(path, headers=admin)).json()
            for path in (
                "/v1/agents",
                f"/v1/agents/{agent}/variants",
                f"/v1/agents/{agent}/revisions",
                f"/v1/agents/{agent}/experiments",
                "/v1/environments",
                "/v1/keys",
            )
        ]

    def without_use(pages: list[Any]) -> list[Any]:
        for key in pages[-1]["data"]:
            key.pop("last_used_at")
        return pages

    before = without_use(await snapshot())
    for credential in CREDENTIALS:
        for method, template in app_routes(world.app):
            if method != "GET":
                await send(world, method, template, credential)
    assert without_use(await snapshot()) == before


async def test_a_root_path_does_not_open_the_api(db) -> None:
    """Behind a proxy that mounts the service under a prefix (ASGI `root_path`), the path
    the gate sees includes the prefix; the rules must still apply to the routed path."""
    app = create_app(settings_for_tests(), database=db)
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as anonymous:
        listed = await anonymous.get("/api/v1/keys")
        assert listed.status_code == 401, listed.text
        created = await anonymous.post("/api/v1/keys", json={"name": "pwned", "scope": "admin"})
        assert created.status_code == 401, created.text
        assert (await anonymous.get("/api/healthz")).status_code == 200
