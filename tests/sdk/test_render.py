"""`config.render(**variables)` (contract 1.1, **Render**): the one implementation
(`templates.render_prompt`) applied to a config's two templates and its declared variables,
its refusals raised as the SDK raises the service's 422s (`RenderFailed`, a `ValidationFailed`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from agent_variants import RenderedPrompt, RenderFailed, ResolvedAgentConfig, ValidationFailed
from agent_variants.templates import RenderError, TemplateError, render_prompt, value_text, variable_names
from hypothesis import event, given, settings
from hypothesis import strategies as st

BASE = ResolvedAgentConfig(
    agent_id="agt_1",
    variant_id=None,
    model_provider="openai",
    model_name="gpt-4o",
    system_prompt="",
    user_prompt_template="",
    prompt_version="",
    temperature=1.0,
    max_tokens=1024,
    context_window=0,
    input_token_limit=0,
    token_budget=0,
    timeout_seconds=60,
    max_retries=2,
)


def config(system: str = "", user: str = "", variables: dict[str, Any] | None = None) -> ResolvedAgentConfig:
    return dataclasses.replace(BASE, system_prompt=system, user_prompt_template=user, variables=variables or {})


def refusal(config: ResolvedAgentConfig, **given: Any) -> RenderFailed:
    with pytest.raises(RenderFailed) as caught:
        config.render(**given)
    return caught.value


def test_render_fills_the_declared_variables_and_defaults() -> None:
    support = config(
        'You are {{ tone }} support for {{product}}. Reply as JSON: {"answer": "..."}',
        "{{question}} (plan: {{plan}}, seats: {{seats}}, beta: {{beta}}, ratio: {{ratio}})",
        {
            "tone": {"type": "string", "default": "friendly"},
            "product": {"type": "string"},
            "question": {"type": "string", "description": "the user's words"},
            "plan": {"type": "string", "required": False},
            "seats": {"type": "integer"},
            "beta": {"type": "boolean", "default": False},
            "ratio": {"type": "number", "default": 1e-7},
        },
    )
    rendered = support.render(product="Acme", question="Where is my order?", seats=40.0)
    assert rendered == RenderedPrompt(
        system='You are friendly support for Acme. Reply as JSON: {"answer": "..."}',
        user="Where is my order? (plan: , seats: 40, beta: false, ratio: 1e-7)",
    )
    assert support.render(tone="terse", product="A", question="q", seats=1, beta=True, plan="pro").system.startswith(
        "You are terse support for A."
    )


def test_json_and_single_braces_render_unchanged() -> None:
    for text in ['{"a": 1}', '{"a": {"b": [1, {"c": 2}]}}', "{", "}", "{x}", "{{ no close", "}}{{"]:
        assert config(text, text).render() == RenderedPrompt(text, text)


def test_a_variable_named_self_is_a_variable() -> None:
    assert config("{{self}}", variables={"self": {"type": "string"}}).render(self="me").system == "me"


def test_a_missing_required_variable_is_missing_variable() -> None:
    error = refusal(config("{{a}} {{b}}", variables={"a": {"type": "string"}, "b": {"type": "string"}}), a="x")
    assert isinstance(error, ValidationFailed)
    assert (error.code, error.status) == ("missing_variable", 422)
    assert error.errors == [{"param": "variables.b", "message": "required, and has no default"}]
    assert error.problem["type"].endswith("/missing_variable") and error.problem["status"] == 422


def test_every_bad_variable_is_named_and_the_code_is_the_first_kind() -> None:
    declared = {"a": {"type": "string"}, "n": {"type": "integer"}}
    error = refusal(config("{{a}}{{n}}", variables=declared), n="40", extra=1)
    assert error.code == "missing_variable"
    assert {e["param"] for e in error.errors} == {"variables.a", "variables.n", "variables.extra"}
    assert refusal(config("{{n}}", variables={"n": {"type": "integer"}}), n=1, extra=1).code == "unknown_variable"
    wrong = refusal(config("{{n}}", variables={"n": {"type": "integer"}}), n=True)
    assert (wrong.code, wrong.errors) == (
        "validation_error",
        [{"param": "variables.n", "message": "must be an integer"}],
    )


def test_a_config_the_service_would_not_serve_is_refused_naming_the_field() -> None:
    """Built by hand, or from a service older than contract 1.1 (no `variables`)."""
    undeclared = refusal(config("Hi {{name}}", "{{q}}"))
    assert undeclared.code == "undeclared_variable"
    assert [e["param"] for e in undeclared.errors] == ["system_prompt", "user_prompt_template"]
    invalid = refusal(config("{{a.b}}", "{{q}}"))
    assert invalid.code == "invalid_template"
    assert [e["param"] for e in invalid.errors] == ["system_prompt", "user_prompt_template"]


# Templates: text with braces of every kind around placeholders; some come out invalid
# (`{` then `{{a}}` reads as `{{{a}}`), and those must be refused as such.
NAMES = st.sampled_from(["a", "b", "tone", "_x", "Q1"])
SPACES = st.sampled_from(["", " ", "  "])
PLACEHOLDER = st.builds(lambda name, left, right: "{{" + left + name + right + "}}", NAMES, SPACES, SPACES)
TEXT = st.sampled_from(['{"a": 1}', "{", "}", "{x}", " ", "text", "}}", '{"k": {"n": [1]}}', "é", "\n"])
TEMPLATE = st.lists(st.one_of(PLACEHOLDER, TEXT), max_size=8).map("".join)
VALUE = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
)
SPEC = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "number", "integer", "boolean"])},
    optional={"required": st.booleans(), "default": VALUE, "description": st.text(max_size=5)},
)


OF_TYPE = {
    "string": st.text(max_size=8),
    "boolean": st.booleans(),
    "integer": st.one_of(st.integers(-(2**60), 2**60), st.integers(-99, 99).map(float)),
    "number": st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False)),
}


@settings(max_examples=400, deadline=None)
@given(system=TEMPLATE, user=TEMPLATE, extra=st.dictionaries(NAMES, SPEC, max_size=3), data=st.data())
def test_render_is_render_prompt(system: str, user: str, extra: dict[str, Any], data: st.DataObject) -> None:
    """Whatever the templates, declarations and values, `config.render` answers what
    `render_prompt` does: the same text, or the same refusal. Every placeholder is declared
    (the service refuses to serve a config otherwise), and some other variables too; most
    values are of their declared type, some are not, some are left out or undeclared."""
    try:
        used = variable_names(system) + variable_names(user)
    except TemplateError:
        event("invalid_template")
        assert refusal(config(system, user)).code == "invalid_template"
        return
    declared = {name: data.draw(SPEC, label=name) for name in used} | extra
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        how = data.draw(st.sampled_from(["typed"] * 6 + ["left out"] * 3 + ["any"]), label=f"{name} is")
        if how != "left out":
            values[name] = data.draw(OF_TYPE[spec["type"]] if how == "typed" else VALUE, label=name)
    values |= data.draw(st.dictionaries(st.sampled_from(["other", "zz"]), VALUE, max_size=1), label="undeclared")
    subject = config(system, user, declared)
    try:
        expected = render_prompt({"system": system, "user": user}, declared, values)
    except RenderError as error:
        event(error.code)
        failed = refusal(subject, **values)
        assert failed.code == error.code
        assert failed.errors == [{"param": param, "message": message} for param, message in error.errors]
        assert all(e["param"].startswith("variables.") for e in failed.errors)
    else:
        event("rendered")
        assert subject.render(**values) == RenderedPrompt(expected["system"], expected["user"])


@given(text=st.text(alphabet=st.sampled_from('{}[]":, ab1\n'), max_size=40).filter(lambda t: "{{" not in t))
def test_text_without_placeholders_renders_as_itself(text: str) -> None:
    assert config(text, text).render() == RenderedPrompt(text, text)


@given(default=VALUE, kind=st.sampled_from(["string", "number", "integer", "boolean"]))
def test_defaults_fill_what_is_left_out(default: Any, kind: str) -> None:
    rendered = config("{{v}}", "[{{v}}]", {"v": {"type": kind, "default": default}}).render()
    assert rendered == RenderedPrompt(value_text(default), f"[{value_text(default)}]")


@given(spec=SPEC.filter(lambda spec: spec.get("required", True) and "default" not in spec))
def test_a_required_variable_left_out_is_missing(spec: dict[str, Any]) -> None:
    error = refusal(config("{{v}}", "", {"v": spec}))
    assert (error.code, error.errors[0]["param"]) == ("missing_variable", "variables.v")
