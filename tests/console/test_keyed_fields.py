"""Contract 1.1's keyed config fields in the console: `params`, `tools`, `variables` (and a
variant's `params_unset`, an agent's `params_schema`) edited as JSON in textareas of their
own; bad JSON and the API's errors shown at the right editor with their whole path, the text
kept as typed and nothing written; the resolved config's entries with their provenance; the
history's and the comparison's changes entry by entry."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from services.api.agents import service as agents
from services.api.console.web import entries_patch, errors_of, json_of
from services.api.db import Database
from services.api.exceptions import FieldError, InvalidSchema
from services.api.revisions import service as revisions
from services.api.variants import service as variants
from tests.console.conftest import Browser, csrf_of

SEARCH = {
    "description": "Search the help center.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}
LOOKUP = {"description": "Look an order up.", "parameters": {"type": "object"}, "strict": True}


def field_error(page: str, ident: str) -> str:
    """The text of the error shown at the field whose id is `f-<ident>` (unescaped)."""
    found = re.search(rf'<p class="error" id="err-{ident}" role="alert">(.*?)</p>', page, re.S)
    assert found, f"no error at {ident}"
    return html.unescape(found.group(1))


def textarea(page: str, ident: str) -> str:
    """What the textarea `f-<ident>` holds (unescaped)."""
    found = re.search(rf'<textarea id="f-{ident}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"no textarea {ident}"
    return html.unescape(found.group(1))


def version_of(page: str) -> str:
    """The version the page's edit form sends as If-Match."""
    return re.search(r'name="version" value="(\d+)"', page).group(1)


def rows(page: str, table: str) -> dict[str, str]:
    """{data-field: the row's HTML} of the config table with that id."""
    body = re.search(rf'<table class="config" id="{table}">(.*?)</table>', page, re.S)
    assert body, f"no table {table}"
    return dict(re.findall(r'<tr data-field="([^"]+)">(.*?)</tr>', body.group(1), re.S))


async def _keyed_agent(admin: Browser) -> None:
    made = await admin.submit(
        "/console/agents",
        {
            "name": "Keyed bot",
            "config.model_provider": "openai",
            "config.model_name": "gpt-4o",
            "config.system_prompt": "Help {{customer}}.",
            "config.params": json.dumps({"top_p": 0.9, "seed": 7}),
            "config.tools": json.dumps({"search": SEARCH, "lookup": LOOKUP}, indent=2),
            "config.variables": json.dumps({"customer": {"type": "string", "description": "Who asks."}}),
            "params_schema": "",
        },
        from_page="/console/agents",
    )
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/console/agents/keyed-bot"


async def test_create_an_agent_with_params_tools_and_variables(admin: Browser, db: Database) -> None:
    form = await admin.page("/console/agents")
    for ident in ("config-params", "config-tools", "config-variables", "params_schema"):
        assert f'<textarea id="f-{ident}"' in form, ident
    await _keyed_agent(admin)
    agent = await agents.get_agent(db, "keyed-bot")
    assert agent["config"]["params"] == {"top_p": 0.9, "seed": 7}
    assert agent["config"]["tools"] == {"search": SEARCH, "lookup": LOOKUP}
    assert agent["config"]["variables"] == {"customer": {"type": "string", "description": "Who asks."}}
    assert agent["params_schema"] is None  # an empty editor is not sent

    # The edit form shows each field as indented JSON, and saves what the editor holds.
    edit = await admin.page("/console/agents/keyed-bot/edit")
    assert json.loads(textarea(edit, "config-params")) == {"top_p": 0.9, "seed": 7}
    assert '\n  "seed": 7' in textarea(edit, "config-params")
    assert textarea(edit, "params_schema") == ""
    saved = await admin.http.post(
        "/console/agents/keyed-bot/edit",
        data={
            "csrf": csrf_of(edit),
            "version": str(agent["version"]),
            "name": "Keyed bot",
            "description": "",
            **{f"config.{name}": str(value) for name, value in agent["config"].items() if not isinstance(value, dict)},
            "config.params": '{"top_p": 0.5, "stop": ["\\n"]}',  # seed taken out: removed
            "config.tools": textarea(edit, "config-tools"),  # as it was: unchanged
            "config.variables": textarea(edit, "config-variables"),
            "params_schema": '{"type": "object", "properties": {"top_p": {"maximum": 1}}}',
        },
    )
    assert saved.status_code == 303, saved.text
    agent = await agents.get_agent(db, "keyed-bot")
    assert agent["config"]["params"] == {"top_p": 0.5, "stop": ["\n"]}
    assert agent["config"]["tools"] == {"search": SEARCH, "lookup": LOOKUP}
    assert agent["params_schema"] == {"type": "object", "properties": {"top_p": {"maximum": 1}}}

    # The history shows the change entry by entry, and the schema.
    history = await admin.page("/console/agents/keyed-bot/history")
    for field in ("config.params.seed", "config.params.stop", "config.params.top_p", "params_schema"):
        assert f"<code>{field}</code>" in history, field
    assert "<code>config.tools" not in history.split("update of agent")[0]  # the tools did not change


