"""Contract 1.1's keyed fields (`params`, `tools`, `variables`) through the real app: how
they resolve, what is refused (every rejection names its path and writes nothing), the
variables inferred on create, `params_schema`, provenance, diffs and time travel."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.shared.agent_config import resolve_agent_config
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params

SEARCH = {
    "description": "Search the help center.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}
LOOKUP = {"description": "Look an order up.", "parameters": {"type": "object"}, "strict": True}


async def state(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    """Everything a refused write must leave as it was."""
    agent = await client.get(f"/v1/agents/{agent_id}")
    variants = await client.get(f"/v1/agents/{agent_id}/variants", params={"limit": 100})
    revisions = await client.get(f"/v1/agents/{agent_id}/revisions", params={"limit": 100})
    assert agent.status_code == variants.status_code == revisions.status_code == 200
    return {"agent": agent.json(), "variants": variants.json(), "revisions": revisions.json()["data"]}


async def activate(client: httpx.AsyncClient, agent_id: str, variant_id: str) -> None:
    response = await client.post(f"/v1/agents/{agent_id}/variants/{variant_id}/activate")
    assert response.status_code == 200, response.text


async def resolved(client: httpx.AsyncClient, agent_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent_id}/resolved", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_variant_replaces_entries_by_key_unsets_params_and_disables_tools(client: httpx.AsyncClient) -> None:
    agent = await create_agent(
        client,
        config=config(
            params={"top_p": 0.9, "seed": 7, "response_format": {"type": "json_object"}},
            tools={"search": SEARCH, "lookup": LOOKUP},
        ),
    )
    assert agent["config"]["params"] == {"top_p": 0.9, "seed": 7, "response_format": {"type": "json_object"}}
    narrower = {"description": "Search the FAQ only.", "parameters": {"type": "object"}}
    variant = await create_variant(
        client,
        agent["id"],
        overrides={
            "params": {"seed": 8, "reasoning_effort": "high"},
            "params_unset": ["top_p"],
            "tools": {"search": narrower, "lookup": {"disabled": True}},
        },
    )
    assert variant["overrides"]["params_unset"] == ["top_p"]
    await activate(client, agent["id"], variant["id"])
    body = await resolved(client, agent["id"], explain="true")
    # A variant's entry replaces the base's whole (no deep merge).
    assert body["params"] == {"seed": 8, "response_format": {"type": "json_object"}, "reasoning_effort": "high"}
    assert body["tools"] == {"search": narrower}
    assert body["provenance"]["params.seed"] == "variant"
    assert body["provenance"]["params.response_format"] == "agent"
    assert body["provenance"]["params.reasoning_effort"] == "variant"
    assert body["provenance"]["tools.search"] == "variant"
    assert "params.top_p" not in body["provenance"] and "tools.lookup" not in body["provenance"]

    # In a PATCH, null removes the override of that key: the base's applies again.
    patched = await client.patch(
        f"/v1/agents/{agent['id']}/variants/{variant['id']}",
        json={"overrides": {"params": {"seed": None}, "tools": {"lookup": None}, "params_unset": None}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["overrides"] == {"params": {"reasoning_effort": "high"}, "tools": {"search": narrower}}
    body = await resolved(client, agent["id"])
    assert body["params"] == {
        "top_p": 0.9,
        "seed": 7,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "high",
    }
    assert body["tools"] == {"search": narrower, "lookup": LOOKUP}

    # The diff against the base names each entry that differs.
    diff = (
        await client.get(f"/v1/agents/{agent['id']}/variants/{variant['id']}/diff", params={"against": "base"})
    ).json()
    assert {change["field"]: (change["from"], change["to"]) for change in diff["changes"]} == {
        "params.reasoning_effort": (None, "high"),
        "tools.search": (SEARCH, narrower),
    }


async def test_time_travel_answers_the_keyed_fields_as_they_were(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(params={"top_p": 0.5}))
    before = (await resolved(client, agent["id"]))["params"]
    revisions = (await client.get(f"/v1/agents/{agent['id']}/revisions")).json()["data"]
    at = revisions[0]["created_at"]
    changed = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"params": {"top_p": 0.1}}})
    assert changed.status_code == 200, changed.text
    assert (await resolved(client, agent["id"]))["params"] == {"top_p": 0.1}
    assert (await resolved(client, agent["id"], at=at))["params"] == before == {"top_p": 0.5}


async def test_an_agent_patch_merges_keyed_fields_key_by_key(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(params={"top_p": 0.9, "seed": 1}, tools={"search": SEARCH}))
    path = f"/v1/agents/{agent['id']}"
    response = await client.patch(path, json={"config": {"params": {"seed": None, "stop": ["\n"]}}})
    assert response.status_code == 200, response.text
    assert response.json()["config"]["params"] == {"top_p": 0.9, "stop": ["\n"]}
    assert response.json()["config"]["tools"] == {"search": SEARCH}
    again = await client.patch(path, json={"config": {"params": {"seed": None, "stop": ["\n"]}}})
    assert again.json()["version"] == response.json()["version"]  # the same patch again changes nothing
    cleared = await client.patch(path, json={"config": {"tools": None}})
    assert cleared.json()["config"]["tools"] == {}


async def test_an_invalid_tool_schema_is_refused_naming_its_path_and_nothing_is_written(
    client: httpx.AsyncClient,
) -> None:
    agent = await create_agent(client, config=config(tools={"search": SEARCH}))
    before = await state(client, agent["id"])
    bad = {"description": "x", "parameters": {"type": "object", "properties": {"q": {"type": "strin"}}}}
    response = await client.post(
        f"/v1/agents/{agent['id']}/variants", json={"variant_name": "v", "overrides": {"tools": {"search": bad}}}
    )
    assert_problem(response, 422, "invalid_schema")
    assert "overrides.tools.search.parameters.properties.q.type" in problem_params(response)
    patch = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"tools": {"other": bad}}})
    assert_problem(patch, 422, "invalid_schema")
    assert "config.tools.other.parameters.properties.q.type" in problem_params(patch)
    assert await state(client, agent["id"]) == before


async def test_shapes_and_limits_are_refused_naming_every_bad_field(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client)
    before = await state(client, agent["id"])
    response = await client.post(
        f"/v1/agents/{agent['id']}/variants",
        json={
            "variant_name": "v",
            "overrides": {
                "params": {f"p{n}": n for n in range(65)},
                "tools": {
                    "bad name": SEARCH,
                    "half": {"disabled": True, "description": "x"},
                    "bare": {"description": "no parameters"},
                },
                "variables": {"1st": {"type": "string"}, "n": {"type": "integer", "default": 1.5}},
            },
        },
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) >= {
        "overrides.tools.bad name",
        "overrides.tools.half",
        "overrides.tools.bare",
        "overrides.variables.1st",
        "overrides.variables.n",
    }
    too_many = await client.post(
        "/v1/agents", json={"name": "many", "config": config(params={f"p{n}": n for n in range(65)})}
    )
    assert_problem(too_many, 422, "validation_error")
    assert problem_params(too_many) == {"config.params"}
    null_param = await client.post("/v1/agents", json={"name": "null", "config": config(params={"top_p": None})})
    assert_problem(null_param, 422, "validation_error")
    nul = await client.post("/v1/agents", json={"name": "nul", "config": config(params={"stop": ["\u0000"]})})
    assert_problem(nul, 422, "validation_error")
    assert await state(client, agent["id"]) == before


async def test_variables_are_inferred_on_create_only(client: httpx.AsyncClient) -> None:
    agent = await create_agent(
        client,
        config=config(system_prompt='Be {{ tone }}. {{tone}} again. JSON: {"a": 1}', user_prompt_template="{{q}}"),
    )
    assert agent["config"]["variables"] == {"tone": {"type": "string"}, "q": {"type": "string"}}
    # Declared explicitly: nothing is inferred, so an undeclared placeholder is refused.
    refused = await client.post(
        "/v1/agents",
        json={
            "name": "explicit",
            "config": config(user_prompt_template="{{q}} {{r}}", variables={"q": {"type": "string"}}),
        },
    )
    assert_problem(refused, 422, "undeclared_variable")
    assert problem_params(refused) == {"config.user_prompt_template"}
    assert "'r'" in refused.json()["detail"]
    # A later write never infers: a new placeholder needs its declaration.
    patch = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": "{{mood}}"}})
    assert_problem(patch, 422, "undeclared_variable")
    assert "'mood'" in patch.json()["errors"][0]["message"]


async def test_a_variant_using_an_undeclared_variable_is_refused_until_the_agent_declares_it(
    client: httpx.AsyncClient,
) -> None:
    agent = await create_agent(client, config=config(system_prompt='Answer in JSON like {"a": 1}.'))
    assert agent["config"]["variables"] == {}
    before = await state(client, agent["id"])
    body = {"variant_name": "toned", "overrides": {"system_prompt": 'Be {{tone}}. Answer in JSON like {"a": 1}.'}}
    refused = await client.post(f"/v1/agents/{agent['id']}/variants", json=body)
    assert_problem(refused, 422, "undeclared_variable")
    assert problem_params(refused) == {"overrides.system_prompt"}
    assert "'tone'" in refused.json()["errors"][0]["message"]
    assert await state(client, agent["id"]) == before

    declared = await client.patch(
        f"/v1/agents/{agent['id']}", json={"config": {"variables": {"tone": {"type": "string"}}}}
    )
    assert declared.status_code == 200, declared.text
    variant = await create_variant(client, agent["id"], **body)
    # Removing the declaration the active variant uses is refused in turn.
    await activate(client, agent["id"], variant["id"])
    removed = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"variables": {"tone": None}}})
    assert_problem(removed, 422, "undeclared_variable")

    render = f"/v1/agents/{agent['id']}/render"
    missing = await client.post(render, json={"variables": {}})
    assert_problem(missing, 422, "missing_variable")
    assert problem_params(missing) == {"variables.tone"}
    ok = await client.post(render, json={"variables": {"tone": "kind"}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["system"] == 'Be kind. Answer in JSON like {"a": 1}.'
    assert ok.json()["config"]["variant_id"] == variant["id"]
    base = await client.post(render, json={"variables": {"tone": "kind"}, "variant": "base"})
    assert base.json()["system"] == 'Answer in JSON like {"a": 1}.'  # JSON needs no escaping


async def test_render_checks_types_applies_defaults_and_refuses_unknown_variables(client: httpx.AsyncClient) -> None:
    variables = {
        "n": {"type": "integer"},
        "x": {"type": "number", "default": 0.5},
        "ok": {"type": "boolean", "required": False},
        "name": {"type": "string"},
    }
    agent = await create_agent(
        client,
        config=config(
            system_prompt="n={{n}} x={{x}} ok={{ok}}", user_prompt_template="Hi {{name}}", variables=variables
        ),
    )
    render = f"/v1/agents/{agent['id']}/render"
    good = await client.post(render, json={"variables": {"n": 40.0, "name": "Ada"}})
    assert good.status_code == 200, good.text
    assert (good.json()["system"], good.json()["user"]) == ("n=40 x=0.5 ok=", "Hi Ada")
    assert good.json()["object"] == "rendered_prompt"
    typed = await client.post(render, json={"variables": {"n": "40", "name": 1, "x": 1e-7, "ok": True}})
    assert_problem(typed, 422, "validation_error")
    assert problem_params(typed) == {"variables.n", "variables.name"}
    unknown = await client.post(render, json={"variables": {"n": 1, "name": "a", "extra": 1}})
    assert_problem(unknown, 422, "unknown_variable")
    assert problem_params(unknown) == {"variables.extra"}
    both = await client.post(render, json={"variables": {}, "variant": "base", "subject": "u1"})
    assert_problem(both, 422, "validation_error")
    assert problem_params(both) == {"variant"}
    numbers = await client.post(render, json={"variables": {"n": 1, "name": "a", "x": 1e-7, "ok": False}})
    assert numbers.json()["system"] == "n=1 x=1e-7 ok=false"
    # A read: the same Idempotency-Key on another body is no conflict.
    for name in ("a", "b"):
        again = await client.post(
            render, json={"variables": {"n": 1, "name": name}}, headers={"Idempotency-Key": "render-key"}
        )
        assert again.status_code == 200 and again.json()["user"] == f"Hi {name}"
        assert "Idempotent-Replayed" not in again.headers


async def test_params_schema_holds_for_every_servable_config(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"top_p": {"type": "number", "maximum": 1}}}
    agent = await create_agent(client, config=config(params={"top_p": 0.5}), params_schema=schema)
    assert agent["params_schema"] == schema
    before = await state(client, agent["id"])
    refused = await client.post(
        f"/v1/agents/{agent['id']}/variants", json={"variant_name": "v", "overrides": {"params": {"top_p": 3}}}
    )
    assert_problem(refused, 422, "validation_error")
    assert problem_params(refused) == {"overrides.params.top_p"}
    base = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"params": {"top_p": 2}}})
    assert_problem(base, 422, "validation_error")
    assert problem_params(base) == {"config.params.top_p"}
    invalid = await client.patch(f"/v1/agents/{agent['id']}", json={"params_schema": {"type": "objekt"}})
    assert_problem(invalid, 422, "invalid_schema")
    assert problem_params(invalid) == {"params_schema.type"}
    assert await state(client, agent["id"]) == before
    # A schema the current config breaks cannot be set either.
    tighter = await client.patch(
        f"/v1/agents/{agent['id']}",
        json={"params_schema": {"type": "object", "properties": {"top_p": {"maximum": 0.1}}}},
    )
    assert_problem(tighter, 422, "validation_error")
    cleared = await client.patch(f"/v1/agents/{agent['id']}", json={"params_schema": None})
    assert cleared.status_code == 200 and cleared.json()["params_schema"] is None


# ---------------------------------------------------------------------------- properties

_text = st.characters(codec="utf-8", exclude_characters="\x00")  # what PostgreSQL stores
_keys = st.sampled_from(["top_p", "seed", "stop", "response_format", "reasoning_effort"])
_values = st.one_of(
    st.integers(-5, 5), st.floats(0, 1), st.text(_text, max_size=4), st.lists(st.text(_text, max_size=3), max_size=2)
)
_tools = st.sampled_from(["search", "lookup", "refund"])
_tool_bodies = st.builds(
    lambda description, strict: (
        {"description": description, "parameters": {"type": "object"}}
        | ({"strict": strict} if strict is not None else {})
    ),
    st.text(_text, max_size=6),
    st.none() | st.booleans(),
)
_base_keyed = st.fixed_dictionaries(
    {"params": st.dictionaries(_keys, _values, max_size=4), "tools": st.dictionaries(_tools, _tool_bodies, max_size=3)}
)
_variant_keyed = st.fixed_dictionaries(
    {},
    optional={
        "params": st.dictionaries(_keys, _values, min_size=1, max_size=3),
        "params_unset": st.lists(_keys, min_size=1, max_size=2, unique=True),
        "tools": st.dictionaries(_tools, _tool_bodies | st.just({"disabled": True}), min_size=1, max_size=3),
    },
)
_patches = st.fixed_dictionaries(
    {},
    optional={
        "params": st.none() | st.dictionaries(_keys, st.none() | _values, max_size=3),
        "params_unset": st.none() | st.lists(_keys, max_size=2, unique=True),
        "tools": st.none()
        | st.dictionaries(_tools, st.none() | _tool_bodies | st.just({"disabled": True}), max_size=2),
    },
)
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def model_resolve(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The contract, written out: key by key, the variant's entry over the base's; params
    it unsets and tools it disables are gone (a param it sets itself stays)."""
    unset = set(overrides.get("params_unset", []))
    params = {k: v for k, v in base["params"].items() if k not in unset}
    params.update(overrides.get("params", {}))
    tools = dict(base["tools"])
    for name, tool in overrides.get("tools", {}).items():
        if tool == {"disabled": True}:
            tools.pop(name, None)
        else:
            tools[name] = tool
    return {"params": params, "tools": tools}


