"""Schemathesis over /openapi.json: no input gives a 5xx or a reply its own schema forbids.

The app runs on the live database with real commits. Schemathesis calls it through its own
ASGI client, on an event loop of its own in another thread, so the app's engine uses
NullPool: no connection outlives the loop that opened it.

Every check schemathesis offers runs (the stateful, auth and coverage-phase ones find
little to check in these cases). Among them `negative_data_rejection`: a request the schema
forbids is never accepted (2xx); and `positive_data_acceptance`: a request the schema allows
gets 2xx or a status the contract gives valid input (`accepted_statuses`: 304, 404, 409,
429, 412 where the operation takes If-Match, 422 only where a rule the schema cannot state
decides, `CROSS_FIELD_RULES`). JSON Schema's `integer` holds `48.0`, and so does the
service (schemas.integer: 48.0 is 48, 48.5 a 422). The document states what the service
checks (ids' patterns, no NUL, the outcomes body's two shapes):
tests/api/test_document_matches_service.py holds each. Lone surrogates (which
JSON can spell and PostgreSQL cannot store, 422) have no portable pattern; generated
strings hold none.

Path parameters are sometimes swapped for the ids and slugs of a seeded agent and
environment, so the operations are exercised on real resources, not only on 404s.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config._checks import PositiveDataAcceptanceConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    object_level_authorization,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from starlette.responses import JSONResponse

from services.api.app import create_app
from services.api.db import Database
from tests.helpers import config, create_agent, create_variant, settings_for_tests

pytestmark = pytest.mark.live


# What the contract lets a valid request get besides 2xx: 304 (If-None-Match), 404 (an
# unknown agent, variant, ... or a body field naming one), 409 (a state conflict, as an
# idempotency key in flight), 429; 412 where the operation takes If-Match.
ACCEPTED = ["2xx", "304", "404", "409", "429"]
# 422 for a valid request, where a rule the schema cannot state decides, by operation.
TOKEN_RULE = "the token rule: input_token_limit + max_tokens <= context_window, resolved"
CROSS_FIELD_RULES: dict[str, str] = {
    "GET /v1/agents/{agent}/resolved": "at most one of variant, subject and at",
    "POST /v1/agents": TOKEN_RULE,
    "PATCH /v1/agents/{agent}": TOKEN_RULE,
    "POST /v1/agents/{agent}/variants": TOKEN_RULE,
    "PATCH /v1/agents/{agent}/variants/{variant}": TOKEN_RULE,
    "POST /v1/keys": "expires_at in the future, which depends on the clock",
    "POST /v1/environments": "a name that gives no slug (`!!!`) needs an explicit slug",
    "POST /v1/agents/{agent}/outcomes": "an item's environment must exist (422 naming `data[i].environment`)",
    "POST /v1/agents/{agent}/render": "the variables the resolved config declares (missing, unknown, typed)",
    "POST /v1/agents/{agent}/experiments": "an experiment's arms or a rollout's variant and steps, the steps rising to "
    "100, each guardrail's metric once",
    "PATCH /v1/agents/{agent}/experiments/{experiment}": "a rollout's steps rising to 100, each guardrail's metric "
    "once, and rollout fields only on a rollout",
    "POST /v1/webhooks": "the URL's host resolves to a public address (private, loopback, link-local are refused)",
    "PATCH /v1/webhooks/{webhook}": "the URL's host resolves to a public address (private, loopback, link-local are "
    "refused)",
    "PUT /v1/agents/{agent}/rules": "rules' names and ids distinct, each condition's value as its op needs, and "
    + TOKEN_RULE
    + " on what each rule serves",
}


def accepted_statuses(operation: Any) -> list[str]:
    headers = {parameter.name.lower() for parameter in operation.headers}
    return [
        *ACCEPTED,
        *(["412"] if "if-match" in headers else []),
        *(["422"] if operation.label in CROSS_FIELD_RULES else []),
    ]


def positive_data_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """`positive_data_acceptance` with the statuses the contract allows this operation."""
    config = copy.copy(ctx.config)
    config.positive_data_acceptance = PositiveDataAcceptanceConfig(expected_statuses=accepted_statuses(case.operation))
    original, ctx.config = ctx.config, config
    try:
        return positive_data_acceptance(ctx, response, case)
    finally:
        ctx.config = original


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    use_after_free,
    ensure_resource_availability,
    missing_required_header,
    ignored_auth,
    object_level_authorization,
    unsupported_method,
    allow_header_conformance,
    positive_data_accepted,
]


@pytest.fixture
async def seeded(live_client: httpx.AsyncClient, live_url: str) -> AsyncIterator[dict[str, Any]]:
    """An agent with three variants, one active, and an environment; after the run, every
    agent and environment the run made (seeded or generated) is deleted, and the model
    catalog is put back as it was (the run creates, patches and deletes catalog models in
    the worker's database, which later tests price outcomes with)."""
    engine = create_async_engine(live_url, poolclass=NullPool)
    catalog = await engine.connect()  # one connection for the run: its temporary table lives as long
    try:
        await catalog.execute(text("CREATE TEMPORARY TABLE catalog_before AS SELECT * FROM models"))
        await catalog.commit()
        async with engine.connect() as conn:
            before = set(await conn.scalars(text("SELECT id FROM agents")))
            environments_before = set(await conn.scalars(text("SELECT id FROM environments")))
        agent = await create_agent(live_client, config=config(context_window=8192, max_tokens=512))
        variants = [
            await create_variant(live_client, agent["id"], overrides={"temperature": 0.2}),
            await create_variant(live_client, agent["id"], clone_from="base"),
            await create_variant(live_client, agent["id"], overrides={"system_prompt": "Be brief."}),
        ]
        response = await live_client.post(f"/v1/agents/{agent['id']}/variants/{variants[0]['id']}/activate")
        assert response.status_code == 200, response.text
        response = await live_client.post("/v1/environments", json={"name": "Schemathesis"})
        assert response.status_code == 201, response.text
        yield {"agent": agent, "variants": variants, "environment": response.json()}
        async with engine.connect() as conn:
            made = set(await conn.scalars(text("SELECT id FROM agents"))) - before
            environments_made = set(await conn.scalars(text("SELECT id FROM environments"))) - environments_before
        for agent_id in made:
            assert (await live_client.delete(f"/v1/agents/{agent_id}")).status_code == 204
        for environment_id in environments_made:  # at most 100: leave room for the next test
            assert (await live_client.delete(f"/v1/environments/{environment_id}")).status_code == 204
        await catalog.execute(text("DELETE FROM models"))
        await catalog.execute(text("INSERT INTO models SELECT * FROM catalog_before"))
        await catalog.commit()
    finally:
        await catalog.close()
        await engine.dispose()


# The app is built once, at import, so schemathesis can make one test per operation; its
# database is the live one, set by `live_app` below (an engine connects only when used).
app = create_app(
    settings_for_tests(),
    database=Database(engine=create_async_engine("postgresql+asyncpg://unset/unset", poolclass=NullPool)),
)


def without_security(document: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    document.get("components", {}).pop("securitySchemes", None)
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    return document


async def as_admin(scope: Any, receive: Any, send: Any) -> None:
    """The app as a client holding the running test's admin key sees it. Access control
    has tests of its own; left to schemathesis, it would make up keys from the security
    scheme and mix "no key" into cases that are meant to fail for other reasons."""
    if scope["type"] == "http":
        if scope["path"] == "/openapi.json":
            await JSONResponse(without_security(app.openapi()))(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        scope = {**scope, "headers": [*headers, (b"authorization", AUTH["Authorization"].encode())]}
    await app(scope, receive, send)


schema = schemathesis.openapi.from_asgi("/openapi.json", as_admin)
# The seeded resources of the running test, for `flatmap_path_parameters`.
KNOWN: dict[str, list[str]] = {}
# The running test's admin key, sent with every generated request.
AUTH: dict[str, str] = {}


@pytest.fixture(autouse=True)
async def live_app(seeded: dict[str, Any], live_url: str, live_key: str) -> AsyncIterator[None]:
    database = Database(engine=create_async_engine(live_url, poolclass=NullPool))
    previous, app.state.db = app.state.db, database
    agent, variants = seeded["agent"], seeded["variants"]
    AUTH["Authorization"] = f"Bearer {live_key}"
    app.state.key_ring.invalidate()  # the key was made through another app: reload
    KNOWN["agent"] = [agent["id"], agent["slug"]]
    KNOWN["variant"] = [v["id"] for v in variants] + [v["slug"] for v in variants]
    KNOWN["environment"] = [seeded["environment"]["id"], seeded["environment"]["slug"]]
    try:
        yield
    finally:
        KNOWN.clear()
        AUTH.clear()
        app.state.db = previous
        await database.dispose()


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the time, point `{agent}`, `{variant}` and `{environment}` at the seeded ones."""
    operation = context.operation
    # Deleting the seeded agent or variants early would leave the rest nothing to work on.
    if not path_parameters or operation is None or operation.method.upper() == "DELETE" or not KNOWN:
        return st.just(path_parameters)
    known = {name: st.sampled_from(KNOWN[name]) for name in path_parameters if name in KNOWN}
    if not known:
        return st.just(path_parameters)
    seeded = st.fixed_dictionaries({**{k: st.just(v) for k, v in path_parameters.items()}, **known})
    return st.one_of(st.just(path_parameters), seeded)


# One pytest test per operation, with its own id: schemathesis' own `parametrize` gives
# every case the same node id, which pytest-xdist's scheduler collapses into one.
# The watch stream never ends and the in-process transport waits for the whole body, so
# it is left out here; tests/system/test_watch.py drives it against real servers.
STREAMS = {"GET /v1/agents/{agent}/bundle/watch"}
OPERATIONS = {op.label: op for op in (result.ok() for result in schema.get_all_operations()) if op.label not in STREAMS}


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_conforms_to_its_openapi(label: str) -> None:
    operation = OPERATIONS[label]

    # Valid requests and requests the schema forbids (which must never be accepted).
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        # The admin key opens every route: the cases reach the routes, not the gate.
        assert response.status_code not in (401, 403), response.text

    run()