async def test_a_variant_disables_a_tool_and_the_pages_show_where_each_entry_comes_from(
    admin: Browser, db: Database
) -> None:
    await _keyed_agent(admin)
    made = await admin.submit(
        "/console/agents/keyed-bot/variants",
        {"variant_name": "Narrow", "overrides.params": '{"seed": 8}', "overrides.params_unset": '["top_p"]'},
        from_page="/console/agents/keyed-bot",
    )
    assert made.status_code == 303, made.text
    page = await admin.page("/console/agents/keyed-bot/variants/narrow")
    assert json.loads(textarea(page, "overrides-params")) == {"seed": 8}
    assert json.loads(textarea(page, "overrides-params_unset")) == ["top_p"]
    assert textarea(page, "overrides-tools") == ""
    assert "the base config&#39;s: lookup, search" in page  # what the tools editor inherits
    edited = await admin.http.post(
        "/console/agents/keyed-bot/variants/narrow/edit",
        data={
            "csrf": csrf_of(page),
            "version": version_of(page),
            "variant_name": "Narrow",
            "description": "",
            "overrides.params": textarea(page, "overrides-params"),
            "overrides.params_unset": textarea(page, "overrides-params_unset"),
            "overrides.tools": '{"lookup": {"disabled": true}}',
            "overrides.variables": "",
        },
    )
    assert edited.status_code == 303, edited.text
    shown = await variants.get_variant(db, "keyed-bot", "narrow", environment="production")
    assert shown["overrides"]["tools"] == {"lookup": {"disabled": True}}

    page = await admin.page("/console/agents/keyed-bot/variants/narrow")
    preview = rows(page, "preview")
    assert "tools.lookup" not in preview and "params.top_p" not in preview
    assert "badge variant" in preview["params.seed"] and "badge base" in preview["tools.search"]
    assert re.search(r'id="dropped">.*<code>params.top_p</code>.*<code>tools.lookup</code> \(disabled\)', page)
    diff = re.search(r'<table class="diff" id="diff">(.*?)</table>', page, re.S).group(1)
    for field in ("params.top_p", "params.seed", "tools.lookup"):
        assert f"<code>{field}</code>" in diff, field
    against_base = await admin.page("/console/agents/keyed-bot/variants/narrow?against=base")
    diff = re.search(r'<table class="diff" id="diff">(.*?)</table>', against_base, re.S).group(1)
    assert "<code>tools.lookup</code>" in diff and "<code>tools.search</code>" not in diff

    # Activated: the agent page's resolved config says which entries the variant gives.
    confirm = await admin.page("/console/agents/keyed-bot/variants/narrow/activate")
    state = re.search(r'name="state" value="([0-9a-f]+)"', confirm).group(1)
    done = await admin.http.post(
        "/console/agents/keyed-bot/variants/narrow/activate",
        data={"csrf": csrf_of(confirm), "version": "2", "state": state},
    )
    assert done.status_code == 303
    resolved = rows(await admin.page("/console/agents/keyed-bot"), "resolved")
    assert "badge variant" in resolved["params.seed"] and ">8<" in resolved["params.seed"]
    assert "badge base" in resolved["tools.search"] and "badge base" in resolved["variables.customer"]
    assert "params.top_p" not in resolved and "tools.lookup" not in resolved
    assert '<pre class="json">' in resolved["tools.search"]  # a tool shown as indented JSON

    # Emptied, an editor leaves the variant no entries of its own: the base's are inherited.
    page = await admin.page("/console/agents/keyed-bot/variants/narrow")
    cleared = await admin.http.post(
        "/console/agents/keyed-bot/variants/narrow/edit",
        data={
            "csrf": csrf_of(page),
            "version": version_of(page),
            "variant_name": "Narrow",
            "description": "",
            "overrides.params": "",
            "overrides.params_unset": "",
            "overrides.tools": textarea(page, "overrides-tools"),
            "overrides.variables": "",
        },
    )
    assert cleared.status_code == 303, cleared.text
    shown = await variants.get_variant(db, "keyed-bot", "narrow", environment="production")
    assert shown["overrides"] == {"tools": {"lookup": {"disabled": True}}}


