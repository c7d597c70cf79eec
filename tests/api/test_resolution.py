"""Resolution: GET /resolved (active, preview, explain, ETag) and the in-process resolver."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.shared.agent_config import (
    CONFIG_FIELDS,
    RESOLVED_FIELDS,
    AgentNotFound,
    ResolvedAgentConfig,
    VariantNotFound,
    resolve_agent_config,
)
from services.shared.identifiers import new_id
from tests.helpers import assert_problem, config, create_agent, create_variant, problem_params

BASE = config(
    system_prompt="base prompt",
    user_prompt_template="{input}",
    prompt_version="b1",
    temperature=0.7,
    max_tokens=500,
    context_window=8000,
    input_token_limit=4000,
    token_budget=100,
    timeout_seconds=30,
    max_retries=3,
)
# What the agent resolves to: BASE, and the keyed fields it leaves empty.
BASE_RESOLVED = {**BASE, "params": {}, "tools": {}, "variables": {}}
OVERRIDES = {"model_name": "gpt-4o-mini", "temperature": 0.1, "max_tokens": 900, "prompt_version": "v2"}


async def resolved(client: httpx.AsyncClient, agent: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/v1/agents/{agent}/resolved", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def setup(client: httpx.AsyncClient, *, activate: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    agent = await create_agent(client, config=BASE)
    variant = await create_variant(client, agent["id"], overrides=OVERRIDES)
    if activate:
        response = await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
        assert response.status_code == 200, response.text
    return agent, variant


# --- HTTP ------------------------------------------------------------------------------


async def test_without_an_active_variant_the_agent_config_is_returned(client):
    agent, _ = await setup(client, activate=False)
    body = await resolved(client, agent["slug"])
    assert body == {
        "object": "resolved_agent_config",
        "agent_id": agent["id"],
        "agent_slug": agent["slug"],
        "variant_id": None,
        "variant_slug": None,
        "source": "agent",
        "experiment_id": None,
        "arm": None,
        "environment": "production",  # contract 1.1: every resolution is production's until one is named
        "rule_id": None,
        **BASE_RESOLVED,
    }


async def test_with_an_active_variant_each_field_coalesces_override_over_base(client):
    agent, variant = await setup(client, activate=True)
    body = await resolved(client, agent["id"])
    assert body["source"] == "variant"
    assert body["variant_id"] == variant["id"]
    assert body["variant_slug"] == variant["slug"]
    assert body["agent_id"] == agent["id"]
    assert {name: body[name] for name in CONFIG_FIELDS} == {**BASE, **OVERRIDES}
    assert "provenance" not in body


async def test_resolution_follows_base_changes_for_inherited_fields(client):
    agent, _ = await setup(client, activate=True)
    await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": "new base", "temperature": 2.0}})
    body = await resolved(client, agent["id"])
    assert body["system_prompt"] == "new base"  # inherited
    assert body["temperature"] == 0.1  # overridden


async def test_deactivating_returns_to_the_agent_config(client):
    agent, variant = await setup(client, activate=True)
    await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/deactivate")
    body = await resolved(client, agent["id"])
    assert body["source"] == "agent" and body["variant_id"] is None
    assert {name: body[name] for name in CONFIG_FIELDS} == BASE


async def test_explain_gives_provenance_for_all_twelve_fields(client):
    agent, _ = await setup(client, activate=True)
    body = await resolved(client, agent["id"], explain="true")
    assert body["provenance"] == {name: ("variant" if name in OVERRIDES else "agent") for name in CONFIG_FIELDS}
    plain = await resolved(client, agent["id"], explain="false")
    assert "provenance" not in plain
    assert {k: v for k, v in body.items() if k != "provenance"} == plain


async def test_explain_without_a_variant_is_all_agent(client):
    agent, _ = await setup(client, activate=False)
    body = await resolved(client, agent["id"], explain="true")
    assert body["provenance"] == dict.fromkeys(CONFIG_FIELDS, "agent")


async def test_explain_must_be_a_boolean(client):
    agent, _ = await setup(client, activate=False)
    response = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"explain": "perhaps"})
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"explain"}


async def test_preview_resolves_as_if_active_and_changes_nothing(client):
    agent, variant = await setup(client, activate=False)
    agent = (await client.get(f"/v1/agents/{agent['id']}")).json()
    for ref in (variant["id"], variant["slug"]):
        body = await resolved(client, agent["id"], variant=ref, explain="true")
        assert body["source"] == "preview"
        assert body["variant_id"] == variant["id"]
        assert body["variant_slug"] == variant["slug"]
        assert {name: body[name] for name in CONFIG_FIELDS} == {**BASE, **OVERRIDES}
        assert body["provenance"]["temperature"] == "variant"
        assert body["provenance"]["system_prompt"] == "agent"
    assert (await client.get(f"/v1/agents/{agent['id']}")).json() == agent
    assert (await client.get(f"/v1/agents/{agent['id']}/variants/{variant['id']}")).json() == variant
    assert (await resolved(client, agent["id"]))["source"] == "agent"


async def test_preview_of_another_variant_while_one_is_active(client):
    agent, active = await setup(client, activate=True)
    other = await create_variant(client, agent["id"], overrides={"max_retries": 0})
    body = await resolved(client, agent["id"], variant=other["slug"])
    assert body["source"] == "preview"
    assert body["variant_id"] == other["id"]
    # Only the previewed variant's overrides apply, not the active one's.
    assert {name: body[name] for name in CONFIG_FIELDS} == {**BASE, "max_retries": 0}
    assert (await resolved(client, agent["id"]))["variant_id"] == active["id"]


async def test_preview_of_base_shows_the_base_config_while_a_variant_is_active(client, conn):
    agent, active = await setup(client, activate=True)
    body = await resolved(client, agent["id"], variant="base", explain="true")
    assert body["source"] == "preview"
    assert body["variant_id"] is None and body["variant_slug"] is None
    assert {name: body[name] for name in CONFIG_FIELDS} == BASE
    assert set(body["provenance"].values()) == {"agent"}
    in_process = await resolve_agent_config(conn, agent["slug"], variant="base")
    assert in_process.source == "preview" and in_process.variant_id is None
    assert in_process.config() == BASE_RESOLVED
    # Nothing changed: the active variant still resolves.
    assert (await resolved(client, agent["id"]))["variant_id"] == active["id"]


async def test_preview_of_unknown_variant_is_404(client):
    agent, _ = await setup(client, activate=False)
    other_agent = await create_agent(client)
    foreign = await create_variant(client, other_agent["id"])
    for ref in ("ghost", new_id("variant"), "var_bad", foreign["id"]):
        response = await client.get(f"/v1/agents/{agent['id']}/resolved", params={"variant": ref})
        body = assert_problem(response, 404, "resource_missing")
        assert body["detail"] == f"Variant '{ref}' not found"


async def test_preview_with_subject_is_422_naming_both(client):
    agent, variant = await setup(client, activate=False)
    response = await client.get(
        f"/v1/agents/{agent['id']}/resolved", params={"variant": variant["id"], "subject": "user-1"}
    )
    assert_problem(response, 422, "validation_error")
    assert problem_params(response) == {"variant", "subject"}


async def test_subject_without_a_running_experiment_is_normal_resolution(client):
    agent, variant = await setup(client, activate=True)
    body = await resolved(client, agent["id"], subject="user-1")
    assert body["source"] == "variant" and body["variant_id"] == variant["id"]


async def test_etag_and_if_none_match(client):
    agent, variant = await setup(client, activate=False)
    url = f"/v1/agents/{agent['id']}/resolved"
    first = await client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    assert (await client.get(url)).headers["etag"] == etag  # same state, same tag

    not_modified = await client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag
    assert not_modified.content == b""

    await client.post(f"/v1/agents/{agent['id']}/variants/{variant['id']}/activate")
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["source"] == "variant"


async def test_explain_and_plain_bodies_have_different_etags(client):
    agent, _ = await setup(client, activate=True)
    url = f"/v1/agents/{agent['id']}/resolved"
    plain = await client.get(url)
    explained = await client.get(url, params={"explain": "true"})
    assert plain.headers["etag"] != explained.headers["etag"]
    response = await client.get(url, params={"explain": "true"}, headers={"If-None-Match": plain.headers["etag"]})
    assert response.status_code == 200


async def test_unknown_agent_is_404(client):
    for ref in ("ghost", new_id("agent"), "agt_bad"):
        body = assert_problem(await client.get(f"/v1/agents/{ref}/resolved"), 404, "resource_missing")
        assert body["detail"] == f"Agent '{ref}' not found"
    # An unknown agent is reported first, even with a preview.
    body = assert_problem(
        await client.get("/v1/agents/ghost/resolved", params={"variant": "var_bad"}), 404, "resource_missing"
    )
    assert body["detail"] == "Agent 'ghost' not found"


# --- in-process ------------------------------------------------------------------------


async def test_resolve_agent_config_by_id_and_slug(client, conn):
    agent, variant = await setup(client, activate=True)
    by_id = await resolve_agent_config(conn, agent["id"])
    by_slug = await resolve_agent_config(conn, agent["slug"])
    assert isinstance(by_id, ResolvedAgentConfig)
    assert by_id == by_slug
    assert by_id.agent_id == agent["id"]
    assert by_id.variant_id == variant["id"]
    assert by_id.source == "variant"
    assert {name: getattr(by_id, name) for name in CONFIG_FIELDS} == {**BASE, **OVERRIDES}
    # The HTTP endpoint answers the same.
    body = await resolved(client, agent["id"])
    assert {name: body[name] for name in RESOLVED_FIELDS} == by_id.config()
    with pytest.raises(AttributeError):
        by_id.temperature = 2.0  # type: ignore[misc]  # frozen


async def test_resolve_agent_config_without_active_variant(client, conn):
    agent, _ = await setup(client, activate=False)
    result = await resolve_agent_config(conn, agent["slug"])
    assert result.variant_id is None
    assert result.source == "agent"
    assert result.config() == BASE_RESOLVED


async def test_resolve_agent_config_preview(client, conn):
    agent, variant = await setup(client, activate=False)
    result = await resolve_agent_config(conn, agent["id"], variant=variant["slug"])
    assert result.source == "preview"
    assert result.variant_id == variant["id"]
    assert result.config() == {**BASE_RESOLVED, **OVERRIDES}


async def test_resolve_agent_config_unknown_agent_raises_a_lookup_error(conn):
    assert issubclass(AgentNotFound, LookupError)
    for ref in ("ghost", new_id("agent"), "agt_bad"):
        with pytest.raises(AgentNotFound):
            await resolve_agent_config(conn, ref)
    with pytest.raises(LookupError):
        await resolve_agent_config(conn, "ghost", variant="var_bad")


async def test_resolve_agent_config_unknown_variant_raises_variant_not_found(client, conn):
    agent, _ = await setup(client, activate=False)
    for ref in ("ghost", new_id("variant"), "var_bad"):
        with pytest.raises(VariantNotFound):
            await resolve_agent_config(conn, agent["id"], variant=ref)
