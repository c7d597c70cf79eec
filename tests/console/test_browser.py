"""The console in a real browser: Playwright driving Debian's Chromium against a real
`serve` process on a database of its own.

Each test is one flow a person goes through, on an agent of its own: sign in, create an
agent, fix a variant's bad value next to its field, activate behind the confirmation and
undo, run an experiment and read its results, a `read` key that can change nothing, a
form without its CSRF token, and a revoked key. Each main page is saved as a full-page
screenshot under `SCREENSHOT_DIR` (default `.data/screenshots`).
"""

from __future__ import annotations

import random
import re

import pytest
from playwright.async_api import Locator, Page, expect

from tests.console import browser
from tests.console.browser import Console, post_forms, screenshot, sign_in
from tests.helpers import unique

pytestmark = pytest.mark.live
# The browser fixtures, for this module only (tests/console/conftest.py serves the in-process tests).
chromium_path, playwright_driver, chromium = browser.chromium_path, browser.playwright_driver, browser.chromium
console, context, page = browser.console, browser.context, browser.page


def resolved_row(page: Page, field: str) -> Locator:
    return page.locator(f"#resolved tr[data-field={field}]")


async def test_sign_in_with_the_admin_key_lands_on_the_agents(page: Page, console: Console) -> None:
    await page.goto("/console/agents")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))  # no session yet
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    await screenshot(page, "sign-in")

    # A wrong key: the error is next to the field, which says it is invalid.
    await page.get_by_label("API key").fill("avk_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#key-error")).to_be_visible()
    await expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "sign-in-error")

    # The field is focused, so the keyboard alone corrects it and signs in.
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.keyboard.type(console.admin_key)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/console/agents$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Agents")
    await expect(page.locator(".who .scope")).to_have_text("admin")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_create_an_agent_through_the_form(page: Page, console: Console) -> None:
    await sign_in(page, console.admin_key)
    name = unique("Browser created")
    await page.locator("summary", has_text="Create an agent").click()
    await page.locator("#f-name").fill(name)
    await page.locator("#f-config-model_provider").fill("openai")
    await page.locator("#f-config-model_name").fill("gpt-4o-mini")
    await page.locator("#f-config-temperature").fill("0.3")
    await page.get_by_role("button", name="Create agent").click()

    await expect(page).to_have_url(re.compile(r"/console/agents/[a-z0-9-]+$"))
    slug = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    await expect(resolved_row(page, "model_name").locator("td.value")).to_have_text("gpt-4o-mini")
    await expect(resolved_row(page, "temperature").locator("td.value")).to_have_text("0.3")
    await expect(resolved_row(page, "temperature").locator(".badge")).to_have_text("base")
    created = await console.call("GET", f"/v1/agents/{slug}", 200)
    assert created["name"] == name and created["config"]["model_name"] == "gpt-4o-mini"

    await page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Agents").click()
    await expect(page.locator("table.list").get_by_role("link", name=name)).to_be_visible()
    await screenshot(page, "agents")