async def _everything(db: Database) -> dict[str, Any]:
    """What a refused form must leave as it was."""
    agent = await agents.get_agent(db, "keyed-bot")
    found = await variants.list_variants(
        db, "keyed-bot", after=None, limit=100, is_active=None, environment="production"
    )
    history = await revisions.list_revisions(db, "keyed-bot", after=None, limit=100, target_id=None)
    return {"agent": agent, "variants": found, "revisions": history}


async def test_bad_json_is_shown_at_its_editor_with_the_text_kept_and_nothing_written(
    admin: Browser, db: Database
) -> None:
    await _keyed_agent(admin)
    before = await _everything(db)
    typed = '{\n  "top_p": 0.9,\n  "seed": 7,,\n}'
    bad = await admin.submit(
        "/console/agents/keyed-bot/variants",
        {"variant_name": "Broken", "overrides.params": typed, "overrides.tools": '{"a": 1, "a": 2}'},
        from_page="/console/agents/keyed-bot",
    )
    assert bad.status_code == 422
    assert "Not valid JSON" in field_error(bad.text, "overrides-params")
    assert "line 3" in field_error(bad.text, "overrides-params")
    assert '"a" is given twice' in field_error(bad.text, "overrides-tools")
    assert textarea(bad.text, "overrides-params") == typed  # as typed
    assert re.search(r'<textarea id="f-overrides-params"[^>]* class="json"[^>]* aria-invalid="true"', bad.text)
    assert 'value="Broken"' in bad.text  # the rest of the form too

    edit = await admin.page("/console/agents/keyed-bot/edit")
    refused = await admin.http.post(
        "/console/agents/keyed-bot/edit",
        data={
            "csrf": csrf_of(edit),
            "version": "1",
            "name": "Keyed bot",
            "config.model_provider": "openai",
            "config.model_name": "gpt-4o",
            "config.variables": "{'customer': 1}",
            "params_schema": "NaN",
        },
    )
    assert refused.status_code == 422
    assert "Not valid JSON" in field_error(refused.text, "config-variables")
    assert "NaN is not a JSON number" in field_error(refused.text, "params_schema")
    assert textarea(refused.text, "config-variables") == "{'customer': 1}"
    assert await _everything(db) == before