def model_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of a variant's keyed overrides, as the contract says (empty: absent)."""
    merged = {k: (list(v) if k == "params_unset" else dict(v)) for k, v in current.items()}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        elif name == "params_unset":
            merged[name] = list(value)
        else:
            entries = merged.get(name, {})
            for key, entry in value.items():
                if entry is None:
                    entries.pop(key, None)
                else:
                    entries[key] = entry
            merged[name] = entries
        if not merged.get(name):
            merged.pop(name, None)
    return merged


@SETTINGS
@given(base=_base_keyed, overrides=_variant_keyed)
async def test_resolution_of_params_and_tools_is_the_key_by_key_model(client, conn, base, overrides) -> None:
    agent = await create_agent(client, config=config(**base))
    variant = await create_variant(client, agent["id"], overrides=overrides)
    await activate(client, agent["id"], variant["id"])
    expected = model_resolve(base, overrides)
    body = await resolved(client, agent["id"])
    assert {"params": body["params"], "tools": body["tools"]} == expected
    preview = await resolved(client, agent["id"], variant=variant["slug"])
    assert {"params": preview["params"], "tools": preview["tools"]} == expected
    in_process = await resolve_agent_config(conn, agent["id"])  # in-process, the function agents call
    assert {"params": dict(in_process.params), "tools": dict(in_process.tools)} == expected


