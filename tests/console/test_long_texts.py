"""Issue 16, item 20: long prompts. A 100 KB system prompt made the agent page 26,000 px
tall, was edited in a four-line box, and comparisons showed both whole strings side by
side. Long values are collapsed (<details>, the first lines shown), prompts get a large
editor, and texts are compared as a line diff (only the changed lines, a little context)."""

from __future__ import annotations

import re

from services.api.agents import service as agents
from services.api.agents.schemas import AgentCreate
from services.api.db import Database
from services.api.variants import service as variants
from services.api.variants.schemas import VariantCreate, VariantUpdate
from tests.console.conftest import Browser, csrf_of

LINES = 1_250  # 80 characters each: 100 KB


def prompt(changed: int | None = None) -> str:
    lines = [
        f"Rule {n:04d}: answer the customer politely and cite the policy section that applies." for n in range(LINES)
    ]
    if changed is not None:
        lines[changed] = f"Rule {changed:04d}: answer in one short paragraph, never more than five sentences."
    return "\n".join(lines)


def outside_details(html: str) -> str:
    """The page without its <details> blocks (collapsed unless opened)."""
    return re.sub(r"<details\b.*?</details>", "", html, flags=re.S)


async def _long_agent(db: Database) -> dict:
    return await agents.create_agent(
        db,
        AgentCreate.model_validate(
            {"name": "Long bot", "config": {"model_provider": "p", "model_name": "m", "system_prompt": prompt()}}
        ),
    )


async def test_a_100_kb_prompt_is_collapsed_on_the_agent_page_and_edited_in_a_large_box(
    admin: Browser, db: Database
) -> None:
    assert len(prompt()) > 100_000
    await _long_agent(db)
    page = await admin.page("/console/agents/long-bot")
    shown = outside_details(page)
    assert "Rule 0100" not in shown and len(shown) < 30_000, len(shown)
    # The resolved config shows its first lines, and the whole prompt behind a <details>.
    row = re.search(r'<tr data-field="system_prompt">(.*?)</tr>', page, re.S)
    assert row and re.search(r"<details[^>]*>\s*<summary[^>]*>.*?Rule 0000", row.group(1), re.S)
    assert "<details open" not in row.group(1) and "Rule 1249" in row.group(1)
    assert "1,250 lines" in row.group(1)
    # The variant form's placeholders show what a field inherits, not 100 KB of it.
    assert len(page) < len(prompt()) + 40_000

    # The base config's editor: a large box, as wide as the form.
    edit = await admin.page("/console/agents/long-bot/edit")
    box = re.search(
        r'<div class="field([^"]*)">\s*<label for="f-config-system_prompt">.*?<textarea ([^>]*)>', edit, re.S
    )
    assert box and "wide" in box.group(1)
    rows = re.search(r'rows="(\d+)"', box.group(2))
    assert rows and int(rows.group(1)) >= 20 and 'class="prompt"' in box.group(2)


async def test_long_prompts_are_compared_as_a_line_diff(admin: Browser, db: Database) -> None:
    agent = await _long_agent(db)
    made = await variants.create_variant(
        db,
        agent["id"],
        VariantCreate.model_validate({"variant_name": "Brief", "overrides": {"system_prompt": prompt(changed=600)}}),
    )
    page = await admin.page("/console/agents/long-bot/variants/brief?against=base")
    diff = re.search(r'id="diff-h".*?(?=id="preview-h")', page, re.S)
    assert diff
    section = diff.group(0)
    # The changed line, as removed and added, with a little context; not the 100 KB around it.
    assert re.search(r'class="removed">- Rule 0600: answer the customer politely', section)
    assert re.search(r'class="added">\+ Rule 0600: answer in one short paragraph', section)
    assert "Rule 0599" in section and "Rule 0601" in section  # context
    assert "Rule 0100" not in section and "Rule 1000" not in section and len(section) < 8_000, len(section)

    # History: the edit of the override, as a line diff too.
    form = await admin.page("/console/agents/long-bot/variants/brief")
    edited = await admin.http.post(
        "/console/agents/long-bot/variants/brief/edit",
        data={
            "csrf": csrf_of(form),
            "version": str(made["version"]),
            "variant_name": "Brief",
            "description": "",
            "overrides.system_prompt": prompt(changed=900),
        },
    )
    assert edited.status_code == 303, edited.text[:500]
    history = await admin.page("/console/agents/long-bot/history")
    newest = re.search(r'<ol class="timeline" id="timeline">\s*<li>(.*?)</li>', history, re.S)
    assert newest
    entry = newest.group(1)
    assert re.search(r'class="added">\+ Rule 0600: answer the customer politely', entry)
    assert re.search(r'class="removed">- Rule 0900: answer the customer politely', entry)
    assert "Rule 0100" not in entry and len(entry) < 10_000, len(entry)
    # A number is still shown as from -> to.
    await variants.update_variant(
        db, agent["id"], made["id"], VariantUpdate.model_validate({"overrides": {"temperature": 0.3}})
    )
    history = await admin.page("/console/agents/long-bot/history")
    assert re.search(r'<code>overrides.temperature</code></th><td class="from">.*?null.*?<td class="to">0\.3', history)
