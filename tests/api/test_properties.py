"""Hypothesis property tests of agents, variants and resolution through the real app.

Each example runs inside the test's rolled-back transaction but is not rolled back on its
own, so every example creates a fresh agent with a unique name. Expected values are
computed here from the contract, never by calling the service's own coalescing code.
"""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from services.api.app import _slugify
from services.shared.agent_config import (
    INTEGER_FIELDS,
    NUMBER_FIELDS,
    STRING_FIELDS,
    ResolvedAgentConfig,
    resolve_agent_config,
)
from tests.helpers import create_agent, create_variant, problem_params, unique

FIELDS = (
    "model_provider",
    "model_name",
    "system_prompt",
    "user_prompt_template",
    "prompt_version",
    "temperature",
    "max_tokens",
    "context_window",
    "input_token_limit",
    "token_budget",
    "timeout_seconds",
    "max_retries",
)
# The contract's defaults on agent create (written out here, not imported, on purpose).
CONTRACT_DEFAULTS = {
    "system_prompt": "",
    "user_prompt_template": "",
    "prompt_version": "",
    "temperature": 1.0,
    "max_tokens": 1024,
    "context_window": 0,
    "input_token_limit": 0,
    "token_budget": 0,
    "timeout_seconds": 60,
    "max_retries": 2,
}
RULE_FIELDS = {"context_window", "input_token_limit", "max_tokens"}

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------- strategies

_chars = st.characters(categories=("L", "N", "P", "S", "Zs"), max_codepoint=0x2FFF)


def _string(name: str) -> st.SearchStrategy[str]:
    low, high = STRING_FIELDS[name]
    # No `{{`: placeholders and their variables have tests of their own (test_templates_api).
    return st.text(_chars, min_size=low, max_size=min(high, 12)).filter(lambda text: "{{" not in text)


def _number(name: str) -> st.SearchStrategy[float]:
    low, high = NUMBER_FIELDS[name]
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _integer(name: str) -> st.SearchStrategy[int]:
    low, high = INTEGER_FIELDS[name]
    # Both ends of the range come up often, and so do small values.
    return st.one_of(st.sampled_from([low, high]), st.integers(low, min(high, low + 100)), st.integers(low, high))


def _any_value(name: str) -> st.SearchStrategy[Any]:
    if name in STRING_FIELDS:
        return _string(name)
    if name in NUMBER_FIELDS:
        return _number(name)
    return _integer(name)


# Values that can never break the cross-field rule, whatever they are coalesced with:
# context_window is 0 or at least 60M, and input_token_limit + max_tokens <= 50M + 10M.
_SAFE_RULE_VALUES = {
    "context_window": st.one_of(st.just(0), st.integers(60_000_000, INTEGER_FIELDS["context_window"][1])),
    "input_token_limit": st.integers(0, 50_000_000),
    "max_tokens": st.integers(*INTEGER_FIELDS["max_tokens"]),
}
# Values that often break it: small windows and limits, mostly on one coarse scale so
# that sums land on both sides of the window (and exactly on it) often.
_hundreds = st.integers(1, 40).map(lambda n: n * 100)
_WILD_RULE_VALUES = {
    "context_window": st.one_of(st.just(0), _hundreds, st.integers(1, 4000), _integer("context_window")),
    "input_token_limit": st.one_of(st.just(0), _hundreds, _integer("input_token_limit")),
    "max_tokens": st.one_of(_hundreds, _integer("max_tokens")),
}


def _value(name: str, *, wild: bool) -> st.SearchStrategy[Any]:
    if name in RULE_FIELDS:
        return (_WILD_RULE_VALUES if wild else _SAFE_RULE_VALUES)[name]
    return _any_value(name)