@SETTINGS
@given(base=_base_keyed, overrides=_variant_keyed, patch=_patches)
async def test_patching_keyed_overrides_twice_equals_once(client, base, overrides, patch) -> None:
    agent = await create_agent(client, config=config(**base))
    variant = await create_variant(client, agent["id"], overrides=overrides)
    path = f"/v1/agents/{agent['id']}/variants/{variant['id']}"
    once = await client.patch(path, json={"overrides": patch})
    assert once.status_code == 200, once.text
    twice = await client.patch(path, json={"overrides": patch})
    assert twice.status_code == 200, twice.text
    assert twice.json() == once.json()  # nothing changed the second time: same version too
    assert once.json()["overrides"] == model_patch(overrides, patch)


async def test_undo_and_restore_bring_the_keyed_fields_back(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(params={"top_p": 0.5}), params_schema={"type": "object"})
    path = f"/v1/agents/{agent['id']}"
    changed = await client.patch(path, json={"config": {"params": {"top_p": 0.1}}, "params_schema": None})
    assert changed.status_code == 200, changed.text
    undone = await client.post(f"{path}/undo")
    assert undone.status_code == 200, undone.text
    back = (await client.get(path)).json()
    assert back["config"]["params"] == {"top_p": 0.5} and back["params_schema"] == {"type": "object"}

    variant = await create_variant(client, agent["id"], overrides={"tools": {"search": SEARCH}})
    first = (await client.get(f"{path}/revisions", params={"limit": 1})).json()["data"][0]["id"]
    patched = await client.patch(
        f"{path}/variants/{variant['id']}", json={"overrides": {"tools": {"search": None}, "params": {"seed": 3}}}
    )
    assert patched.json()["overrides"] == {"params": {"seed": 3}}
    restored = await client.post(f"{path}/variants/{variant['id']}/restore", json={"revision_id": first})
    assert restored.status_code == 200, restored.text
    assert restored.json()["overrides"] == {"tools": {"search": SEARCH}}


