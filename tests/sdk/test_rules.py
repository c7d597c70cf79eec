"""Targeting-rule evaluation (`agent_variants.rules.first_match`): every op on every value and
attribute type, missing attributes, numeric strings, booleans vs numbers, first-match order,
the largest rule set, and properties that tie the ops together. No database."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
from agent_variants import first_match as exported
from agent_variants.rules import OPS, Scalar, first_match, is_numeric_string
from hypothesis import given, settings
from hypothesis import strategies as st

from services.shared import rules as shared_rules

Context = Mapping[str, Scalar]


def rule(*conditions: dict[str, Any], name: str = "r", variant: str = "base") -> dict[str, Any]:
    return {"id": f"rul_{name}", "name": name, "when": list(conditions), "serve": {"variant": variant}}


def cond(attribute: str, op: str, value: Any = None, *, values: list[Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"attribute": attribute, "op": op}
    if value is not None:
        out["value"] = value
    if values is not None:
        out["values"] = values
    return out


def holds(condition: dict[str, Any], attributes: Context | None = None, *, subject: str | None = None) -> bool:
    """Whether one condition holds, through the one public function."""
    return first_match([rule(condition)], subject=subject, attributes=attributes) is not None


def test_one_definition_shared_with_the_service() -> None:
    assert shared_rules.first_match is first_match is exported


# ------------------------------------------------------------------------------ numeric strings


@pytest.mark.parametrize(
    "text",
    ["0", "-0", "1", "-1", "10", "123456789", "0.5", "-0.5", "1.0", "1.50", "1e3", "1E3", "1e+3", "1e-3", "-2.5E-07",
     "0e0", "1e400", "1e-400", "9" * 400, "1.000000000000000000001"],
)  # fmt: skip
def test_numeric_strings(text: str) -> None:
    assert is_numeric_string(text)


@pytest.mark.parametrize(
    "text",
    ["", "+1", " 1", "1 ", "1\n", "\n1", "01", "-01", "00", "1.", ".5", "-", "1e", "1e+", "e3", "1.5.2", "1_000",
     "1,5", "inf", "-inf", "Infinity", "nan", "NaN", "0x10", "١", "１", "1e3.5", "--1", "- 1", "1e3e3", "true"],
)  # fmt: skip
def test_not_numeric_strings(text: str) -> None:
    assert not is_numeric_string(text)
    # ... so a number never equals or orders them, whatever float() would make of them.
    for op in ("eq", "gt", "gte", "lt", "lte"):
        assert not holds(cond("x", op, 1), {"x": text})
        assert not holds(cond("x", op, 0), {"x": text})


def test_numeric_strings_compare_as_doubles() -> None:
    assert holds(cond("x", "eq", 1), {"x": "1.0"})
    assert holds(cond("x", "eq", 1), {"x": "1e0"})
    assert holds(cond("x", "eq", 1000), {"x": "1E+3"})
    assert holds(cond("x", "eq", 0.001), {"x": "1e-3"})
    assert holds(cond("x", "eq", 0.1), {"x": "0.1"})
    assert not holds(cond("x", "eq", 0.1 + 0.2), {"x": "0.3"})  # 0.30000000000000004 is another double
    assert holds(cond("x", "eq", 0.1 + 0.2), {"x": "0.30000000000000004"})
    assert holds(cond("x", "gt", 9), {"x": "10"})  # numerically, not as text ("10" < "9")
    assert holds(cond("x", "lt", 10), {"x": "9.99"})


def test_overflow_and_underflow_follow_ieee() -> None:
    """Decimal to double rounds to nearest: beyond the largest double is infinity, below the
    smallest subnormal is zero (signed)."""
    big = {"x": "1e400"}
    assert holds(cond("x", "gt", 1.7976931348623157e308), big)
    assert holds(cond("x", "gte", 1e308), big)
    assert not holds(cond("x", "eq", 1.7976931348623157e308), big)
    assert holds(cond("x", "lt", -1e308), {"x": "-1e400"})
    assert holds(cond("x", "eq", 0), {"x": "1e-400"})
    assert holds(cond("x", "eq", 0), {"x": "-1e-400"})
    # Integers too large for a double are infinity too (Python's float() would raise).
    assert holds(cond("x", "gt", 1e308), {"x": 10**400})
    assert holds(cond("x", "lt", -1e308), {"x": -(10**400)})
    assert holds(cond("x", "eq", 1e308), {"x": 10**308})
    assert holds(cond("x", "eq", 10**400), {"x": "1e400"})  # an int value past a double: infinity


def test_signed_zero_and_int_float() -> None:
    for zero in ("-0", "-0.0", "0", "0.0", "0e5", "-0e-5", 0, 0.0, -0.0):
        assert holds(cond("x", "eq", 0), {"x": zero}), zero
        assert holds(cond("x", "eq", -0.0), {"x": zero}), zero
        assert not holds(cond("x", "gt", 0), {"x": zero}) and not holds(cond("x", "lt", 0), {"x": zero})
    assert holds(cond("x", "eq", 1), {"x": 1.0})
    assert holds(cond("x", "eq", 1.0), {"x": 1})
    # Compared as doubles, not as exact integers: 2**53 + 1 rounds to 2**53.
    assert holds(cond("x", "eq", 2**53), {"x": 2**53 + 1})
    assert holds(cond("x", "eq", 2**53 + 1), {"x": "9007199254740992"})


def test_nan_equals_nothing_and_orders_nothing() -> None:
    nan = {"x": math.nan}
    for op in ("eq", "gt", "gte", "lt", "lte"):
        assert not holds(cond("x", op, 0), nan)
        assert not holds(cond("x", op, math.nan), nan)
    assert holds(cond("x", "neq", 0), nan)
    assert not holds(cond("x", "in", values=[math.nan, 0]), nan)
    assert holds(cond("x", "not_in", values=[math.nan]), nan)
    assert holds(cond("x", "exists"), nan)


def test_infinite_attributes_order_as_ieee() -> None:
    assert holds(cond("x", "gt", 1e308), {"x": math.inf})
    assert holds(cond("x", "eq", 10**400), {"x": math.inf})
    assert holds(cond("x", "lt", -1e308), {"x": -math.inf})


# ------------------------------------------------------------------------------ eq by value type


def test_eq_number_value() -> None:
    assert holds(cond("x", "eq", 42), {"x": 42})
    assert holds(cond("x", "eq", 42), {"x": 42.0})
    assert holds(cond("x", "eq", 42), {"x": "42"})
    assert holds(cond("x", "eq", 42.5), {"x": "42.5"})
    assert not holds(cond("x", "eq", 42), {"x": 43})
    assert not holds(cond("x", "eq", 42), {"x": "042"})
    assert not holds(cond("x", "eq", 42), {"x": "forty-two"})


def test_booleans_are_not_numbers() -> None:
    # Python's True == 1 must not leak into the semantics, in either direction.
    for op in ("eq", "gt", "gte", "lt", "lte"):
        assert not holds(cond("x", op, 1), {"x": True})
        assert not holds(cond("x", op, 0), {"x": False})
    assert not holds(cond("x", "eq", 1.0), {"x": True})
    assert not holds(cond("x", "eq", True), {"x": 1})
    assert not holds(cond("x", "eq", False), {"x": 0})
    assert not holds(cond("x", "eq", True), {"x": "1"})
    assert not holds(cond("x", "eq", False), {"x": 0.0})
    assert not holds(cond("x", "in", values=[1]), {"x": True})
    assert not holds(cond("x", "in", values=[True]), {"x": 1})
    assert holds(cond("x", "neq", 1), {"x": True})
    assert holds(cond("x", "not_in", values=[1, 0]), {"x": True})
    # gt with a boolean value is no comparison at all
    assert not holds(cond("x", "gt", False), {"x": 5})
    assert not holds(cond("x", "lte", True), {"x": 0})


def test_eq_boolean_value() -> None:
    assert holds(cond("x", "eq", True), {"x": True})
    assert holds(cond("x", "eq", False), {"x": False})
    assert holds(cond("x", "eq", True), {"x": "true"})
    assert holds(cond("x", "eq", False), {"x": "false"})
    assert not holds(cond("x", "eq", True), {"x": False})
    assert not holds(cond("x", "eq", True), {"x": "false"})
    for spelling in ("True", "TRUE", "1", "yes", " true", "true "):
        assert not holds(cond("x", "eq", True), {"x": spelling}), spelling


def test_eq_string_value() -> None:
    assert holds(cond("x", "eq", "pro"), {"x": "pro"})
    assert not holds(cond("x", "eq", "pro"), {"x": "Pro"})
    assert holds(cond("x", "eq", ""), {"x": ""})
    # identical string only: a numeric or boolean string value is still a string
    assert not holds(cond("x", "eq", "42"), {"x": 42})
    assert holds(cond("x", "eq", "42"), {"x": "42"})
    assert not holds(cond("x", "eq", "42"), {"x": "42.0"})
    assert not holds(cond("x", "eq", "true"), {"x": True})
    assert holds(cond("x", "eq", "true"), {"x": "true"})
    # no normalisation: é precomposed vs e + combining accent are different strings
    assert not holds(cond("x", "eq", "\u00e9"), {"x": "e\u0301"})


def test_neq_is_eq_negated_on_present_attributes() -> None:
    assert holds(cond("x", "neq", "pro"), {"x": "free"})
    assert not holds(cond("x", "neq", "pro"), {"x": "pro"})
    assert holds(cond("x", "neq", 5), {"x": "five"})
    assert not holds(cond("x", "neq", 5), {"x": "5.0"})
    assert not holds(cond("x", "neq", True), {"x": "true"})
    assert holds(cond("x", "neq", "5"), {"x": 5})


def test_in_and_not_in() -> None:
    c = cond("plan", "in", values=["pro", "enterprise"])
    assert holds(c, {"plan": "pro"}) and holds(c, {"plan": "enterprise"}) and not holds(c, {"plan": "free"})
    mixed = cond("x", "in", values=["a", 3, False])
    assert holds(mixed, {"x": "a"}) and holds(mixed, {"x": "3.0"}) and holds(mixed, {"x": 3})
    assert holds(mixed, {"x": "false"}) and holds(mixed, {"x": False})
    assert not holds(mixed, {"x": 0}) and not holds(mixed, {"x": True})
    n = cond("plan", "not_in", values=["pro", "enterprise"])
    assert holds(n, {"plan": "free"}) and not holds(n, {"plan": "pro"})
    assert not holds(n, {})  # missing: false
    assert not holds(c, {})


def test_string_ops() -> None:
    a = {"email": "Ada@Example.com"}
    assert holds(cond("email", "contains", "@Example"), a)
    assert not holds(cond("email", "contains", "@example"), a)  # case-sensitive
    assert holds(cond("email", "starts_with", "Ada"), a) and not holds(cond("email", "starts_with", "ada"), a)
    assert holds(cond("email", "ends_with", ".com"), a) and not holds(cond("email", "ends_with", ".COM"), a)
    assert holds(cond("email", "contains", ""), a)  # every string contains the empty one
    # string value, string attribute: a number attribute is not its decimal text
    assert not holds(cond("x", "contains", "4"), {"x": 42})
    assert not holds(cond("x", "starts_with", "t"), {"x": True})
    assert holds(cond("x", "starts_with", "4"), {"x": "42"})
    # a value of another type is no match
    assert not holds(cond("x", "contains", 4), {"x": "42"})
    assert not holds(cond("x", "ends_with", True), {"x": "true"})


def test_ordering_ops() -> None:
    for attribute in (40, 40.0, "40", "4e1", "40.000"):
        ctx = {"seats": attribute}
        assert holds(cond("seats", "gt", 39), ctx) and not holds(cond("seats", "gt", 40), ctx)
        assert holds(cond("seats", "gte", 40), ctx) and not holds(cond("seats", "gte", 40.5), ctx)
        assert holds(cond("seats", "lt", 40.5), ctx) and not holds(cond("seats", "lt", 40), ctx)
        assert holds(cond("seats", "lte", 40), ctx) and not holds(cond("seats", "lte", 39.99), ctx)
    # the value must be a number: a numeric string value compares nothing
    assert not holds(cond("seats", "gt", "10"), {"seats": 40})
    assert not holds(cond("seats", "gt", 10), {"seats": "forty"})
    assert not holds(cond("seats", "gt", -1), {"seats": ""})


def test_exists_and_not_exists() -> None:
    for value in ("", "x", 0, 0.0, False, True, "false"):
        assert holds(cond("x", "exists"), {"x": value})
        assert not holds(cond("x", "not_exists"), {"x": value})
    assert not holds(cond("x", "exists"), {})
    assert holds(cond("x", "not_exists"), {})


@pytest.mark.parametrize("op", OPS)
def test_every_op_but_not_exists_is_false_on_a_missing_attribute(op: str) -> None:
    condition = cond("x", op, "a", values=["a"]) if op in ("in", "not_in") else cond("x", op, 1)
    assert holds(condition, {"y": 1}) is (op == "not_exists")
    assert holds(condition, None) is (op == "not_exists")


def test_unknown_op_and_malformed_conditions_are_false() -> None:
    ctx = {"x": "a"}
    assert not holds(cond("x", "matches", "a"), ctx)
    assert not holds(cond("x", "EQ", "a"), ctx)
    assert holds(cond("x", "matches", "a") | {"op": "not_exists"}, {})
    assert not holds(cond("x", "eq"), ctx)  # eq without a value
    assert not holds(cond("x", "neq"), ctx)  # ... and its negation is no match either
    assert not holds(cond("x", "neq", None), ctx)
    assert not holds({"attribute": "x", "op": "neq", "value": ["a"]}, ctx)
    assert not holds(cond("x", "in", values=[]), ctx) and not holds(cond("x", "not_in", values=[]), ctx)
    assert not holds({"attribute": "x", "op": "in", "values": "a"}, ctx)  # a string is not a list of values
    assert not holds({"attribute": "x", "op": "not_in", "values": "b"}, ctx)
    assert not holds({"op": "exists"}, ctx)  # no attribute named: missing
    assert holds({"op": "not_exists"}, ctx)
    # a rule without conditions never holds
    assert first_match([rule()], attributes=ctx) is None
    assert first_match([{"id": "rul_x", "name": "n", "serve": {"variant": "base"}}], attributes=ctx) is None


# ------------------------------------------------------------------------------ the subject


def test_subject_is_the_attribute_subject() -> None:
    assert holds(cond("subject", "eq", "u1"), subject="u1")
    assert holds(cond("subject", "exists"), subject="")
    assert not holds(cond("subject", "exists"))
    assert holds(cond("subject", "not_exists"))
    assert holds(cond("subject", "eq", 42), subject="42")  # a numeric subject compares as a number
    assert holds(cond("subject", "starts_with", "user-"), {"plan": "pro"}, subject="user-7")


def test_subject_cannot_be_an_attribute() -> None:
    with pytest.raises(ValueError, match="subject"):
        first_match([rule(cond("subject", "exists"))], attributes={"subject": "u1"})
    with pytest.raises(ValueError, match="subject"):
        first_match([], subject="u1", attributes={"subject": "u1"})


@pytest.mark.parametrize("bad", [None, [1], {"a": 1}, b"x", object()])
def test_an_attribute_must_be_a_scalar(bad: Any) -> None:
    with pytest.raises(ValueError, match="string, a number or a boolean"):
        first_match([], attributes={"x": bad})


def test_subject_and_names_must_be_strings() -> None:
    with pytest.raises(ValueError):
        first_match([], subject=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        first_match([], attributes={1: "a"})  # type: ignore[dict-item]


# ------------------------------------------------------------------------------ rule sets


def test_first_match_in_order() -> None:
    rules = [
        rule(cond("plan", "eq", "enterprise"), name="ent", variant="big"),
        rule(cond("plan", "in", values=["pro", "enterprise"]), name="paid", variant="mid"),
        rule(cond("seats", "gte", 10), cond("plan", "eq", "pro"), name="big-pro", variant="never"),
        rule(cond("plan", "exists"), name="anyone", variant="small"),
    ]
    assert first_match(rules, attributes={"plan": "enterprise"}) is rules[0]
    assert first_match(rules, attributes={"plan": "pro", "seats": 40}) is rules[1]
    assert first_match(rules, attributes={"plan": "free"}) is rules[3]
    assert first_match(rules, attributes={}) is None
    assert first_match(rules) is None
    assert first_match([], subject="u", attributes={"plan": "pro"}) is None


def test_all_conditions_must_hold() -> None:
    r = rule(cond("plan", "eq", "pro"), cond("seats", "gt", 10), cond("beta", "eq", True))
    assert first_match([r], attributes={"plan": "pro", "seats": "11", "beta": "true"}) is r
    assert first_match([r], attributes={"plan": "pro", "seats": "11", "beta": False}) is None
    assert first_match([r], attributes={"plan": "pro", "seats": "11"}) is None


def test_the_largest_rule_set_evaluates() -> None:
    """50 rules of 20 conditions, each `in` with 1,000 values, where every rule fails only at its
    last condition and the last rule holds: the worst case the API lets be written."""
    values = [f"v{i}" for i in range(999)] + ["hit"]
    conditions = [cond(f"a{j}", "in", values=values) for j in range(19)]
    rules = [rule(*conditions, cond("last", "eq", i), name=f"r{i}") for i in range(50)]
    ctx: dict[str, Scalar] = {f"a{j}": "hit" for j in range(19)} | {"last": 49}
    assert first_match(rules, attributes=ctx) is rules[49]
    ctx["last"] = 50
    assert first_match(rules, attributes=ctx) is None


def test_pure_the_inputs_are_untouched() -> None:
    rules = [rule(cond("x", "in", values=[1, "2"]), cond("subject", "exists"))]
    attributes: dict[str, Scalar] = {"x": "2"}
    before = repr(rules), repr(attributes)
    assert first_match(rules, subject="s", attributes=attributes) is rules[0]
    assert first_match(tuple(rules), subject="s", attributes=attributes) is rules[0]
    assert (repr(rules), repr(attributes)) == before


# ------------------------------------------------------------------------------ properties

NAMES = ("a", "b", "subject")
numbers = st.one_of(
    st.integers(min_value=-(2**60), max_value=2**60), st.floats(allow_nan=True), st.sampled_from([0, -0.0, 1, 1.0])
)
numeric_strings = st.from_regex(r"\A-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?\Z")
strings = st.one_of(
    numeric_strings, st.sampled_from(["", "true", "false", "pro", "1", "01", "+1", " 1"]), st.text(max_size=5)
)
scalars: st.SearchStrategy[Scalar] = st.one_of(st.booleans(), numbers, strings)
attribute_maps = st.dictionaries(st.sampled_from(("a", "b")), scalars, max_size=2)
subjects = st.one_of(st.none(), strings)


def _condition(op: str, value: Scalar, values: list[Scalar], name: str) -> dict[str, Any]:
    if op in ("in", "not_in"):
        return {"attribute": name, "op": op, "values": values}
    if op in ("exists", "not_exists"):
        return {"attribute": name, "op": op}
    return {"attribute": name, "op": op, "value": value}


conditions = st.builds(
    _condition, st.sampled_from(OPS), scalars, st.lists(scalars, min_size=1, max_size=4), st.sampled_from(NAMES)
)
rule_lists = st.lists(
    st.builds(lambda when, i: rule(*when, name=f"r{i}"), st.lists(conditions, min_size=1, max_size=3), st.integers()),
    max_size=6,
)


@settings(max_examples=300)
@given(st.sampled_from(("a", "subject")), scalars, scalars, strings)
def test_neq_is_not_eq_on_present_attributes(name: str, value: Scalar, attribute: Scalar, subject: str) -> None:
    attributes = {"a": attribute}
    eq = holds(cond(name, "eq", value), attributes, subject=subject)
    assert holds(cond(name, "neq", value), attributes, subject=subject) is not eq


@settings(max_examples=300)
@given(st.lists(scalars, min_size=1, max_size=6), scalars)
def test_in_is_any_eq_and_not_in_its_negation(values: list[Scalar], attribute: Scalar) -> None:
    ctx = {"x": attribute}
    any_eq = any(holds(cond("x", "eq", v), ctx) for v in values)
    assert holds(cond("x", "in", values=values), ctx) is any_eq
    assert holds(cond("x", "not_in", values=values), ctx) is not any_eq


@settings(max_examples=300)
@given(scalars, scalars)
def test_number_eq_agrees_with_doubles(value: Scalar, attribute: Scalar) -> None:
    """eq with a number value is equality of doubles, against a number or numeric string only."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(attribute, bool):
        expected = False
    elif isinstance(attribute, int | float):
        expected = float(attribute) == float(value)
    else:
        expected = is_numeric_string(attribute) and float(attribute) == float(value)
    assert holds(cond("x", "eq", value), {"x": attribute}) is expected


