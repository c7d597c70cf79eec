"""`to_body` builds a resolution's body by hand for speed; it must equal, value for value and
key for key in order (the bytes, so the ETag), what validating a `ResolvedRead` gives."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from services.api.resolution.schemas import ResolvedRead, to_body
from services.shared.agent_config import (
    CONFIG_FIELDS,
    INTEGER_FIELDS,
    NUMBER_FIELDS,
    RESOLVED_FIELDS,
    ResolvedAgentConfig,
)

ids = st.one_of(st.none(), st.text(min_size=1, max_size=30))


def field(name: str) -> st.SearchStrategy:
    if name in NUMBER_FIELDS:  # stored floats, or whole numbers from a snapshot's JSON
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6))
    if name in INTEGER_FIELDS:
        return st.integers(0, 10**10)
    return st.text(max_size=50)


resolutions = st.builds(
    ResolvedAgentConfig,
    agent_id=st.text(min_size=1, max_size=30),
    agent_slug=st.text(min_size=1, max_size=30),
    variant_id=ids,
    variant_slug=ids,
    source=st.sampled_from(["agent", "variant", "preview", "experiment"]),
    experiment_id=ids,
    arm=st.one_of(st.none(), st.integers(0, 9)),
    environment=st.text(min_size=1, max_size=20),
    rule_id=ids,
    overridden=st.frozensets(st.sampled_from([*CONFIG_FIELDS, "params.top_p", "tools.search"])),
    params=st.dictionaries(st.sampled_from(["top_p", "seed", "stop"]), st.integers() | st.text(max_size=5)),
    tools=st.dictionaries(
        st.just("search"), st.fixed_dictionaries({"description": st.text(max_size=9), "parameters": st.just({})})
    ),
    variables=st.dictionaries(st.sampled_from(["tone", "name"]), st.just({"type": "string"})),
    **{name: field(name) for name in CONFIG_FIELDS},
)


def reference(resolved: ResolvedAgentConfig, *, explain: bool) -> dict:
    extra = {"provenance": resolved.provenance} if explain else {}
    return ResolvedRead(
        object="resolved_agent_config",
        agent_id=resolved.agent_id,
        agent_slug=resolved.agent_slug,
        variant_id=resolved.variant_id,
        variant_slug=resolved.variant_slug,
        source=resolved.source,
        experiment_id=resolved.experiment_id,
        arm=resolved.arm,
        environment=resolved.environment,
        rule_id=resolved.rule_id,
        **{name: getattr(resolved, name) for name in RESOLVED_FIELDS},
        **extra,
    ).model_dump(exclude_unset=True)


@given(resolved=resolutions, explain=st.booleans())
def test_the_body_is_what_validating_a_resolved_read_gives(resolved: ResolvedAgentConfig, explain: bool) -> None:
    built, expected = to_body(resolved, explain=explain), reference(resolved, explain=explain)
    assert json.dumps(built) == json.dumps(expected)
    assert [type(v) for v in built.values()] == [type(v) for v in expected.values()]