async def test_a_bad_variant_value_is_shown_next_to_its_field_then_fixed(page: Page, console: Console) -> None:
    agent = await console.agent()
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}")
    await page.locator("summary", has_text="Create or clone a variant").click()
    name = unique("Warmer")
    await page.locator("#f-variant_name").fill(name)
    temperature = page.locator("#f-overrides-temperature")
    await temperature.fill("hot")
    await page.get_by_role("button", name="Create variant").click()

    error = page.locator("#err-overrides-temperature")
    await expect(error).to_be_visible()
    await expect(error).not_to_be_empty()
    await expect(temperature).to_have_attribute("aria-invalid", "true")
    await expect(temperature).to_have_attribute("aria-describedby", "err-overrides-temperature")
    await expect(temperature).to_be_focused()  # keyboard users land on the problem
    await expect(temperature).to_have_value("hot")  # what was typed is kept
    await expect(page.locator("#f-variant_name")).to_have_value(name)
    await screenshot(page, "field-error")

    await temperature.fill("0.9")
    await page.get_by_role("button", name="Create variant").click()
    await expect(page).to_have_url(re.compile(rf"/console/agents/{agent['slug']}/variants/[a-z0-9-]+$"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    change = page.locator("#diff tbody tr", has=page.locator("code", has_text=re.compile(r"^temperature$")))
    await expect(change.locator("td.from")).to_have_text("0.2")
    await expect(change.locator("td.to")).to_have_text("0.9")
    await screenshot(page, "variant")


async def test_a_tool_in_a_json_editor_refused_at_its_path_then_disabled(page: Page, console: Console) -> None:
    search = {"description": "Search.", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
    agent = await console.agent(tools={"search": search})
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}")
    await page.locator("summary", has_text="Create or clone a variant").click()
    await page.locator("#f-variant_name").fill(unique("No search"))
    tools = page.locator("#f-overrides-tools")
    typed = '{"search": {"description": "x", "parameters": {"properties": {"q": {"type": "strin"}}}}}'
    await tools.fill(typed)
    await page.get_by_role("button", name="Create variant").click()

    error = page.locator("#err-overrides-tools")
    await expect(error).to_contain_text("overrides.tools.search.parameters.properties.q.type: ")
    await expect(tools).to_have_attribute("aria-invalid", "true")
    await expect(tools).to_be_focused()
    await expect(tools).to_have_value(typed)  # what was typed is kept
    await screenshot(page, "json-editor-error")

    await tools.fill('{"search": {"disabled": true}}')
    await page.get_by_role("button", name="Create variant").click()
    await expect(page).to_have_url(re.compile(rf"/console/agents/{agent['slug']}/variants/[a-z0-9-]+$"))
    await expect(page.locator("#preview tr[data-field=tools] td.value")).to_have_text("none")
    await expect(page.locator("#dropped")).to_contain_text("tools.search (disabled)")


async def test_activate_behind_the_confirmation_then_undo(page: Page, console: Console) -> None:
    agent = await console.agent()
    variant = await console.variant(agent, temperature=0.9)
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}")
    await expect(resolved_row(page, "temperature").locator("td.value")).to_have_text("0.2")

    await page.locator("#variants").get_by_role("link", name="Activate…").click()
    await expect(page).to_have_url(re.compile(rf"/variants/{variant['slug']}/activate$"))
    changes = page.locator("#confirm-changes tbody tr")
    await expect(changes).to_have_count(1)  # only what the variant overrides
    await expect(changes.locator("th")).to_have_text("temperature")
    await expect(changes.locator("td.from")).to_have_text("0.2")
    await expect(changes.locator("td.to")).to_have_text("0.9")
    await screenshot(page, "confirm")

    await page.get_by_role("button", name="Activate", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/console/agents/{agent['slug']}$"))
    await expect(resolved_row(page, "temperature").locator("td.value")).to_have_text("0.9")
    await expect(resolved_row(page, "temperature").locator(".badge")).to_have_text("variant")
    await expect(resolved_row(page, "model_name").locator(".badge")).to_have_text("base")
    await expect(page.locator("#variants tr.is-active")).to_contain_text(variant["variant_name"])
    resolved = await console.call("GET", f"/v1/agents/{agent['id']}/resolved", 200)
    assert resolved["temperature"] == 0.9
    await screenshot(page, "agent")

    await page.get_by_role("navigation", name="Agent").get_by_role("link", name="History").click()
    await expect(page.locator("#timeline > li").first).to_contain_text("activate")
    await screenshot(page, "history")
    # Undo asks first, naming the change (what, by whom, when, before -> after).
    await page.get_by_role("link", name="Undo the latest change…").click()
    await expect(page).to_have_url(re.compile(rf"/console/agents/{agent['slug']}/undo$"))
    await expect(page.locator("main")).to_contain_text("activate of variant")
    await screenshot(page, "confirm-undo")
    await page.get_by_role("button", name="Undo", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/console/agents/{agent['slug']}/history\?undone=rev_\w+$"))
    await expect(page.locator(".problem")).to_have_count(0)
    await expect(page.locator(".notice")).to_contain_text("Undone: revision")

    await page.goto(f"/console/agents/{agent['slug']}")
    await expect(resolved_row(page, "temperature").locator("td.value")).to_have_text("0.2")
    await expect(resolved_row(page, "temperature").locator(".badge")).to_have_text("base")
    await expect(page.locator("#variants tr.is-active")).to_have_count(0)


def outcomes(experiment_id: str, arms: list[tuple[str | None, float, float]], per_arm: int) -> list[dict]:
    """`per_arm` runs of each (variant_id, success rate, mean score) arm, drawn with a fixed seed."""
    draw = random.Random(20261123)
    return [
        {
            "experiment_id": experiment_id,
            "variant_id": variant_id,
            "input_tokens": draw.randint(200, 400),
            "output_tokens": draw.randint(50, 150),
            "latency_ms": draw.uniform(300, 900),
            "success": draw.random() < rate,
            "score": round(draw.gauss(score, 0.1), 4),
        }
        for variant_id, rate, score in arms
        for _ in range(per_arm)
    ]


async def test_an_experiment_created_started_and_read(page: Page, console: Console) -> None:
    agent = await console.agent()
    variant = await console.variant(agent, temperature=0.9)
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}/experiments")
    name = unique("Warmth test")
    await page.locator("#f-name").fill(name)
    await expect(page.locator("#arm-0-variant")).to_have_value("base")  # the control, by default
    arm = page.locator("#arm-1-variant")  # a text input with suggestions, or a select
    if await arm.evaluate("(e) => e.tagName") == "SELECT":
        await arm.select_option(variant["slug"])
    else:
        await arm.fill(variant["slug"])
    await screenshot(page, "experiments")
    await page.get_by_role("button", name="Create draft").click()

    await expect(page).to_have_url(re.compile(r"/experiments/exp_[A-Za-z0-9]+$"))
    experiment_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#status")).to_have_text("draft")
    # Starting asks first, saying who will get what.
    await page.get_by_role("link", name="Start…").click()
    await expect(page.locator("#arms tbody tr")).to_have_count(2)
    await expect(page.locator("#arms tbody tr").nth(1)).to_contain_text("50%")
    await screenshot(page, "confirm-start")
    await page.get_by_role("button", name="Start", exact=True).click()
    await expect(page.locator("#status")).to_have_text("running")

    data = outcomes(experiment_id, [(None, 0.4, 0.5), (variant["id"], 0.8, 0.7)], per_arm=100)
    accepted = await console.call("POST", f"/v1/agents/{agent['id']}/outcomes", 202, json={"data": data})
    assert accepted["accepted"] == 200
    await page.reload()

    await expect(page.locator("table.list tbody tr")).to_have_count(2)
    await expect(page.locator("table.list tbody tr").first).to_contain_text("100")
    assert await page.locator("figure.chart svg").count() >= 4
    reading = page.locator("#reading p")
    await expect(reading.first).to_contain_text("still running")
    await expect(page.locator("#reading")).to_contain_text("evidence")  # 40% vs 80% over 100 runs each
    await screenshot(page, "experiment-results")

    # While it runs, the agent page says who gets what.
    await page.goto(f"/console/agents/{agent['slug']}")
    await expect(page.locator("#split-arms tbody tr")).to_have_count(2)
    await expect(page.locator("#split")).to_contain_text("without a subject")
    await screenshot(page, "agent-split")

    # Stopping asks first: it is final, and traffic goes back to normal resolution.
    await page.goto(f"/console/agents/{agent['slug']}/experiments/{experiment_id}")
    await page.get_by_role("link", name="Stop (final)…").click()
    await expect(page.locator("main")).to_contain_text("never start again")
    await screenshot(page, "confirm-stop")
    await page.get_by_role("button", name="Stop (final)", exact=True).click()
    await expect(page.locator("#status")).to_have_text("stopped")


async def test_long_prompts_are_collapsed_and_compared_line_by_line(page: Page, console: Console) -> None:
    lines = [
        f"Rule {n:04d}: answer the customer politely and cite the policy section that applies." for n in range(1250)
    ]
    agent = await console.agent(system_prompt="\n".join(lines))
    lines[600] = "Rule 0600: answer in one short paragraph."
    variant = await console.variant(agent, system_prompt="\n".join(lines))
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}")
    prompt = resolved_row(page, "system_prompt").locator("details")
    await expect(prompt).not_to_have_attribute("open", "")
    assert await page.evaluate("() => document.documentElement.scrollHeight") < 5_000  # was 26,000 px
    await screenshot(page, "agent-long-prompt")
    await prompt.locator("summary").click()
    await expect(prompt.locator("> span.text")).to_contain_text("Rule 1249")

    await page.goto(f"/console/agents/{agent['slug']}/variants/{variant['slug']}?against=base")
    await expect(page.locator("#diff .linediff .removed")).to_have_text(
        "- " + "Rule 0600: answer the customer politely and cite the policy section that applies."
    )
    await expect(page.locator("#diff .linediff .added")).to_have_text("+ Rule 0600: answer in one short paragraph.")
    await screenshot(page, "variant-line-diff")


async def test_a_read_key_sees_no_control_that_changes_anything(page: Page, console: Console) -> None:
    """In a browser profile of its own (each test's is), signed in with a `read` key."""
    agent = await console.agent()
    variant = await console.variant(agent, temperature=0.9)
    experiment = await console.call(
        "POST",
        f"/v1/agents/{agent['id']}/experiments",
        201,
        json={
            "name": unique("read-only view"),
            "arms": [{"variant": "base", "weight": 1}, {"variant": variant["id"], "weight": 1}],
        },
    )
    _, secret = await console.key("read")
    await sign_in(page, secret)
    await expect(page.locator(".who .scope")).to_have_text("read")

    base = f"/console/agents/{agent['slug']}"
    # The buttons of every form that changes something (the read-only pages have only Search, Show and Compare).
    changing = re.compile("create|activate|undo|save|start|stop|restore|clone", re.I)
    for path in (
        "/console/agents",
        base,
        f"{base}/variants/{variant['slug']}",
        f"{base}/history",
        f"{base}/experiments",
        f"{base}/experiments/{experiment['id']}",
        f"{base}/experiments/{experiment['id']}/start",
        f"{base}/undo",
        f"{base}/variants/{variant['slug']}/activate",
    ):
        response = await page.goto(path)
        assert response is not None and response.status == 200, path
        assert await post_forms(page) == ["/console/sign-out"], path
        # Hidden ones too (a closed <details> hides its form from the accessibility tree).
        await expect(page.get_by_role("button", name=changing, include_hidden=True), path).to_have_count(0)
        # Nor links to the pages that change things (by address: agents' own names may say "create").
        await expect(
            page.locator("a[href$='/edit'], a[href$='/activate'], a[href$='/deactivate']"), path
        ).to_have_count(0)
        assert (
            await page.evaluate("""() => [...document.querySelectorAll(
            "input:not([type=hidden]), textarea, select")].filter((e) => !e.form || e.form.method !== "get")
            .map((e) => e.name)""")
            == []
        ), path  # only search and compare inputs, which GET
    # The confirmation still shows what would change, without the button to do it.
    await expect(page.locator("#confirm-changes")).to_be_visible()
    await screenshot(page, "read-only-confirm")


async def test_a_post_without_the_csrf_token_is_refused(page: Page, console: Console) -> None:
    await sign_in(page, console.admin_key)
    slug = re.sub(r"[^a-z0-9]+", "-", unique("forged").lower())
    await page.locator("summary", has_text="Create an agent").click()
    await page.locator("#f-name").fill("Forged agent")
    await page.locator("#f-slug").fill(slug)
    await page.locator("#f-config-model_provider").fill("openai")
    await page.locator("#f-config-model_name").fill("gpt-4o")
    removed = await page.evaluate("""() => {
        const token = document.querySelector('form[action="/console/agents"] input[name=csrf]');
        token.remove();
        return document.querySelectorAll('form[action="/console/agents"] input[name=csrf]').length;
    }""")
    assert removed == 0
    async with page.expect_response(lambda r: r.request.method == "POST") as posted:
        await page.get_by_role("button", name="Create agent").click()
    assert (await posted.value).status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Refused")
    await expect(page.locator("main")).to_contain_text("CSRF")
    await screenshot(page, "csrf-refused")
    await console.call("GET", f"/v1/agents/{slug}", 404)  # nothing was created


async def test_a_revoked_key_is_signed_out(page: Page, console: Console) -> None:
    agent = await console.agent()
    name, secret = await console.key("write")
    await sign_in(page, secret)
    await page.goto(f"/console/agents/{agent['slug']}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(agent["name"])

    await console.call("DELETE", f"/v1/keys/{name}", 204)
    await page.goto(f"/console/agents/{agent['slug']}")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    # Whatever cookie the browser still holds, its session is over: every page asks to sign in.
    await page.goto(f"/console/agents/{agent['slug']}/history")
    await expect(page).to_have_url(re.compile(r"/console/sign-in$"))

    # Nor can it sign in again.
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#key-error")).to_be_visible()


async def test_switch_environment_edit_a_rule_and_see_who_gets_what_change(page: Page, console: Console) -> None:
    """Issue 18: in another environment than production, a rule made in the editor (no
    script needed) shows in the agent's "who gets what" panel and decides the preview;
    production's panel stays as it was."""
    agent = await console.agent()
    variant = await console.variant(agent, temperature=0.9)
    environment = await console.call("POST", "/v1/environments", 201, json={"name": unique("Stage")})
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}")
    await expect(page.locator("#who-rules")).to_contain_text("none in production")

    # The switcher: pick the environment, and the page (and every link on it) stays there.
    await page.get_by_label("Environment").select_option(environment["slug"])
    await page.get_by_role("button", name="Switch").click()
    await expect(page).to_have_url(re.compile(rf"/console/agents/{agent['slug']}\?environment={environment['slug']}$"))
    await expect(page.get_by_role("heading", name=f"Who gets what in {environment['name']}")).to_be_visible()
    await page.get_by_role("navigation", name="Agent").get_by_role("link", name="Targeting rules").click()
    await expect(page).to_have_url(re.compile(rf"/rules\?environment={environment['slug']}$"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"in {environment['slug']}")

    # A rule, built with the editor's buttons: add it, give it two conditions, pick what it serves.
    await page.get_by_role("button", name="Add a rule").click()
    await expect(page.locator(".notice")).to_contain_text("Not saved yet")
    await page.locator("#f-rules-0-name").fill("Pro plans")
    await page.locator("#f-rules-0-when-0-attribute").fill("plan")
    await page.locator("#f-rules-0-when-0-op").select_option("in")
    await page.locator("#f-rules-0-when-0-value").fill("pro\nenterprise")
    await page.get_by_role("button", name="Add a condition to rule 1").click()
    await page.locator("#f-rules-0-when-1-attribute").fill("seats")
    await page.locator("#f-rules-0-when-1-op").select_option("gte")
    await page.locator("#f-rules-0-when-1-value").fill("forty")
    await page.locator("#f-rules-0-serve-variant").select_option(variant["id"])
    await screenshot(page, "rules")
    await page.get_by_role("button", name="Save rules").first.click()

    # The API's error, next to its field, what was typed kept; fixed, saved.
    value = page.locator("#f-rules-0-when-1-value")
    await expect(page.locator("#err-rules-0-when-1-value")).to_contain_text("must be a number")
    await expect(value).to_have_attribute("aria-invalid", "true")
    await expect(value).to_be_focused()
    await expect(page.locator("#f-rules-0-name")).to_have_value("Pro plans")
    await value.fill("40")
    await page.get_by_role("button", name="Save rules").first.click()

    await expect(page).to_have_url(
        re.compile(rf"/console/agents/{agent['slug']}\?environment={environment['slug']}#who-h$")
    )
    await expect(page.locator("#who-rules li.rule")).to_have_text(
        f"Rule 1, “Pro plans”: when plan is one of pro, enterprise and seats ≥ 40 → serves variant {variant['slug']}"
    )
    stored = await console.call("GET", f"/v1/agents/{agent['id']}/rules?environment={environment['slug']}", 200)
    assert [rule["name"] for rule in stored["rules"]] == ["Pro plans"]

    # The preview: the real resolution picks the rule for a pro with 40 seats, not for 39.
    await page.get_by_label("Attributes").fill("plan=pro\nseats=40")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview-why")).to_contain_text(f"gets variant {variant['slug']}, because rule 1")
    await expect(page.locator("#preview-config tr[data-field=temperature] td.value")).to_have_text("0.9")
    await screenshot(page, "who-gets-what")
    await page.get_by_label("Attributes").fill("plan=pro\nseats=39")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview-why")).to_contain_text("gets the base config, because no rule holds")
    resolved = await console.call(
        "GET", f"/v1/agents/{agent['id']}/resolved?environment={environment['slug']}&attr.plan=pro&attr.seats=40", 200
    )
    assert resolved["source"] == "rule" and resolved["variant_id"] == variant["id"]

    # Production's panel has no rule.
    await page.get_by_label("Environment").select_option("production")
    await page.get_by_role("button", name="Switch").click()
    await expect(page.locator("#who-rules")).to_contain_text("none in production")
    await expect(page.locator("#who-rules li.rule")).to_have_count(0)


async def test_a_rollout_started_from_its_variant_and_rolled_back_by_the_server(page: Page, console: Console) -> None:
    agent = await console.agent()
    variant = await console.variant(agent, temperature=0.9)
    await sign_in(page, console.admin_key)
    await page.goto(f"/console/agents/{agent['slug']}/variants/{variant['slug']}")
    # The defaults: 5, 25, 50 and 100%, 30 minutes each; success rate and latency guarded.
    await expect(page.locator("#step-0-percent")).to_have_value("5")
    await expect(page.locator("#step-3-percent")).to_have_value("100")
    await expect(page.locator("#step-3-hold")).to_have_value("30")
    await expect(page.locator("#f-guardrails-success_rate")).to_have_value("0.02")
    await expect(page.locator("#f-guardrails-latency_ms_mean")).to_have_value("250")
    await screenshot(page, "variant-roll-out")
    await page.get_by_role("button", name="Review the start…").click()

    # Starting asks first, saying who will get what.
    await expect(page).to_have_url(re.compile(r"/experiments/exp_[A-Za-z0-9]+/start$"))
    experiment_id = page.url.rsplit("/", 2)[1]
    await expect(page.locator("#rollout-who")).to_contain_text("5% of subjects")
    await expect(page.locator("#rollout-steps tbody tr")).to_have_count(4)
    await screenshot(page, "confirm-rollout")
    await page.get_by_role("button", name="Start", exact=True).click()
    await expect(page.locator("#status")).to_have_text("running")
    await expect(page.locator("#current-step")).to_contain_text("Step 1 of 4")
    await expect(page.locator("#next-step")).to_contain_text("in 30 minutes at the earliest")

    # The variant succeeds half as often: the server's own scheduler rolls it back.
    data = outcomes(experiment_id, [(None, 0.95, 0.5), (variant["id"], 0.45, 0.5)], per_arm=300)
    await console.call("POST", f"/v1/agents/{agent['id']}/outcomes", 202, json={"data": data})
    for _ in range(40):
        shown = await console.call("GET", f"/v1/agents/{agent['id']}/experiments/{experiment_id}", 200)
        if shown["status"] == "rolled_back":
            break
        await page.wait_for_timeout(250)
    await page.reload()
    await expect(page.locator("#status")).to_have_text("rolled back")
    await expect(page.locator("#reason")).to_contain_text("success rate got worse by more than the 2 percentage")
    await expect(page.locator("#guardrail-charts figure")).to_have_count(2)
    assert await page.locator("#guardrail-charts .breach").count() == 1
    await screenshot(page, "rollout-rolled-back")