async def test_an_invalid_tool_schema_is_shown_at_the_tools_editor_with_its_path_and_nothing_is_written(
    admin: Browser, db: Database
) -> None:
    await _keyed_agent(admin)
    before = await _everything(db)
    wrong = {"description": "x", "parameters": {"type": "object", "properties": {"q": {"type": "strin"}}}}
    typed = json.dumps({"search": wrong}, indent=2)
    bad = await admin.submit(
        "/console/agents/keyed-bot/variants",
        {"variant_name": "Wrong", "overrides.tools": typed},
        from_page="/console/agents/keyed-bot",
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "overrides-tools").startswith("overrides.tools.search.parameters.properties.q.type: ")
    assert textarea(bad.text, "overrides-tools") == typed

    # On the base config, and a prompt using a variable nobody declared: at the prompt.
    edit = await admin.page("/console/agents/keyed-bot/edit")
    data = {
        "csrf": csrf_of(edit),
        "version": "1",
        "name": "Keyed bot",
        "config.model_provider": "openai",
        "config.model_name": "gpt-4o",
        "config.system_prompt": "Help {{customer}} with {{order}}.",
        "config.tools": json.dumps({"search": SEARCH, "other": wrong}),
    }
    refused = await admin.http.post("/console/agents/keyed-bot/edit", data=data)
    assert refused.status_code == 422
    assert "config.tools.other.parameters.properties.q.type: " in field_error(refused.text, "config-tools")
    data["config.tools"] = textarea(edit, "config-tools")
    undeclared = await admin.http.post("/console/agents/keyed-bot/edit", data=data)
    assert undeclared.status_code == 422
    assert "'order'" in field_error(undeclared.text, "config-system_prompt")
    assert textarea(undeclared.text, "config-system_prompt") == "Help {{customer}} with {{order}}."
    # A declaration's own error, inside the variables editor, names its path.
    data["config.variables"] = '{"customer": {"type": "text"}, "order": {"type": "integer", "default": "x"}}'
    typed_wrong = await admin.http.post("/console/agents/keyed-bot/edit", data=data)
    assert typed_wrong.status_code == 422
    message = field_error(typed_wrong.text, "config-variables")
    assert "config.variables.customer.type: " in message and "config.variables.order" in message
    assert await _everything(db) == before


def test_an_editor_is_sent_as_the_patch_that_leaves_exactly_its_entries() -> None:
    current = {"top_p": 0.9, "seed": 7, "stop": ["\n"]}
    assert entries_patch(current, {"top_p": 0.9, "seed": 8}) == {"stop": None, "seed": 8}
    assert entries_patch(current, {}) == {"top_p": None, "seed": None, "stop": None}
    assert entries_patch({"seed": 1}, {"seed": True}) == {"seed": True}  # 1 == True, but not in JSON
    assert entries_patch(current, ["top_p"]) == ["top_p"]  # not an object: the API's validation names it
    values, bad = json_of({"a": " ", "b": "[1, 2]", "c": "Infinity", "d": '{"x": {"y": 1, "y": 2}}'}, "abcde")
    assert values == {"b": [1, 2]}
    assert set(bad) == {"c", "d"} and '"y" is given twice' in bad["d"]


def test_errors_inside_a_json_value_go_to_its_editor_with_their_path() -> None:
    error = InvalidSchema(
        "Invalid tool parameters",
        errors=[
            FieldError("overrides.tools.a.parameters.type", "'x' is not valid"),
            FieldError("overrides.tools.b.parameters", "not an object"),
            FieldError("overrides.system_prompt", "'{{v}}' is not declared"),
            FieldError("params_schema.type", "bad"),
        ],
    )
    problem, errors = errors_of(error)
    assert problem == "Invalid tool parameters"
    assert errors == {
        "overrides.tools": "overrides.tools.a.parameters.type: 'x' is not valid\n"
        "overrides.tools.b.parameters: not an object",
        "overrides.system_prompt": "'{{v}}' is not declared",
        "params_schema": "params_schema.type: bad",
    }
