"""The SDK's `config.render(**variables)` and the service's `POST .../render` answer alike:
the same text, or the same refusal (code and every param named), for random templates,
declarations and values. The SDK renders the config the service sent with the answer."""

from __future__ import annotations

from typing import Any

import httpx
from agent_variants.bundles import to_config
from agent_variants.errors import RenderFailed
from agent_variants.templates import TemplateError, placeholders
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import config, unique

NAMES = ["tone", "n", "x", "flag"]
_pieces = st.sampled_from(["{{tone}}", "{{ n }}", "{{x}}", "{{flag}}", "{", "}", '{"a": 1}', " ", "text", "é"])
_templates = st.lists(_pieces, max_size=8).map("".join)
_values = st.one_of(
    st.text(max_size=5),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


def valid(template: str) -> bool:
    try:
        placeholders(template)
    except TemplateError:
        return False
    return True


_typed = {
    "string": st.text(max_size=5),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6),
    "integer": st.integers(-(10**6), 10**6) | st.integers(-100, 100).map(float),
    "boolean": st.booleans(),
}


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Declared variables and the values a render gets: mostly well typed, sometimes
    missing, mistyped or undeclared, so every outcome comes up."""
    declared, values = {}, {}
    for name in NAMES:
        kind = draw(st.sampled_from(sorted(_typed)))
        spec: dict[str, Any] = {"type": kind}
        choice = draw(st.sampled_from(["required", "optional", "default"]))
        if choice == "optional":
            spec["required"] = False
        elif choice == "default":
            spec["default"] = {"string": "d", "number": 0.25, "integer": 3, "boolean": True}[kind]
        declared[name] = spec
        given = draw(st.sampled_from(["typed"] * 6 + ["absent", "any"]))
        if given == "typed":
            values[name] = draw(_typed[kind])
        elif given == "any":
            values[name] = draw(_values)
    if draw(st.integers(0, 9)) == 0:
        values["other"] = draw(_values)
    return declared, values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    system=_templates,
    user=_templates,
    case=cases(),
)
async def test_the_sdk_and_the_service_render_alike(
    client: httpx.AsyncClient, system: str, user: str, case: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    declared, given_values = case
    created = await client.post(
        "/v1/agents",
        json={
            "name": unique("render"),
            "config": config(system_prompt=system, user_prompt_template=user, variables=declared),
        },
    )
    if created.status_code == 422:  # `{{{tone}}`: no config holds it, and the SDK reads it alike
        assert created.json()["code"] == "invalid_template"
        assert not (valid(system) and valid(user))
        event("invalid template")
        return
    assert created.status_code == 201, created.text
    agent = created.json()
    resolved = await client.get(f"/v1/agents/{agent['id']}/resolved")
    local = to_config(resolved.json())
    served = await client.post(f"/v1/agents/{agent['id']}/render", json={"variables": given_values})
    try:
        rendered = local.render(**given_values)
    except RenderFailed as refused:
        assert served.status_code == 422, served.text
        body = served.json()
        assert body["code"] == refused.code
        assert [(error["param"], error["message"]) for error in body["errors"]] == [
            (error["param"], error["message"]) for error in refused.errors
        ]
        event(f"refused: {refused.code}")
        return
    assert served.status_code == 200, served.text
    assert (served.json()["system"], served.json()["user"]) == (rendered.system, rendered.user)
    event("rendered")
