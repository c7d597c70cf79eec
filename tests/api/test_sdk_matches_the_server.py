"""The SDK's local resolution equals the server's (contract 1.1: "SDKs evaluate locally with
the same semantics"): for random rule sets, a running experiment with random weights, and
random subjects and attributes, the state is built through the API, the bundle fetched with
`GET .../bundle?environment=` as the SDK fetches it, and what the SDK's `resolve` answers
from it (`Local.of` then `answer`, its own code path) must equal `POST .../resolve`."""

from __future__ import annotations

from typing import Any

from agent_variants.bundles import Freshness, Local, answer
from agent_variants.config import CONFIG_FIELDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.test_environments_stateful import CONTEXT_VALUES, SUBJECTS, conditions
from tests.helpers import config, create_agent, create_variant, unique

EXTRAS = ("agent_id", "variant_id", "agent_slug", "variant_slug", "source", "experiment_id", "arm", "environment")
NAMES = (*EXTRAS, "rule_id", *CONFIG_FIELDS)

contexts = st.tuples(
    st.none() | st.sampled_from(SUBJECTS) | st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
    st.fixed_dictionaries({}, optional={name: st.sampled_from(values) for name, values in CONTEXT_VALUES.items()}),
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    rules=st.lists(st.tuples(st.lists(conditions(), min_size=1, max_size=3), st.integers(0, 2)), max_size=4),
    weights=st.none() | st.lists(st.integers(1, 10000), min_size=2, max_size=3),
    active=st.integers(-1, 1),
    staging=st.booleans(),
    asked=st.lists(contexts, min_size=10, max_size=25),
)
async def test_the_sdks_local_resolution_equals_the_servers(client, rules, weights, active, staging, asked):
    agent = await create_agent(client, config=config(prompt_version="base", temperature=0.5))
    variants = [await create_variant(client, agent["id"], overrides={"prompt_version": f"v{n}"}) for n in range(2)]
    environment = "production"
    if staging:
        made = await client.post("/v1/environments", json={"name": unique("env")})
        assert made.status_code == 201, made.text
        environment = made.json()["slug"]
    base = f"/v1/agents/{agent['id']}"
    params = {"environment": environment}
    if active >= 0:
        response = await client.post(f"{base}/variants/{variants[active]['id']}/activate", params=params)
        assert response.status_code == 200, response.text
    served = ["base", variants[0]["id"], variants[1]["slug"]]
    rule_set = [{"name": f"r{i}", "when": when, "serve": {"variant": served[n]}} for i, (when, n) in enumerate(rules)]
    response = await client.put(f"{base}/rules", params=params, json={"rules": rule_set})
    assert response.status_code == 200, response.text
    if weights is not None:
        arms = [
            {"variant": v, "weight": w} for v, w in zip(["base", *(v["id"] for v in variants)], weights, strict=False)
        ]
        body: dict[str, Any] = {"name": "e", "arms": arms, "environment": environment}
        experiment = await client.post(f"{base}/experiments", json=body)
        assert experiment.status_code == 201, experiment.text
        started = await client.post(f"{base}/experiments/{experiment.json()['id']}/start", params=params)
        assert started.status_code == 200, started.text

    bundle = await client.get(f"/v1/agents/{agent['slug']}/bundle", params=params)
    assert bundle.status_code == 200, bundle.text
    local = Local.of(bundle.json(), Freshness())
    for subject, attributes in asked:
        request: dict[str, Any] = {"environment": environment, "attributes": attributes}
        if subject is not None:
            request["subject"] = subject
        response = await client.post(f"/v1/agents/{agent['slug']}/resolve", json=request)
        assert response.status_code == 200, response.text
        server = response.json()
        mine = answer(local, subject, None, attributes)
        assert {name: getattr(mine, name) for name in NAMES} == {name: server[name] for name in NAMES}, (
            subject,
            attributes,
        )
