"""The keyed-fields migration: `params`, `tools`, `variables` (and `params_unset`,
`params_schema`) appear empty, and each agent declares, as a required string, every
placeholder its base templates and its variants' templates already use; a template whose
placeholders do not parse declares nothing. Its placeholder scanner is a copy (migrations
do not import the code they outlive): a property test holds it equal to the SDK's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from agent_variants.templates import TemplateError, placeholders
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api import migrate
from tests.migrations.helpers import step

pytestmark = pytest.mark.live

_FILE = Path(__file__).resolve().parents[2] / "migrations/versions/2026_12_09_0900_add_params_tools_variables.py"
_SPEC = importlib.util.spec_from_file_location("keyed_fields_migration", _FILE)
assert _SPEC is not None and _SPEC.loader is not None
migration = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(migration)

REVISION = "f6a8c0e2b4d7"
BEFORE = "e5a7c9b1d3f6"
COLUMNS = (
    "model_provider, model_name, system_prompt, user_prompt_template, prompt_version, temperature, max_tokens,"
    " context_window, input_token_limit, token_budget, timeout_seconds, max_retries"
)


async def insert_agent(conn: AsyncConnection, agent_id: str, system: str, user: str) -> None:
    await conn.execute(
        text(
            f"INSERT INTO agents (id, slug, name, {COLUMNS}) VALUES"
            " (:id, :slug, :name, 'openai', 'gpt-4o', :system, :user, '', 1.0, 100, 0, 0, 0, 60, 2)"
        ),
        {"id": agent_id, "slug": agent_id.replace("_", "-"), "name": agent_id, "system": system, "user": user},
    )


async def insert_variant(conn: AsyncConnection, variant_id: str, agent_id: str, system: str) -> None:
    await conn.execute(
        text(
            "INSERT INTO variants (id, agent_id, slug, variant_name, system_prompt)"
            " VALUES (:id, :agent, :slug, :name, :system)"
        ),
        {
            "id": variant_id,
            "agent": agent_id,
            "slug": variant_id.replace("_", "-"),
            "name": variant_id,
            "system": system,
        },
    )


async def declared(conn: AsyncConnection) -> dict[str, dict[str, object]]:
    rows = await conn.execute(text("SELECT id, variables FROM agents ORDER BY id"))
    return {agent_id: variables for agent_id, variables in rows}


async def test_upgrade_declares_the_variables_templates_use_and_downgrade_drops_the_fields(
    fresh: AsyncConnection,
) -> None:
    await step(fresh, "upgrade", BEFORE)
    await insert_agent(fresh, "agt_a", 'Be {{ tone }}; JSON {"a": 1}', "Q: {{question}} {single}")
    await insert_variant(fresh, "var_a", "agt_a", "Be {{tone}} for {{audience}}")
    await insert_agent(fresh, "agt_b", "No placeholders {{ at all", "")
    await insert_agent(fresh, "agt_c", "Broken {{a.b}} and {{ok}}", "")
    await fresh.commit()

    await step(fresh, "upgrade", REVISION)
    assert await declared(fresh) == {
        "agt_a": {"tone": {"type": "string"}, "question": {"type": "string"}, "audience": {"type": "string"}},
        "agt_b": {},
        "agt_c": {},  # its template is invalid: its next write reports it (invalid_template)
    }
    row = (await fresh.execute(text("SELECT params, tools, params_schema FROM agents WHERE id = 'agt_a'"))).one()
    assert tuple(row) == ({}, {}, None)
    variant = (await fresh.execute(text("SELECT params, params_unset, tools, variables FROM variants"))).one()
    assert tuple(variant) == ({}, [], {}, {})
    with pytest.raises(Exception, match="ck_agents_params_object"):
        await fresh.execute(text("UPDATE agents SET params = '[]'::jsonb"))
    await fresh.rollback()

    await step(fresh, "downgrade", BEFORE)
    columns = await fresh.execute(
        text("SELECT column_name FROM information_schema.columns WHERE table_name = 'agents'")
    )
    assert {"params", "tools", "variables", "params_schema"}.isdisjoint({name for (name,) in columns})
    await step(fresh, "upgrade", "head")
    assert (await declared(fresh))["agt_a"] == {
        "tone": {"type": "string"},
        "question": {"type": "string"},
        "audience": {"type": "string"},
    }
    assert await migrate.current_revision(fresh) == migrate.head_revision()
    assert json.dumps(await declared(fresh), sort_keys=True)  # JSON all the way


_pieces = st.sampled_from(["{{", "}}", "{", "}", " ", "a", "b_1", "9", ".", "{{ x }}", "{{y}}", '{"k": 1}'])


@given(st.lists(_pieces, max_size=12).map("".join))
def test_the_migrations_scanner_reads_placeholders_as_the_sdk_does(template: str) -> None:
    try:
        expected: list[str] | None = [placeholder.name for placeholder in placeholders(template)]
    except TemplateError:
        expected = None
    assert migration._placeholders(template) == expected