@settings(max_examples=300)
@given(scalars, st.sampled_from(("gt", "gte", "lt", "lte")), numbers)
def test_ordering_partitions_like_doubles(attribute: Scalar, op: str, value: float) -> None:
    ctx = {"x": attribute}
    gt, eq, lt = (holds(cond("x", o, value), ctx) for o in ("gt", "eq", "lt"))
    assert holds(cond("x", "gte", value), ctx) is (gt or eq)
    assert holds(cond("x", "lte", value), ctx) is (lt or eq)
    comparable = not isinstance(attribute, bool) and (not isinstance(attribute, str) or is_numeric_string(attribute))
    if comparable and not math.isnan(float(attribute)) and not math.isnan(value):
        assert [gt, eq, lt].count(True) == 1  # exactly one of them, as for doubles
    else:
        assert not gt and not lt


@settings(max_examples=300)
@given(rule_lists, subjects, attribute_maps)
def test_a_set_is_its_rules_one_by_one_in_order(
    rules: list[dict[str, Any]], subject: str | None, attributes: dict[str, Scalar]
) -> None:
    expected = next((r for r in rules if first_match([r], subject=subject, attributes=attributes) is r), None)
    assert first_match(rules, subject=subject, attributes=attributes) is expected
    # ... and a rule holds when every one of its conditions holds alone
    for r in rules:
        alone = all(holds(c, attributes, subject=subject) for c in r["when"])
        assert (first_match([r], subject=subject, attributes=attributes) is r) is alone
    # deterministic: the same answer again
    assert first_match(rules, subject=subject, attributes=attributes) is expected


@settings(max_examples=200)
@given(conditions, st.sampled_from(("a", "subject")), attribute_maps)
def test_on_a_missing_attribute_only_not_exists_holds(
    condition: dict[str, Any], name: str, attributes: dict[str, Scalar]
) -> None:
    condition = condition | {"attribute": "missing"}
    assert holds(condition, attributes) is (condition["op"] == "not_exists")