def base_configs(*, wild: bool = False, nulls: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """An agent create `config`: the two required fields, any subset of the others
    (with `nulls`, some sent as null, which means their default)."""
    return st.fixed_dictionaries(
        {name: _value(name, wild=wild) for name in ("model_provider", "model_name")},
        optional={
            name: (st.none() | _value(name, wild=wild)) if nulls else _value(name, wild=wild) for name in FIELDS[2:]
        },
    )


def overrides(*, wild: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A variant's sparse overrides: any subset of the twelve."""
    return st.fixed_dictionaries({}, optional={name: _value(name, wild=wild) for name in FIELDS})


def override_patches(*, wild: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A merge patch of overrides: a value sets a field, null removes it."""
    return st.fixed_dictionaries({}, optional={name: st.none() | _value(name, wild=wild) for name in FIELDS})


def config_patches(*, wild: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A merge patch of an agent's config (its fields cannot be null)."""
    return st.fixed_dictionaries({}, optional={name: _value(name, wild=wild) for name in FIELDS})


_meta_keys = st.sampled_from(["team", "owner", "tier", "env", "note", "k"])
_meta_values = st.text(_chars, max_size=8)
metadata = st.dictionaries(_meta_keys, _meta_values, max_size=4)
metadata_patches = st.dictionaries(_meta_keys, st.none() | _meta_values, max_size=4)
names = st.text(_chars, min_size=1, max_size=20)
slugs = st.from_regex(r"\A[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}\Z").filter(lambda s: s != "base")

# ---------------------------------------------------------------------------- the model


def full_base(config: dict[str, Any]) -> dict[str, Any]:
    """The agent's config after create: the contract's defaults for what was left out (the
    keyed fields empty: these templates hold no placeholder to infer a variable from)."""
    keyed: dict[str, Any] = {"params": {}, "tools": {}, "variables": {}}
    return {**CONTRACT_DEFAULTS, **keyed, **{k: v for k, v in config.items() if v is not None}}


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch of a flat object: null removes a key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def resolve(variant_overrides: dict[str, Any] | None, base: dict[str, Any]) -> dict[str, Any]:
    """Field by field: the variant's override where it sets one, else the base value."""
    chosen = variant_overrides or {}
    return {name: chosen[name] if name in chosen else base[name] for name in FIELDS}


def consistent(config: dict[str, Any]) -> bool:
    window = config["context_window"]
    return window == 0 or config["input_token_limit"] + config["max_tokens"] <= window


def make_consistent(config: dict[str, Any]) -> dict[str, Any]:
    """A full config that keeps the rule, changed as little as possible."""
    if consistent(config):
        return config
    needed = config["input_token_limit"] + config["max_tokens"]
    window = needed if needed <= INTEGER_FIELDS["context_window"][1] else 0
    return {**config, "context_window": window}


# ---------------------------------------------------------------------------- helpers


async def new_agent(client: httpx.AsyncClient, config: dict[str, Any]) -> dict[str, Any]:
    agent = await create_agent(client, name=unique("prop agent"), config=config)
    assert agent["config"] == full_base(config)
    return agent


async def resolved(client: httpx.AsyncClient, agent: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent}/resolved", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def config_of(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in FIELDS}


async def snapshot(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    """Everything a rejected write must leave unchanged: the agent, its variants, /resolved."""
    agent = await client.get(f"/v1/agents/{agent_id}")
    listed = await client.get(f"/v1/agents/{agent_id}/variants", params={"limit": 100})
    assert agent.status_code == listed.status_code == 200
    return {"agent": agent.json(), "variants": listed.json(), "resolved": await resolved(client, agent_id)}


def assert_inconsistent(response: httpx.Response, write: str) -> None:
    event(f"rejected: {write}")  # shown by --hypothesis-show-statistics
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "inconsistent_config"
    params = problem_params(response)
    # It names the fields involved, each where the resolved value came from.
    assert {param.split(".", 1)[1] for param in params} == RULE_FIELDS, params
    assert {param.split(".", 1)[0] for param in params} <= {"config", "overrides"}, params


async def assert_consistent_state(client: httpx.AsyncClient, agent_id: str) -> dict[str, Any]:
    state = await snapshot(client, agent_id)
    assert consistent(config_of(state["resolved"])), state["resolved"]
    return state


# ---------------------------------------------------------------------------- a. PATCH


@SETTINGS
@given(
    config=base_configs(),
    initial=overrides(),
    initial_metadata=metadata,
    patch=st.fixed_dictionaries(
        {},
        optional={
            "variant_name": names,
            "slug": slugs,
            "description": st.none() | st.text(_chars, max_size=20),
            "metadata": st.none() | metadata_patches,
            "overrides": st.one_of(override_patches(), st.none()),
        },
    ),
    active=st.booleans(),
)
async def test_patch_twice_equals_patch_once_and_keeps_unnamed_fields(
    client, config, initial, initial_metadata, patch, active
):
    agent = await new_agent(client, config)
    variant = await create_variant(
        client,
        agent["id"],
        variant_name=unique("variant"),
        description="before",
        metadata=initial_metadata,
        overrides=initial,
    )
    if active:
        response = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
        assert response.status_code == 200, response.text
        variant = response.json()
    path = f"/v1/agents/{agent['id']}/variants/{variant['id']}"

    expected = dict(variant)
    for name in ("variant_name", "slug"):
        if name in patch:
            expected[name] = patch[name]
    if "description" in patch:
        expected["description"] = patch["description"] or ""
    if "metadata" in patch:
        expected["metadata"] = {} if patch["metadata"] is None else merge(variant["metadata"], patch["metadata"])
    if "overrides" in patch:
        expected["overrides"] = {} if patch["overrides"] is None else merge(variant["overrides"], patch["overrides"])
    changed = any(expected[k] != variant[k] for k in ("variant_name", "slug", "description", "metadata", "overrides"))

    once = await client.patch(path, json=patch)
    assert once.status_code == 200, once.text
    first = once.json()
    # Named fields took the patch; every other field kept its value.
    moving = {"version", "updated_at"}
    assert {k: v for k, v in first.items() if k not in moving} == {k: v for k, v in expected.items() if k not in moving}
    assert first["version"] == variant["version"] + (1 if changed else 0)
    if not changed:
        assert first["updated_at"] == variant["updated_at"]
    assert once.headers["etag"] == f'"{first["version"]}"'

    twice = await client.patch(path, json=patch)
    assert twice.status_code == 200, twice.text
    assert twice.json() == first  # nothing bumps: not version, not updated_at
    assert (await client.get(path)).json() == first

    # Resolution follows the stored overrides (and is untouched when inactive).
    got = await resolved(client, agent["id"])
    assert config_of(got) == resolve(first["overrides"] if active else None, agent["config"])


# ---------------------------------------------------------------------------- b. clone


@SETTINGS
@given(
    config=base_configs(),
    source_overrides=overrides(),
    clone_overrides=overrides(),
    source_active=st.booleans(),
    by_slug=st.booleans(),
)
async def test_clone_from_a_variant_keeps_every_field_not_overridden(
    client, config, source_overrides, clone_overrides, source_active, by_slug
):
    agent = await new_agent(client, config)
    source = await create_variant(client, agent["id"], overrides=source_overrides, metadata={"a": "b"})
    if source_active:
        response = await client.post(f"/v1/agents/{agent['id']}/variants/{source['id']}/activate")
        assert response.status_code == 200, response.text
        source = response.json()

    clone = await create_variant(
        client, agent["id"], clone_from=source["slug"] if by_slug else source["id"], overrides=clone_overrides
    )

    assert clone["overrides"] == {**source_overrides, **clone_overrides}
    assert clone["cloned_from"] == {"source": "variant", "variant_id": source["id"]}
    assert clone["is_active"] is False and clone["activated_at"] is None
    # The source is untouched, and stays the active one if it was.
    assert (await client.get(f"/v1/agents/{agent['id']}/variants/{source['id']}")).json() == source
    # Previewed, the clone resolves like the source except where the clone overrides.
    source_view = await resolved(client, agent["id"], variant=source["id"])
    clone_view = await resolved(client, agent["id"], variant=clone["id"])
    for name in FIELDS:
        expected = clone_overrides[name] if name in clone_overrides else source_view[name]
        assert clone_view[name] == expected, name


@SETTINGS
@given(config=base_configs(), clone_overrides=overrides(), later=config_patches())
async def test_clone_from_base_copies_the_whole_config_as_a_snapshot(client, config, clone_overrides, later):
    agent = await new_agent(client, config)
    clone = await create_variant(client, agent["id"], clone_from="base", overrides=clone_overrides)

    expected = {**{name: agent["config"][name] for name in FIELDS}, **clone_overrides}
    assert clone["overrides"] == expected  # all twelve are set (the empty keyed fields are none)
    assert clone["cloned_from"] == {"source": "base", "variant_id": None}
    assert clone["is_active"] is False

    # A snapshot: later changes to the agent's config do not reach the clone.
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": later})
    assert response.status_code == 200, response.text
    assert response.json()["config"] == {**agent["config"], **later}
    assert config_of(await resolved(client, agent["id"], variant=clone["slug"])) == expected


# ---------------------------------------------------------------------------- c. resolution


@st.composite
def variant_sets(draw):
    variants = draw(st.lists(overrides(), min_size=1, max_size=3))
    active = draw(st.none() | st.integers(0, len(variants) - 1))
    # Sometimes another variant was active first, so activation has something to switch off.
    previous = draw(st.none() | st.integers(0, len(variants) - 1))
    return variants, active, previous


@SETTINGS
@given(config=base_configs(), variant_set=variant_sets())
async def test_resolution_is_the_field_by_field_coalesce_of_the_active_variant_over_base(
    client, conn, config, variant_set
):
    all_overrides, active, previous = variant_set
    agent = await new_agent(client, config)
    base = agent["config"]
    variants = [await create_variant(client, agent["id"], overrides=o) for o in all_overrides]
    for index in (previous, active):
        if index is not None:
            response = await client.post(f"/v1/agents/{agent['id']}/variants/{variants[index]['id']}/activate")
            assert response.status_code == 200, response.text
    if active is None and previous is not None:
        response = await client.post(f"/v1/agents/{agent['id']}/variants/{variants[previous]['id']}/deactivate")
        assert response.status_code == 200, response.text

    chosen = variants[active] if active is not None else None
    expected = resolve(all_overrides[active] if active is not None else None, base)
    provenance = {
        name: "variant" if active is not None and name in all_overrides[active] else "agent" for name in FIELDS
    }

    for ref in (agent["id"], agent["slug"]):
        body = await resolved(client, ref, explain="true")
        assert config_of(body) == expected
        assert body["agent_id"] == agent["id"] and body["agent_slug"] == agent["slug"]
        assert body["variant_id"] == (chosen["id"] if chosen else None)
        assert body["variant_slug"] == (chosen["slug"] if chosen else None)
        assert body["source"] == ("variant" if chosen else "agent")
        assert body["provenance"] == provenance
        assert "provenance" not in await resolved(client, ref)

        # The in-process resolver gives the same answer.
        in_process = await resolve_agent_config(conn, ref)
        assert isinstance(in_process, ResolvedAgentConfig)
        assert {name: getattr(in_process, name) for name in FIELDS} == expected
        assert in_process.agent_id == agent["id"]
        assert in_process.variant_id == (chosen["id"] if chosen else None)

    # Preview resolves each variant as if it were active, and changes nothing.
    for variant, variant_overrides in zip(variants, all_overrides, strict=True):
        body = await resolved(client, agent["slug"], variant=variant["slug"])
        assert config_of(body) == resolve(variant_overrides, base)
        assert body["source"] == "preview" and body["variant_id"] == variant["id"]
        in_process = await resolve_agent_config(conn, agent["id"], variant=variant["id"])
        assert {name: getattr(in_process, name) for name in FIELDS} == resolve(variant_overrides, base)
    assert config_of(await resolved(client, agent["id"])) == expected


# ---------------------------------------------------------------------------- d. consistency

RULE_SETTINGS = settings(SETTINGS, max_examples=50)


@RULE_SETTINGS
@given(config=base_configs(wild=True, nulls=True))
async def test_agent_create_is_rejected_exactly_when_the_base_breaks_the_rule(client, config):
    name = unique("rule agent")
    before = (await client.get("/v1/agents", params={"limit": 100})).json()
    response = await client.post("/v1/agents", json={"name": name, "config": config})
    if consistent(full_base(config)):
        assert response.status_code == 201, response.text
        assert response.json()["config"] == full_base(config)
        await assert_consistent_state(client, response.json()["id"])
    else:
        assert_inconsistent(response, "agent create")
        assert (await client.get(f"/v1/agents/{_slugify(name)}")).status_code == 404
        assert (await client.get("/v1/agents", params={"limit": 100})).json() == before


def near_the_edge(draw, sets: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Sometimes make `sets` set a window within 1000 of what the resolved limits need,
    so writes land on both sides of the rule (and on it) often."""
    if not draw(st.booleans()):
        return sets
    resolved_now = resolve({k: v for k, v in sets.items() if v is not None}, base)
    window = resolved_now["input_token_limit"] + resolved_now["max_tokens"] + draw(st.integers(-1000, 1000))
    return {**sets, "context_window": min(max(window, 1), INTEGER_FIELDS["context_window"][1])}


@st.composite
def variant_cases(draw):
    """(base config, created overrides, variant patch): the base keeps the rule, the rest is wild."""
    base = make_consistent(full_base(draw(base_configs(wild=True))))
    created = near_the_edge(draw, draw(overrides(wild=True)), base)
    patch = draw(override_patches(wild=True))
    patch = near_the_edge(draw, patch, {**base, **created}) if patch.get("context_window", 0) is not None else patch
    return base, created, patch


@RULE_SETTINGS
@given(case=variant_cases(), from_base=st.booleans(), active=st.booleans())
async def test_variant_create_and_patch_are_rejected_exactly_when_the_variant_breaks_the_rule(
    client, case, from_base, active
):
    base, created, patch = case
    agent = await new_agent(client, base)

    # Create: the overrides as sent, or over a copy of the whole base config.
    stored = {**{name: base[name] for name in FIELDS}, **created} if from_base else created
    before = await snapshot(client, agent["id"])
    body = {"variant_name": unique("variant"), "overrides": created}
    if from_base:
        body["clone_from"] = "base"
    response = await client.post(f"/v1/agents/{agent['id']}/variants", json=body)
    if consistent(resolve(stored, base)):
        assert response.status_code == 201, response.text
        variant = response.json()
        assert variant["overrides"] == stored
        await assert_consistent_state(client, agent["id"])
    else:
        assert_inconsistent(response, "variant create")
        assert await snapshot(client, agent["id"]) == before
        stored = {}
        variant = await create_variant(client, agent["id"], overrides=stored)
    if active:
        response = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
        assert response.status_code == 200, response.text

    # Patch: checked whether or not the variant is active.
    before = await snapshot(client, agent["id"])
    after = merge(stored, patch)
    response = await client.patch(f"/v1/agents/{agent['id']}/variants/{variant['id']}", json={"overrides": patch})
    if after == stored or consistent(resolve(after, base)):
        assert response.status_code == 200, response.text
        assert response.json()["overrides"] == after
        state = await assert_consistent_state(client, agent["id"])
        assert consistent(config_of(await resolved(client, agent["id"], variant=variant["id"])))
        assert config_of(state["resolved"]) == resolve(after if active else None, base)
    else:
        assert_inconsistent(response, "variant patch")
        assert await snapshot(client, agent["id"]) == before


@st.composite
def window_cases(draw):
    """(base config, agent config patch, variant overrides): the base keeps the rule, the rest is wild."""
    base = make_consistent(full_base(draw(base_configs(wild=True))))
    patch = draw(config_patches(wild=True))
    variant = draw(overrides(wild=True))
    if draw(st.booleans()):
        # Steer toward a case random draws rarely hit: the agent patch shrinks the window,
        # keeping the base consistent, below what the variant's own max_tokens needs.
        window = base["input_token_limit"] + base["max_tokens"] + draw(st.integers(0, 1000))
        max_tokens = window - base["input_token_limit"] + draw(st.integers(1, 1000))
        fits_before = base["context_window"] == 0 or base["input_token_limit"] + max_tokens <= base["context_window"]
        in_range = window <= INTEGER_FIELDS["context_window"][1] and max_tokens <= INTEGER_FIELDS["max_tokens"][1]
        if in_range and fits_before:
            variant = {k: v for k, v in variant.items() if k not in RULE_FIELDS} | {"max_tokens": max_tokens}
            patch = {k: v for k, v in patch.items() if k not in RULE_FIELDS} | {"context_window": window}
    return base, patch, variant


@RULE_SETTINGS
@given(case=window_cases())
async def test_agent_patch_is_rejected_exactly_when_the_base_or_the_active_variant_breaks_the_rule(client, case):
    base, patch, active_overrides = case
    assume(consistent(resolve(active_overrides, base)))
    agent = await new_agent(client, base)
    active = await create_variant(client, agent["id"], overrides=active_overrides)
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{active['id']}/activate")
    assert response.status_code == 200, response.text

    before = await snapshot(client, agent["id"])
    new_base = {**base, **patch}
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": patch})
    if new_base == base or (consistent(new_base) and consistent(resolve(active_overrides, new_base))):
        assert response.status_code == 200, response.text
        assert response.json()["config"] == new_base
        state = await assert_consistent_state(client, agent["id"])
        assert config_of(state["resolved"]) == resolve(active_overrides, new_base)
    else:
        assert_inconsistent(response, "agent patch: " + ("active variant" if consistent(new_base) else "base"))
        assert await snapshot(client, agent["id"]) == before


# The variant that stays active sets none of the rule's fields, so an agent patch that keeps
# the base consistent is accepted, and may leave the inactive candidate inconsistent.
_keeper_overrides = st.fixed_dictionaries(
    {}, optional={name: _any_value(name) for name in FIELDS if name not in RULE_FIELDS}
)


@RULE_SETTINGS
@given(case=window_cases(), keeper_overrides=_keeper_overrides, keeper_active=st.booleans())
async def test_activation_is_rejected_exactly_when_the_variant_breaks_the_rule_over_the_current_base(
    client, case, keeper_overrides, keeper_active
):
    base, patch, candidate_overrides = case
    assume(consistent(resolve(candidate_overrides, base)))
    agent = await new_agent(client, base)
    keeper = await create_variant(client, agent["id"], overrides=keeper_overrides)
    candidate = await create_variant(client, agent["id"], overrides=candidate_overrides)
    if keeper_active:
        response = await client.post(f"/v1/agents/{agent['id']}/variants/{keeper['id']}/activate")
        assert response.status_code == 200, response.text

    # The candidate is inactive: an agent patch checks only the base (and the keeper).
    new_base = {**base, **patch}
    response = await client.patch(f"/v1/agents/{agent['id']}", json={"config": patch})
    if consistent(new_base):
        assert response.status_code == 200, response.text
        base = new_base
    else:
        assert_inconsistent(response, "agent patch")

    before = await snapshot(client, agent["id"])
    response = await client.post(f"/v1/agents/{agent['id']}/variants/{candidate['slug']}/activate")
    if consistent(resolve(candidate_overrides, base)):
        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is True
        state = await assert_consistent_state(client, agent["id"])
        assert state["agent"]["active_variant_id"] == candidate["id"]
        assert config_of(state["resolved"]) == resolve(candidate_overrides, base)
    else:
        assert_inconsistent(response, "activation")
        after = await snapshot(client, agent["id"])
        assert after == before
        assert after["agent"]["active_variant_id"] == (keeper["id"] if keeper_active else None)
