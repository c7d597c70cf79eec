"""The rule set's request body (`services/api/rules/schemas.py`), ahead of its route: every bad
field is named by its path in one 422, as the rest of the API reports them. No database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError

from services.api import errors
from services.api.rules.schemas import MAX_CONDITIONS, MAX_RULES, MAX_VALUES, RuleSetReplace
from services.api.strict import StrictRoute
from services.shared.identifiers import new_id
from tests.helpers import assert_problem

VARIANT_ID = "var_01JDQ3W5A7C9E1G3J5K7M9P1R3"


def a_rule(name: str = "pro", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "when": [{"attribute": "plan", "op": "eq", "value": "pro"}],
        "serve": {"variant": "base"},
    } | fields


def with_condition(**condition: Any) -> dict[str, Any]:
    return {"rules": [a_rule(when=[{"attribute": "x"} | condition])]}


def bad(body: Any) -> dict[str, str]:
    """Each bad field's path and message, as the API's 422 lists them."""
    with pytest.raises(ValidationError) as caught:
        RuleSetReplace.model_validate(body)
    return {e.param: e.message for e in errors.field_errors(caught.value.errors())}


def ok(body: Any) -> RuleSetReplace:
    return RuleSetReplace.model_validate(body)


# ------------------------------------------------------------------------------ valid bodies


def test_a_valid_set() -> None:
    rule_id = new_id("rule")
    body = {
        "rules": [
            a_rule("by id", id=rule_id, serve={"variant": VARIANT_ID}),
            a_rule("by slug", serve={"variant": "concise"}),
            a_rule(
                "every op",
                when=[
                    {"attribute": "subject", "op": "starts_with", "value": "user-"},
                    {"attribute": "plan", "op": "in", "values": ["pro", 3, True]},
                    {"attribute": "plan", "op": "not_in", "values": ["free"]},
                    {"attribute": "a.b_c-D9", "op": "neq", "value": False},
                    {"attribute": "seats", "op": "gte", "value": 10},
                    {"attribute": "seats", "op": "lt", "value": 1.5e3},
                    {"attribute": "email", "op": "contains", "value": ""},
                    {"attribute": "email", "op": "ends_with", "value": "@acme.com"},
                    {"attribute": "beta", "op": "exists"},
                    {"attribute": "legacy", "op": "not_exists", "value": None, "values": None},  # null = absent
                ],
            ),
        ]
    }
    parsed = ok(body)
    assert [r.name for r in parsed.rules] == ["by id", "by slug", "every op"]
    assert parsed.rules[0].id == rule_id and parsed.rules[1].id is None
    assert parsed.rules[2].when[1].values == ["pro", 3, True]
    assert parsed.rules[2].when[4].value == 10 and type(parsed.rules[2].when[4].value) is int  # not coerced
    assert ok({"rules": []}).rules == []


def test_the_largest_set() -> None:
    when = [{"attribute": f"a{i}", "op": "in", "values": list(range(MAX_VALUES))} for i in range(MAX_CONDITIONS)]
    ok({"rules": [a_rule(f"r{i}", when=when) for i in range(MAX_RULES)]})


# ------------------------------------------------------------------------------ limits


def test_limits() -> None:
    assert bad({"rules": [a_rule(f"r{i}") for i in range(MAX_RULES + 1)]}) == {
        "rules": "List should have at most 50 items after validation, not 51"
    }
    too_many = [{"attribute": "a", "op": "exists"}] * (MAX_CONDITIONS + 1)
    assert set(bad({"rules": [a_rule(when=too_many)]})) == {"rules[0].when"}
    assert set(bad({"rules": [a_rule(when=[])]})) == {"rules[0].when"}
    assert set(bad(with_condition(op="in", values=list(range(MAX_VALUES + 1))))) == {"rules[0].when[0].values"}
    assert set(bad(with_condition(op="in", values=[]))) == {"rules[0].when[0].values"}
    assert set(bad({"rules": [a_rule("x" * 129)]})) == {"rules[0].name"}
    assert set(bad({"rules": [a_rule("")]})) == {"rules[0].name"}
    ok({"rules": [a_rule("x" * 128)]})
    assert set(bad(with_condition(op="eq", value="v" * 1025))) == {"rules[0].when[0].value"}
    ok(with_condition(op="eq", value="v" * 1024))


@pytest.mark.parametrize("attribute", ["", "a" * 65, "a b", "plan!", "é", "a\n", "a/b", 5, None])
def test_bad_attribute_names(attribute: Any) -> None:
    body = {"rules": [a_rule(when=[{"attribute": attribute, "op": "exists"}])]}
    assert set(bad(body)) == {"rules[0].when[0].attribute"}


@pytest.mark.parametrize("attribute", ["a", "A" * 64, "subject", "user.plan", "x-y_z.0", "-", "."])
def test_good_attribute_names(attribute: str) -> None:
    ok({"rules": [a_rule(when=[{"attribute": attribute, "op": "exists"}])]})


# ------------------------------------------------------------------------------ per op


@pytest.mark.parametrize("op", ["eq", "neq"])
@pytest.mark.parametrize("value", ["pro", "", "42", 42, -0.5, True, False, 0])
def test_eq_takes_any_value(op: str, value: Any) -> None:
    ok(with_condition(op=op, value=value))


@pytest.mark.parametrize("op", ["contains", "starts_with", "ends_with"])
def test_string_ops_take_a_string(op: str) -> None:
    ok(with_condition(op=op, value="a"))
    for value in (1, 1.5, True):
        assert bad(with_condition(op=op, value=value)) == {"rules[0].when[0].value": f"must be a string for {op}"}


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
def test_ordering_ops_take_a_number(op: str) -> None:
    for value in (1, -1.5, 0, 1e308):
        ok(with_condition(op=op, value=value))
    for value in ("10", True, False):
        assert set(bad(with_condition(op=op, value=value))) == {"rules[0].when[0].value"}


@pytest.mark.parametrize("op", ["eq", "neq", "contains", "starts_with", "ends_with", "gt", "gte", "lt", "lte"])
def test_value_required(op: str) -> None:
    assert set(bad(with_condition(op=op))) == {"rules[0].when[0].value"}
    assert set(bad(with_condition(op=op, value=None))) == {"rules[0].when[0].value"}
    assert set(bad(with_condition(op=op, value=1, values=[1]))) >= {"rules[0].when[0].values"}


@pytest.mark.parametrize("op", ["in", "not_in"])
def test_list_ops_take_values(op: str) -> None:
    ok(with_condition(op=op, values=["a", 1, 2.5, False]))
    assert set(bad(with_condition(op=op))) == {"rules[0].when[0].values"}
    assert set(bad(with_condition(op=op, value="a"))) == {"rules[0].when[0].value", "rules[0].when[0].values"}
    assert set(bad(with_condition(op=op, values="a"))) == {"rules[0].when[0].values"}


@pytest.mark.parametrize("op", ["exists", "not_exists"])
def test_presence_ops_take_nothing(op: str) -> None:
    ok(with_condition(op=op))
    assert bad(with_condition(op=op, value=True)) == {"rules[0].when[0].value": f"{op} takes no value"}
    assert set(bad(with_condition(op=op, values=[1]))) == {"rules[0].when[0].values"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, None),
        ([1], "must be a string, a number or a boolean"),
        ({"a": 1}, "must be a string, a number or a boolean"),
        (float("inf"), "must be a finite number"),
        (float("nan"), "must be a finite number"),
        (10**400, "must be a number a double holds (|x| < 1.8e308)"),
        ("a\x00b", "must not contain NUL (\\u0000) characters"),
        ("\ud800", "Input should be a valid string, unable to parse raw data as a unicode string"),
    ],
)
def test_what_a_value_may_be(value: Any, message: str | None) -> None:
    if value is None:  # in a list, null is no value
        assert set(bad(with_condition(op="in", values=["a", value]))) == {"rules[0].when[0].values[1]"}
        return
    assert bad(with_condition(op="eq", value=value)) == {"rules[0].when[0].value": message}
    assert bad(with_condition(op="in", values=["a", value])) == {"rules[0].when[0].values[1]": message}


def test_an_unknown_op_is_named_and_the_rest_still_checked() -> None:
    body = {"rules": [a_rule(when=[{"attribute": "a b", "op": "matches", "value": ".*"}])]}
    assert set(bad(body)) == {"rules[0].when[0].attribute", "rules[0].when[0].op"}


def test_unknown_fields() -> None:
    found = bad({"rules": [a_rule(priority=1, when=[{"attribute": "a", "op": "exists", "regex": "x"}])], "x": 1})
    assert found == {
        "rules[0].priority": "Unknown field",
        "rules[0].when[0].regex": "Unknown field",
        "x": "Unknown field",
    }
    assert bad({}) == {"rules": "Field required"}


# ------------------------------------------------------------------------------ ids, names, serve


@pytest.mark.parametrize(
    "rule_id", ["rul_x", "var_01JDQ3W5A7C9E1G3J5K7M9P1R3", "rul_01jdq3w5a7c9e1g3j5k7m9p1r3", 5, ""]
)
def test_ids_must_be_rule_ids(rule_id: Any) -> None:
    assert set(bad({"rules": [a_rule(id=rule_id)]})) == {"rules[0].id"}


def test_names_and_ids_are_distinct_in_a_set() -> None:
    same = new_id("rule")
    found = bad({"rules": [a_rule("a", id=same), a_rule("b"), a_rule("a"), a_rule("c", id=same), a_rule("b")]})
    assert found == {
        "rules[2].name": "already the name of rules[0]: a set's rules have distinct names",
        "rules[3].id": "already the id of rules[0]: a set's rules have distinct ids",
        "rules[4].name": "already the name of rules[1]: a set's rules have distinct names",
    }
    ok({"rules": [a_rule("a"), a_rule("A"), a_rule("a ")]})  # names compare exactly


@pytest.mark.parametrize("variant", ["base", "concise", VARIANT_ID, "a" * 64])
def test_serve_names_base_or_a_variant(variant: str) -> None:
    ok({"rules": [a_rule(serve={"variant": variant})]})


@pytest.mark.parametrize(
    "variant", ["live", "Concise", "a b", "var_x", "agt_01JDQ3V0Y8K2M4N6P8R0S2T4V6", "", "a" * 65, 5]
)
def test_serve_refuses_anything_else(variant: Any) -> None:
    assert set(bad({"rules": [a_rule(serve={"variant": variant})]})) == {"rules[0].serve.variant"}
    assert set(bad({"rules": [a_rule(serve={})]})) == {"rules[0].serve.variant"}


def test_every_bad_field_at_once() -> None:
    """Repeated names are reported with the other errors, not only once the rest is valid."""
    body = {
        "rules": [
            a_rule("dup"),
            a_rule(
                "dup",
                id="rul_bad",
                when=[
                    {"attribute": "seats", "op": "gt", "value": "10"},
                    {"attribute": "plan", "op": "in", "values": ["a", {}]},
                    {"attribute": "beta", "op": "exists", "value": 1},
                ],
                serve={"variant": "live"},
            ),
            a_rule("ok"),
            a_rule("x", when=[{"attribute": "subject", "op": "eq"}]),
        ]
    }
    assert list(bad(body)) == [
        "rules[1].id",
        "rules[1].name",
        "rules[1].when[0].value",
        "rules[1].when[1].values[1]",
        "rules[1].when[2].value",
        "rules[1].serve.variant",
        "rules[3].when[0].value",
    ]


# ------------------------------------------------------------------------------ over HTTP


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A throwaway app: the body on a PUT route of the API's own route class and error handlers."""
    app = FastAPI()
    errors.install(app)
    router = APIRouter(route_class=StrictRoute)

    @router.put("/v1/agents/{agent}/rules")
    async def put_rules(agent: str, body: RuleSetReplace) -> dict[str, Any]:
        return {"agent": agent, "rules": len(body.rules)}

    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_one_422_names_every_bad_field(http: httpx.AsyncClient) -> None:
    body = {
        "rules": [
            a_rule("a"),
            a_rule("a", when=[{"attribute": "seats", "op": "gte", "value": True}, {"attribute": "x", "op": "in"}]),
            a_rule("b", when=[a_rule()["when"][0], {"attribute": "plan", "op": "eq", "value": [1]}]),
        ]
    }
    response = await http.put("/v1/agents/support-bot/rules", json=body)
    problem = assert_problem(response, 422, "validation_error")
    assert [e["param"] for e in problem["errors"]] == [
        "rules[1].name",
        "rules[1].when[0].value",
        "rules[1].when[1].values",
        "rules[2].when[1].value",
    ]
    assert "rules[1].when[0].value: must be a number for gte" in problem["detail"]
    ok_response = await http.put("/v1/agents/support-bot/rules", json={"rules": [a_rule()]})
    assert ok_response.status_code == 200 and ok_response.json() == {"agent": "support-bot", "rules": 1}


async def test_json_numbers_arrive_as_sent(http: httpx.AsyncClient) -> None:
    """1e400 in JSON is infinity to the parser, and a 400-digit integer an int: both are refused."""
    big = (
        '{"rules": [{"name": "n", "when": [{"attribute": "a", "op": "gt", "value": 1%s}], "serve": {"variant": "b"}}]}'
    )
    for digits in ("e400", "0" * 400):
        response = await http.put(
            "/v1/agents/a/rules", content=big % digits, headers={"content-type": "application/json"}
        )
        assert_problem(response, 422, "validation_error")
        assert [e["param"] for e in response.json()["errors"]] == ["rules[0].when[0].value"]