async def test_a_rule_cannot_serve_a_config_with_an_undeclared_variable(client: httpx.AsyncClient) -> None:
    agent = await create_agent(client, config=config(variables={"tone": {"type": "string"}}))
    variant = await create_variant(client, agent["id"], overrides={"system_prompt": "Be {{tone}}."})
    # The declaration goes while the variant serves nowhere: allowed, the variant is not servable now.
    dropped = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"variables": {"tone": None}}})
    assert dropped.status_code == 200, dropped.text
    rules = {
        "rules": [
            {
                "name": "pro",
                "when": [{"attribute": "plan", "op": "eq", "value": "pro"}],
                "serve": {"variant": variant["slug"]},
            }
        ]
    }
    refused = await client.put(f"/v1/agents/{agent['id']}/rules", json=rules)
    assert_problem(refused, 422, "undeclared_variable")
    assert problem_params(refused) == {"rules[0].serve"}
    assert "'tone'" in refused.json()["errors"][0]["message"]
    activation = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    assert_problem(activation, 422, "undeclared_variable")


async def test_odd_input_is_a_4xx_never_a_500(client: httpx.AsyncClient) -> None:
    raw = b'{"name": "nan", "config": {"model_provider": "o", "model_name": "m", "params": {"x": NaN}}}'
    nan = await client.post("/v1/agents", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(nan, 422, "validation_error")  # as a NaN temperature is
    assert problem_params(nan) == {"config.params"}
    nul = await client.post(
        "/v1/agents", json={"name": "nul", "config": config(variables={"v": {"type": "string", "default": "a\u0000b"}})}
    )
    assert_problem(nul, 422, "validation_error")
    huge = await client.post(
        "/v1/agents", json={"name": "huge", "config": config(variables={"n": {"type": "integer", "default": 10**400}})}
    )
    assert_problem(huge, 422, "validation_error")
    agent = await create_agent(client, config=config(user_prompt_template="{{n}}", variables={"n": {"type": "number"}}))
    render = f"/v1/agents/{agent['id']}/render"
    assert_problem(await client.post(render, json={"variables": {"n": 10**400}}), 422, "validation_error")
    surrogate = await client.post(
        render, content=b'{"variables": {"n": "\\ud800"}}', headers={"Content-Type": "application/json"}
    )
    assert_problem(surrogate, 422, "validation_error")
    bad_regex = await client.patch(
        f"/v1/agents/{agent['id']}", json={"params_schema": {"properties": {"stop": {"pattern": "("}}}}
    )
    assert_problem(bad_regex, 422, "invalid_schema")
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(60):
        deep = {"type": "object", "properties": {"a": deep}}
    too_deep = await client.patch(
        f"/v1/agents/{agent['id']}", json={"config": {"tools": {"t": {"description": "", "parameters": deep}}}}
    )
    assert_problem(too_deep, 422, "invalid_schema")


async def test_a_params_schema_ref_to_a_url_is_never_fetched(client: httpx.AsyncClient) -> None:
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "object"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        refused = await client.post(
            "/v1/agents", json={"name": "ref", "config": config(params={"top_p": 1}), "params_schema": {"$ref": url}}
        )
        assert_problem(refused, 422, "validation_error")
        assert problem_params(refused) == {"params_schema"}
        assert asked == []
    finally:
        server.shutdown()


async def test_the_tool_limit_holds_for_the_resolved_config(client: httpx.AsyncClient) -> None:
    tools = {f"t{n}": {"description": "", "parameters": {"type": "object"}} for n in range(128)}
    agent = await create_agent(client, config=config(tools=tools))
    more = await client.patch(
        f"/v1/agents/{agent['id']}", json={"config": {"tools": {"extra": {"description": "", "parameters": {}}}}}
    )
    assert_problem(more, 422, "validation_error")
    assert problem_params(more) == {"config.tools"}
