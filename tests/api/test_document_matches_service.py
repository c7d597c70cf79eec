"""The OpenAPI document says what the service accepts (issue 16, item 16): each mismatch
schemathesis found (ST202, a schema-valid request rejected) and fixed has a test here, on
both sides: what the document says, and what the service does with such a request. (`48.0`
for an integer is still open: see tests/api/test_schemathesis.py.)

- `after` cursors: the document gives each list's id pattern; a value outside it is 422.
- Strings the database stores: the document forbids NUL, as the service does.
- The outcomes body: one outcome, or `{"data": [...]}`, as a `oneOf` (`{}` is neither).
- `expires_at`: the description says it must be in the future (422 otherwise).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema_rs
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.api.app import create_app
from services.api.db import Database
from services.shared.identifiers import new_id
from tests.helpers import assert_problem, create_agent, problem_params, settings_for_tests

LISTS = {
    "/v1/agents": "agent",
    "/v1/agents/{agent}/variants": "variant",
    "/v1/agents/{agent}/revisions": "revision",
    "/v1/agents/{agent}/experiments": "experiment",
    "/v1/keys": "api_key",
    "/v1/environments": "environment",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    engine = create_async_engine("postgresql+asyncpg://unset/unset", poolclass=NullPool)
    return create_app(settings_for_tests(), database=Database(engine=engine)).openapi()


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema` that resolves the document's `$ref`s."""
    return jsonschema_rs.validator_for({**schema, "components": document["components"]})


def request_schema(document: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def after_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    (parameter,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "after"]
    return parameter["schema"]


@pytest.mark.parametrize("path", sorted(LISTS))
def test_a_cursor_is_documented_with_its_lists_id_pattern(document, path):
    check = validator(document, after_schema(document, path))
    assert check.is_valid(new_id(LISTS[path]))
    others = [kind for kind in set(LISTS.values()) if kind != LISTS[path]]
    for value in ["", "0.1.0", "sqlstate", "\x1c", new_id(others[0]), new_id(LISTS[path]).lower()]:
        assert not check.is_valid(value), value


@pytest.mark.parametrize("value", ["", "0.1.0", "var_01J", "agt_01JDZQ3V8X000000000000000"])
async def test_a_cursor_outside_the_pattern_is_422_invalid_cursor(client, document, value):
    response = await client.get("/v1/agents", params={"after": value})
    assert_problem(response, 422, "invalid_cursor")
    assert not validator(document, after_schema(document, "/v1/agents")).is_valid(value)


async def test_nul_is_refused_by_the_document_and_the_service(client, document):
    agent = await create_agent(client)
    outcome = {"variant_id": None, "input_tokens": 1, "output_tokens": 1, "latency_ms": 1.0, "subject": "u\x001"}
    assert not validator(document, request_schema(document, "/v1/agents/{agent}/outcomes")).is_valid(outcome)
    response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json=outcome)
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"subject"}
    assert validator(document, request_schema(document, "/v1/agents/{agent}/outcomes")).is_valid(
        {**outcome, "subject": "u-1 é"}
    )


def test_the_outcomes_body_is_one_outcome_or_a_batch(document):
    schema = request_schema(document, "/v1/agents/{agent}/outcomes")
    assert len(schema["oneOf"]) == 2
    check = validator(document, schema)
    one = {"variant_id": new_id("variant"), "input_tokens": 1, "output_tokens": 1, "latency_ms": 1.0}
    assert check.is_valid(one)
    assert check.is_valid({"data": [one, {**one, "variant_id": None}]})
    for body in [{}, {"data": []}, {"data": [one], **one}, {**one, "variant_id": "var_1"}, {"data": [{}]}]:
        assert not check.is_valid(body), body


@pytest.mark.parametrize("body", [{}, {"data": []}, {"data": [{"variant_id": "var_1"}]}])
async def test_a_body_outside_the_outcomes_schema_is_422(client, body):
    agent = await create_agent(client)
    response = await client.post(f"/v1/agents/{agent['id']}/outcomes", json=body)
    assert_problem(response, 422, "validation_error")


async def test_a_past_expires_at_is_documented_and_422(client: httpx.AsyncClient, document):
    schema = document["components"]["schemas"]["KeyCreate"]["properties"]["expires_at"]
    assert re.search(r"in the future \(else 422\)", schema["description"])
    assert "422" in document["paths"]["/v1/keys"]["post"]["responses"]
    response = await client.post(
        "/v1/keys", json={"name": "past", "scope": "read", "expires_at": "2000-01-01T00:00:00Z"}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"expires_at"}
