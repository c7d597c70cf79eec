"""Prompt templates (contract 1.1, "The config an agent really runs with"): placeholders
and rendering, one implementation (`agent_variants.templates`, re-exported by
`services.shared.templates`) for the service and every SDK."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.shared import templates
from services.shared.templates import (
    TemplateError,
    number_text,
    placeholders,
    render,
    render_prompt,
    value_text,
    variable_names,
)

# What ECMAScript's Number::toString (node's String(x)) writes for each double, recorded from
# node 2026-12-06; 20,010 random doubles matched it the same day (a one-off check: the suite
# needs no JavaScript engine).
JAVASCRIPT = [
    (1, "1"),
    (-1, "-1"),
    (0.5, "0.5"),
    (1e-07, "1e-7"),
    (1e-06, "0.000001"),
    (1.2e-06, "0.0000012"),
    (1e-05, "0.00001"),
    (0.000123, "0.000123"),
    (1e20, "100000000000000000000"),
    (1e21, "1e+21"),
    (1.5e21, "1.5e+21"),
    (1.2345678901234568e20, "123456789012345680000"),
    (9007199254740992, "9007199254740992"),
    (9007199254740993, "9007199254740992"),
    (9223372036854775808, "9223372036854776000"),
    (1000000000000000000000, "1e+21"),
    (0.30000000000000004, "0.30000000000000004"),
    (100, "100"),
    (1.25, "1.25"),
    (-1.5, "-1.5"),
    (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (3.14159, "3.14159"),
    (1e100, "1e+100"),
    (1.23e-100, "1.23e-100"),
    (4.35, "4.35"),
    (0.07, "0.07"),
    (12345.6789, "12345.6789"),
    (0.3333333333333333, "0.3333333333333333"),
    (0.6666666666666666, "0.6666666666666666"),
]


@pytest.mark.parametrize(("value", "text"), JAVASCRIPT)
def test_numbers_render_as_ecmascript_writes_them(value: int | float, text: str) -> None:
    assert number_text(value) == text


def test_negative_zero_and_booleans() -> None:
    assert (number_text(-0.0), value_text(True), value_text(False), value_text("x")) == ("0", "true", "false", "x")
    with pytest.raises(ValueError):
        number_text(math.inf)


# The grammar of Number::toString's output: an integer part without leading zeros, a
# fraction without trailing zeros, or one digit (with a fraction) and a signed exponent.
_ECMASCRIPT_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?|-?[1-9](\.[0-9]*[1-9])?e[+-][1-9][0-9]*")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_reads_back_as_itself_in_the_shortest_form(value: float) -> None:
    text = number_text(value)
    assert _ECMASCRIPT_NUMBER.fullmatch(text), text
    assert float(text) == value  # round trip (-0 reads back as 0, which equals it)
    # Shortest: one significant digit fewer no longer reads back as the same double.
    digits = re.sub(r"e.*|[-.]", "", text).strip("0")
    if len(digits) > 1 and value != 0:
        assert float(f"{value:.{len(digits) - 2}e}") != value


# Literal text between placeholders: braces anywhere, but no `{{`, and no `{` at the end
# (it would make `{{{` with the placeholder after it, which is invalid).
literal = st.text(st.sampled_from('ab {}"\n:é'), max_size=20).filter(lambda s: "{{" not in s and not s.endswith("{"))
name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
value = st.one_of(
    st.text(max_size=10), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False)
)


@given(
    st.lists(st.tuples(literal, name, st.sampled_from(["", " ", "  "]), st.sampled_from(["", " "]))), literal, st.data()
)
def test_render_replaces_each_placeholder_and_keeps_everything_else(parts, tail, data) -> None:
    values = {n: data.draw(value) for _, n, _, _ in parts}
    template = "".join(f"{text}{{{{{left}{n}{right}}}}}" for text, n, left, right in parts) + tail
    expected = "".join(text + value_text(values[n]) for text, n, _, _ in parts) + tail
    assert render(template, values) == expected
    assert variable_names(template) == list(dict.fromkeys(n for _, n, _, _ in parts))


def test_json_in_a_prompt_needs_no_escaping() -> None:
    prompt = 'Answer as {"a": 1, "b": {"c": [1, 2]}} for {{ user }}; {not a placeholder}} {{'
    assert variable_names(prompt) == ["user"]
    assert render(prompt, {"user": "ann"}) == 'Answer as {"a": 1, "b": {"c": [1, 2]}} for ann; {not a placeholder}} {{'
    assert render('{"a": 1}', {}) == '{"a": 1}'


@pytest.mark.parametrize(
    ("template", "position", "inside"),
    [
        ("Hi {{a.b}}", 3, "a.b"),
        ("{{ 0 }}", 0, " 0 "),
        ("x {{}} y", 2, ""),
        ("{{\tname}}", 0, "\tname"),
        ("{{{name}}}", 0, "{name"),
        ("ok {{a}} then {{b-c}}", 14, "b-c"),
        ("{{" + "a" * 65 + "}}", 0, "a" * 65),
    ],
)
def test_a_double_brace_that_opens_no_placeholder_is_invalid(template: str, position: int, inside: str) -> None:
    with pytest.raises(TemplateError) as raised:
        placeholders(template)
    assert (raised.value.position, raised.value.text) == (position, inside)


def test_a_missing_value_names_the_variable() -> None:
    with pytest.raises(KeyError, match="tone"):
        render("Be {{tone}}", {})
    assert templates.is_variable_name("tone") and not templates.is_variable_name("0tone")


DECLARED = {
    "tone": {"type": "string"},
    "seats": {"type": "integer", "default": 1},
    "ratio": {"type": "number", "required": False},
    "beta": {"type": "boolean"},
}


def test_render_prompt_fills_defaults_and_renders_both_templates() -> None:
    rendered = render_prompt(
        {"system": "Be {{tone}} for {{ seats }} seats{{ratio}}.", "user": 'beta={{beta}} {"json": true}'},
        DECLARED,
        {"tone": "warm", "beta": False},
    )
    assert rendered == {"system": "Be warm for 1 seats.", "user": 'beta=false {"json": true}'}
    given = {"tone": "", "beta": True, "seats": 40.0, "ratio": 0.5}
    assert render_prompt({"s": "{{seats}}/{{ratio}}"}, DECLARED, given) == {"s": "40/0.5"}


def test_every_bad_variable_is_named_with_the_first_kind_as_the_code() -> None:
    with pytest.raises(templates.RenderError) as raised:
        templates.resolve_variables(DECLARED, {"seats": 1.5, "mood": "x"})
    assert raised.value.code == "missing_variable"
    assert sorted(raised.value.errors) == [
        ("variables.beta", "required, and has no default"),
        ("variables.mood", "not a declared variable"),
        ("variables.seats", "must be a whole number"),
        ("variables.tone", "required, and has no default"),
    ]
    given = {"tone": "x", "beta": True}
    for name, wrong in (("tone", 1), ("beta", "true"), ("seats", True), ("ratio", "0.5"), ("ratio", math.nan)):
        with pytest.raises(templates.RenderError) as raised:
            templates.resolve_variables(DECLARED, {**given, name: wrong})
        assert raised.value.code == "validation_error" and [p for p, _ in raised.value.errors] == [f"variables.{name}"]
    with pytest.raises(templates.RenderError) as raised:
        templates.resolve_variables(DECLARED, {**given, "extra": 1})
    unknown = [("variables.extra", "not a declared variable")]
    assert (raised.value.code, raised.value.errors) == ("unknown_variable", unknown)
