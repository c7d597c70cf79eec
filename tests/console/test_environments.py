"""Issue 18, the console's part: an environment switcher on every agent page (the choice
kept in the URL; a bound key sees its own only), activation in the chosen environment
behind a confirmation naming it, the "who gets what" panel read top to bottom, the preview
of a context by the real resolution, and the rule editor with the API's errors next to
their fields."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.agents import service as agents
from services.api.agents.schemas import AgentCreate
from services.api.console import targeting
from services.api.db import Database
from services.api.environments import service as environments
from services.api.environments.schemas import EnvironmentCreate
from services.api.experiments import service as experiments
from services.api.experiments.schemas import ExperimentCreate
from services.api.keys import service as keys
from services.api.keys.schemas import KeyCreate
from services.api.rules import service as rules
from services.api.rules.schemas import RuleSetReplace
from services.api.variants import service as variants
from services.api.variants.schemas import VariantCreate
from services.shared.agent_config import resolve_agent_config
from services.shared.identifiers import new_id
from tests.console.conftest import Browser, csrf_of, make_key


def _text(html: str) -> str:
    """The page's words: tags gone, spaces squeezed, none before punctuation."""
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#34;", '"').replace("&#39;", "'")
    return re.sub(r" ([,.:;])", r"\1", words)


def _posts(html: str) -> list[str]:
    return re.findall(r'<form method="post" action="([^"]+)"', html)


async def _agent(db: Database, name: str = "Env bot") -> dict[str, Any]:
    """An agent with variants warm (0.9) and cold (0.1), and an environment `staging`."""
    agent = await agents.create_agent(
        db,
        AgentCreate.model_validate(
            {"name": name, "config": {"model_provider": "p", "model_name": "m", "temperature": 0.5}}
        ),
    )
    for variant_name, temperature in (("Warm", 0.9), ("Cold", 0.1)):
        await variants.create_variant(
            db,
            agent["id"],
            VariantCreate.model_validate({"variant_name": variant_name, "overrides": {"temperature": temperature}}),
        )
    await environments.create_environment(db, EnvironmentCreate(name="Staging"))
    return agent


async def _ruled(db: Database, agent: dict[str, Any]) -> dict[str, Any]:
    """In staging: two rules, a running split base/cold 1:3, and warm active."""
    await rules.replace_rule_set(
        db,
        agent["id"],
        "staging",
        RuleSetReplace.model_validate(
            {
                "rules": [
                    {
                        "name": "Big pro",
                        "when": [
                            {"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
                            {"attribute": "seats", "op": "gte", "value": 40},
                        ],
                        "serve": {"variant": "cold"},
                    },
                    {
                        "name": "Nowhere",
                        "when": [{"attribute": "country", "op": "not_exists"}],
                        "serve": {"variant": "base"},
                    },
                ]
            }
        ),
    )
    experiment = await experiments.create_experiment(
        db,
        agent["id"],
        ExperimentCreate.model_validate(
            {"name": "Cold split", "arms": [{"variant": "base", "weight": 1}, {"variant": "cold", "weight": 3}]}
        ),
        environment="staging",
    )
    await experiments.start_experiment(db, agent["id"], experiment["id"], environment="staging")
    await variants.activate_variant(db, agent["id"], "warm", environment="staging")
    return experiment


# ------------------------------------------------------------------------------ switcher


async def test_every_agent_page_switches_environment_and_keeps_it_in_its_links_and_forms(
    admin: Browser, db: Database
) -> None:
    await _agent(db)
    base = "/console/agents/env-bot"
    experiment = await experiments.create_experiment(
        db,
        "env-bot",
        ExperimentCreate.model_validate(
            {"name": "Draft", "arms": [{"variant": "base", "weight": 1}, {"variant": "cold", "weight": 1}]}
        ),
        environment="staging",
    )
    for path in (base, f"{base}/variants/cold", f"{base}/experiments", f"{base}/history", f"{base}/rules"):
        default = await admin.page(path)
        # The switcher lists every environment, production first; without a choice, production.
        options = re.findall(
            r'<option value="([a-z0-9-]+)"( selected)?>[^<]*\((?:production|staging)\)</option>', default
        )
        assert options == [("production", " selected"), ("staging", "")], (path, options)
        assert "environment=" not in "".join(_posts(default)), path  # production is the default: plain URLs
        chosen = await admin.page(path + "?environment=staging")
        assert re.search(r'<option value="staging" selected>', chosen), path
        posts = [action for action in _posts(chosen) if action != "/console/sign-out"]
        assert posts and all(action.endswith("?environment=staging") for action in posts), (path, posts)
    page = await admin.page(f"{base}?environment=staging")
    for tab in ("/rules", "/history", "/experiments"):
        assert f'href="{base}{tab}?environment=staging"' in page, tab
    assert f'href="{base}/variants/cold/activate?environment=staging"' in page
    # GET forms (the preview, "as of", compare) carry it as a field: a GET form drops its action's query.
    assert '<input type="hidden" name="environment" value="staging">' in page
    # An experiment lives in one environment: production does not know staging's.
    await admin.page(f"{base}/experiments/{experiment['id']}?environment=staging")
    await admin.page(f"{base}/experiments/{experiment['id']}", status=404)
    assert "Environment &#39;nowhere&#39; not found" in await admin.page(f"{base}?environment=nowhere", status=404)


async def test_activation_happens_in_the_chosen_environment_behind_a_confirmation_naming_it(
    admin: Browser, db: Database
) -> None:
    await _agent(db)
    path = "/console/agents/env-bot/variants/cold/activate?environment=staging"
    confirm = await admin.page(path)
    assert "<h1>Activate ‘Cold’ in staging?</h1>" in confirm
    assert "In staging, Env bot will run with" in _text(confirm)
    assert 'id="confirm-rules"' not in confirm  # staging has no rules yet
    state = re.search(r'name="state" value="([0-9a-f]+)"', confirm).group(1)
    # The same confirmation's digest is not production's: a form moved to another environment is shown again.
    moved = await admin.http.post(
        "/console/agents/env-bot/variants/cold/activate",
        data={"csrf": csrf_of(confirm), "version": "1", "state": state},
    )
    assert moved.status_code == 409 and "<h1>Activate ‘Cold’ in production?</h1>" in moved.text
    done = await admin.http.post(path, data={"csrf": csrf_of(confirm), "version": "1", "state": state})
    assert done.status_code == 303 and done.headers["location"] == "/console/agents/env-bot?environment=staging"
    assert (await variants.get_variant(db, "env-bot", "cold", environment="staging"))["is_active"]
    assert not (await variants.get_variant(db, "env-bot", "cold", environment="production"))["is_active"]
    assert "every other request gets variant cold, active in staging" in _text(
        await admin.page("/console/agents/env-bot?environment=staging")
    )
    assert "no variant is active in production" in _text(await admin.page("/console/agents/env-bot"))
    again = await admin.page(path)
    assert "already active in staging" in _text(again)
    deactivate = await admin.page("/console/agents/env-bot/variants/cold/deactivate?environment=staging")
    assert "<h1>Deactivate ‘Cold’ in staging?</h1>" in deactivate


# ------------------------------------------------------------------------ who gets what


async def test_the_panel_reads_the_resolution_order_top_to_bottom(admin: Browser, db: Database) -> None:
    agent = await _agent(db)
    await _ruled(db, agent)
    page = _text(await admin.page("/console/agents/env-bot?environment=staging"))
    steps = [
        "Who gets what in Staging",
        "Targeting rules, the first whose conditions all hold:",
        "Rule 1, “Big pro”: when plan is one of pro, enterprise and seats ≥ 40 → serves variant cold",
        "Rule 2, “Nowhere”: when country does not exist → serves the base config",
        "Split: experiment Cold split is running; requests with a subject are split between its arms:",
        "Control: base config, 25% of subjects",
        "Arm 1: cold, 75% of subjects",
        "Active variant: every other request gets variant warm, active in staging.",
        "Base config: what warm inherits for each field it does not set",
    ]
    at = [page.find(step) for step in steps]
    assert -1 not in at, [step for step, found in zip(steps, at, strict=True) if found == -1]
    assert at == sorted(at)  # in the resolution's order
    # Production has none of it.
    production = _text(await admin.page("/console/agents/env-bot"))
    assert "Targeting rules: none in production." in production
    assert "no experiment is running in production" in production
    assert "every request that nothing above serves gets it" in production


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ({"attribute": "plan", "op": "eq", "value": "pro"}, "plan is pro"),
        ({"attribute": "plan", "op": "neq", "value": "pro"}, "plan is not pro"),
        ({"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}, "plan is one of pro, enterprise"),
        ({"attribute": "plan", "op": "not_in", "values": ["free"]}, "plan is none of free"),
        ({"attribute": "email", "op": "ends_with", "value": "@acme.com"}, "email ends with @acme.com"),
        ({"attribute": "seats", "op": "gte", "value": 40}, "seats ≥ 40"),
        ({"attribute": "seats", "op": "lt", "value": 2.5}, "seats < 2.5"),
        ({"attribute": "country", "op": "not_exists"}, "country does not exist"),
        ({"attribute": "subject", "op": "eq", "value": "u1"}, "the subject is u1"),
        ({"attribute": "beta", "op": "eq", "value": True}, "beta is true"),
        ({"attribute": "code", "op": "eq", "value": "40"}, 'code is "40"'),  # the text, not the number
        ({"attribute": "city", "op": "in", "values": ["Paris, TX", "Rome"]}, 'city is one of "Paris, TX", Rome'),
    ],
)
def test_conditions_in_words(condition: dict[str, Any], words: str) -> None:
    assert targeting.condition_words(condition) == words


@pytest.mark.parametrize(
    ("op", "text", "value"),
    [
        ("eq", "40", 40),
        ("eq", "2.5", 2.5),
        ("eq", '"40"', "40"),
        ("eq", "true", True),
        ("eq", '"true"', "true"),
        ("eq", "pro", "pro"),
        ("eq", '""', ""),
        ("contains", "40", "40"),  # a text op reads text
        ("gt", "many", "many"),  # the API says a number is needed
    ],
)
def test_the_editors_values_read_back_what_it_shows(op: str, text: str, value: Any) -> None:
    read = targeting.value_of(text, op)
    assert read == value and type(read) is type(value)
    if op != "gt":
        assert targeting.value_of(targeting.value_text(value), op) == value


async def test_the_preview_says_what_a_context_gets_and_why_by_the_real_resolution(
    admin: Browser, db: Database, conn: AsyncConnection
) -> None:
    agent = await _agent(db)
    experiment = await _ruled(db, agent)
    base = "/console/agents/env-bot"

    async def preview(subject: str, attributes: str) -> str:
        page = await admin.http.get(
            base, params={"environment": "staging", "subject": subject, "attributes": attributes}
        )
        assert page.status_code == 200, page.text[:300]
        found = re.search(r'<p id="preview-why">(.*?)</p>', page.text, re.S)
        assert found, "no preview"
        return _text(found.group(1)).strip()

    said = await preview("", "plan=pro\nseats = 40\ncountry=fr")
    assert (
        said == "A request with plan = pro, seats = 40, country = fr gets variant cold, because rule 1,"
        " “Big pro”, holds: plan is one of pro, enterprise and seats ≥ 40."
    )
    said = await preview("u1", "plan=pro")
    assert said.endswith("because rule 2, “Nowhere”, holds: country does not exist.")
    assert "gets the base config" in said
    # Past the rules, a subject gets the arm the real resolution gives it; none, the active variant.
    for subject in ("u1", "u2", "u3", "u4", "u5", "u6"):
        real = await resolve_agent_config(
            conn, agent["id"], environment="staging", subject=subject, attributes={"country": "fr"}
        )
        said = await preview(subject, "country=fr")
        arm = "the control" if real.arm == 0 else f"arm {real.arm}"
        served = f"variant {real.variant_slug}" if real.variant_id else "the base config"
        assert said == (
            f"A request with subject {subject}, country = fr gets {served}, because no rule holds, and experiment"
            f" Cold split puts subject {subject} in {arm} ({25 if real.arm == 0 else 75}% of subjects)."
        ), said
        assert real.experiment_id == experiment["id"]
    said = await preview("", "country=fr")
    assert said == (
        "A request with country = fr gets variant warm, because no rule holds, without a subject the running"
        " experiment does not split it, so the active variant serves."
    )
    page = await admin.http.get(base, params={"environment": "staging", "subject": "", "attributes": "country=fr"})
    assert re.search(r'id="preview-config".*?data-field="temperature">.*?0\.9', page.text, re.S)
    # In production: no rules, no split, no active variant.
    page = await admin.http.get("/console/agents/env-bot", params={"subject": "u1", "attributes": "plan=pro"})
    said = _text(re.search(r'<p id="preview-why">(.*?)</p>', page.text, re.S).group(1)).strip()
    assert said.endswith(
        "because there are no rules, no experiment is running, and no variant is active: the base config serves."
    )


async def test_a_context_the_api_would_refuse_is_pointed_at_next_to_its_field(admin: Browser, db: Database) -> None:
    await _agent(db)
    page = await admin.http.get(
        "/console/agents/env-bot",
        params={"subject": "u1", "attributes": "plan\nsubject=me\nbad name=1\nplan=a\nplan=b"},
    )
    assert page.status_code == 422
    error = re.search(r'<p class="error" id="err-p-attributes" role="alert">([^<]+)</p>', page.text)
    assert error, page.text[-2000:]
    for expected in (
        "line 1 is not name=value",
        "line 5: plan is given twice",
        "subject: &#39;subject&#39; cannot",
        "bad name: a name is",
    ):
        assert expected.lower() in error.group(1).lower(), (expected, error.group(1))
    assert re.search(r'<textarea id="p-attributes"[^>]*aria-invalid="true"', page.text)
    assert 'id="preview-why"' not in page.text


# ------------------------------------------------------------------------------ editor


def _editor_form(page: str) -> dict[str, str]:
    """The editor's fields as the page holds them (inputs, selected options, textareas)."""
    fields = dict(re.findall(r'<input [^>]*?name="([^"]+)"[^>]*? value="([^"]*)"', page))
    fields.update(re.findall(r'<input id="[^"]+" name="([^"]+)" type="text" value="([^"]*)"', page))
    for name, options in re.findall(r'<select id="[^"]+" name="(rules[^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        fields[name] = chosen.group(1) if chosen else re.search(r'<option value="([^"]*)"', options).group(1)
    fields.update(re.findall(r'<textarea id="[^"]+" name="(rules[^"]+)"[^>]*>([^<]*)</textarea>', page))
    fields.pop("environment", None)
    return {name: value.replace("&#34;", '"') for name, value in fields.items()}


async def test_the_editor_adds_reorders_and_removes_then_saves_the_whole_set(admin: Browser, db: Database) -> None:
    agent = await _agent(db)
    path = "/console/agents/env-bot/rules?environment=staging"
    page = await admin.page(path)
    assert "No targeting rules in staging" in page and 'name="version" value="0"' in page

    async def press(do: str, changes: dict[str, str] | None = None) -> str:
        nonlocal page
        form = {**_editor_form(page), **(changes or {}), "do": do}
        response = await admin.http.post(path, data=form)
        assert response.status_code in (200, 303), response.text[:500]
        page = response.text
        return page

    await press("add-rule")
    assert "Not saved yet" in page and 'name="rules[0].name"' in page
    await press(
        "add-condition:0",
        {
            "rules[0].name": "Pro",
            "rules[0].when[0].attribute": "plan",
            "rules[0].when[0].op": "in",
            "rules[0].when[0].value": "pro\nenterprise",
        },
    )
    await press(
        "add-rule",
        {"rules[0].when[1].attribute": "seats", "rules[0].when[1].op": "gte", "rules[0].when[1].value": "40"},
    )
    cold = (await variants.get_variant(db, "env-bot", "cold", environment="staging"))["id"]
    await press(
        "down:0",
        {
            "rules[1].name": "Tester",
            "rules[1].when[0].attribute": "tester",
            "rules[1].when[0].op": "exists",
            "rules[1].serve.variant": cold,
        },
    )
    assert re.search(r'name="rules\[0\].name" type="text" value="Tester"', page)
    assert (await rules.get_rule_set(db, "env-bot", "staging"))["version"] == 0  # nothing saved yet
    saved = await admin.http.post(path, data={**_editor_form(page), "do": "save"})
    assert saved.status_code == 303 and saved.headers["location"] == "/console/agents/env-bot?environment=staging#who-h"
    stored = await rules.get_rule_set(db, "env-bot", "staging")
    assert [rule["name"] for rule in stored["rules"]] == ["Tester", "Pro"]
    assert stored["rules"][0] | {"id": None} == {
        "id": None,
        "name": "Tester",
        "when": [{"attribute": "tester", "op": "exists"}],
        "serve": {"variant": cold},
    }
    assert stored["rules"][1]["when"] == [
        {"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]},
        {"attribute": "seats", "op": "gte", "value": 40},
    ]
    assert (await rules.get_rule_set(db, "env-bot", "production"))["version"] == 0  # staging's only
    # Reopened, the editor shows what is stored; remove a condition and a rule, save again.
    page = await admin.page(path)
    assert 'name="version" value="1"' in page
    await press("remove-condition:1:1")
    await press("remove-rule:0")
    assert 'name="rules[1].name"' not in page
    ids = {rule["name"]: rule["id"] for rule in stored["rules"]}
    assert (await admin.http.post(path, data={**_editor_form(page), "do": "save"})).status_code == 303
    stored = await rules.get_rule_set(db, "env-bot", "staging")
    assert stored["rules"] == [
        {
            "id": ids["Pro"],
            "name": "Pro",
            "when": [{"attribute": "plan", "op": "in", "values": ["pro", "enterprise"]}],
            "serve": {"variant": "base"},
        }
    ]
    assert "Rule 1, “Pro”: when plan is one of pro, enterprise → serves the base config" in _text(
        await admin.page(f"/console/agents/{agent['slug']}?environment=staging")
    )


async def test_the_apis_validation_errors_land_next_to_their_fields(admin: Browser, db: Database) -> None:
    await _agent(db)
    path = "/console/agents/env-bot/rules?environment=staging"
    page = await admin.page(path)
    form = {
        "csrf": csrf_of(page),
        "version": "0",
        "do": "save",
        "rules[0].name": "Same",
        "rules[0].serve.variant": "base",
        "rules[0].when[0].attribute": "seats",
        "rules[0].when[0].op": "gt",
        "rules[0].when[0].value": "many",
        "rules[1].name": "Same",
        "rules[1].serve.variant": "var_" + "0" * 26,
        "rules[1].when[0].attribute": "plan",
        "rules[1].when[0].op": "in",
        "rules[1].when[0].value": "",
        "rules[1].when[1].attribute": "bad name",
        "rules[1].when[1].op": "exists",
        "rules[1].when[1].value": "",
    }
    response = await admin.http.post(path, data=form)
    assert response.status_code == 422
    for field in ("rules-0-when-0-value", "rules-1-name", "rules-1-when-0-value", "rules-1-when-1-attribute"):
        assert re.search(rf'<p class="error" id="err-{field}" role="alert">[^<]+</p>', response.text), field
        assert re.search(
            rf'id="f-{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="f-{field}"', response.text
        ) or re.search(rf'id="f-{field}"[^>]*aria-describedby="[^"]*err-{field}', response.text), field
    assert "must be a number for gt" in response.text
    assert not re.search(r'id="err-rules-0-name"', response.text)  # the first of the two names is fine
    # What was typed is kept.
    assert re.search(r'name="rules\[0\].when\[0\].value"[^>]*>many</textarea>', response.text)
    # Once the shape is right, the variant that does not exist is the 404's param, on its picker.
    form.update(
        {
            "rules[0].when[0].value": "5",
            "rules[1].name": "Other",
            "rules[1].when[0].value": "pro",
            "rules[1].when[1].attribute": "beta",
        }
    )
    response = await admin.http.post(path, data=form)
    assert response.status_code == 404
    assert re.search(r'id="err-rules-1-serve-variant" role="alert">[^<]+</p>', response.text)
    assert (await rules.get_rule_set(db, "env-bot", "staging"))["version"] == 0


async def test_a_stale_rule_set_is_refused_not_overwritten(admin: Browser, db: Database) -> None:
    await _agent(db)
    path = "/console/agents/env-bot/rules?environment=staging"
    page = await admin.page(path)
    await rules.replace_rule_set(
        db,
        "env-bot",
        "staging",
        RuleSetReplace.model_validate(
            {"rules": [{"name": "First", "when": [{"attribute": "a", "op": "exists"}], "serve": {"variant": "base"}}]}
        ),
    )
    form = {"csrf": csrf_of(page), "version": "0", "do": "save"}  # "remove every rule", from a page of version 0
    response = await admin.http.post(path, data=form)
    assert response.status_code == 412 and "Someone changed this" in response.text
    assert [r["name"] for r in (await rules.get_rule_set(db, "env-bot", "staging"))["rules"]] == ["First"]


async def test_a_read_key_sees_the_rules_without_edit_controls(admin: Browser, browser: Browser, db: Database) -> None:
    agent = await _agent(db)
    await _ruled(db, agent)
    _, secret = await make_key(db, "read")
    await browser.sign_in(secret)
    page = await browser.page("/console/agents/env-bot/rules?environment=staging")
    assert _posts(page) == ["/console/sign-out"]
    assert "Rule 1, “Big pro”: when plan is one of pro, enterprise and seats ≥ 40 → serves variant cold" in _text(page)
    assert re.findall(r"<button[^>]*>([^<]*)", page.split('id="main"', 1)[1]) == ["Switch"]  # the switcher's only
    refused = await browser.http.post(
        "/console/agents/env-bot/rules?environment=staging", data={"csrf": csrf_of(page), "version": "2", "do": "save"}
    )
    assert refused.status_code == 403
    assert (await rules.get_rule_set(db, "env-bot", "staging"))["version"] == 1


# ---------------------------------------------------------------------------- bound keys


async def test_a_bound_key_sees_and_changes_only_its_environment(browser: Browser, db: Database) -> None:
    agent = await _agent(db)
    await _ruled(db, agent)
    name = f"console-bound-{new_id('api_key').lower()[-10:]}"
    key = await keys.create_key(db, KeyCreate(name=name, scope="write", environment="staging"))
    assert (await browser.sign_in(key["secret"])).status_code == 303
    page = await browser.page("/console/agents/env-bot")
    # Its own environment by default, named, and no choice of another.
    assert "Environment: Staging staging (your API key is bound to it" in _text(page)
    assert 'name="environment"' not in page and "production" not in page
    assert "Rule 1, “Big pro”" in _text(page) and "active in staging" in _text(page)
    # Its own by name is fine (and stays out of the links); another, existing or not, is refused.
    assert 'action="/console/agents/env-bot/variants"' in await browser.page(
        "/console/agents/env-bot?environment=staging"
    )
    for other in ("production", "nowhere"):
        refused = await browser.page(f"/console/agents/env-bot?environment={other}", status=403)
        assert "bound to environment &#39;staging&#39;" in refused
    await browser.page("/console/agents/env-bot/rules?environment=production", status=403)
    assert "Active variant in staging" in await browser.page("/console/agents")
    # Its activation is staging's.
    confirm = await browser.page("/console/agents/env-bot/variants/cold/activate")
    assert "<h1>Activate ‘Cold’ in staging?</h1>" in confirm
    assert "Requests one of the 2 targeting rules of staging serves keep getting what it serves" in _text(confirm)
    state = re.search(r'name="state" value="([0-9a-f]+)"', confirm).group(1)
    done = await browser.http.post(
        "/console/agents/env-bot/variants/cold/activate",
        data={"csrf": csrf_of(confirm), "version": "1", "state": state},
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/agents/env-bot"
    assert (await variants.get_variant(db, "env-bot", "cold", environment="staging"))["is_active"]
    assert not (await variants.get_variant(db, "env-bot", "cold", environment="production"))["is_active"]
    forbidden = await browser.http.post(
        "/console/agents/env-bot/variants/cold/deactivate?environment=production",
        data={"csrf": csrf_of(confirm), "version": "2", "state": state},
    )
    assert forbidden.status_code == 403


async def test_undo_in_an_environment_reverts_its_own_latest_change(admin: Browser, db: Database) -> None:
    await _agent(db)
    await variants.activate_variant(db, "env-bot", "cold", environment="staging")
    await variants.activate_variant(db, "env-bot", "warm", environment="production")  # newer, elsewhere
    confirm = await admin.page("/console/agents/env-bot/undo?environment=staging")
    assert "<h1>Undo the latest change in staging?</h1>" in confirm and "activate of variant “Cold”" in confirm
    named = re.search(r'name="revision_id" value="(rev_[0-9A-Z]{26})"', confirm).group(1)
    done = await admin.http.post(
        "/console/agents/env-bot/undo?environment=staging", data={"csrf": csrf_of(confirm), "revision_id": named}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/agents/env-bot/history?undone={named}&environment=staging"
    assert not (await variants.get_variant(db, "env-bot", "cold", environment="staging"))["is_active"]
    assert (await variants.get_variant(db, "env-bot", "warm", environment="production"))["is_active"]
    assert "activate of variant “Warm”" in await admin.page("/console/agents/env-bot/undo")


async def test_an_experiment_made_and_started_from_staging_runs_in_staging(admin: Browser, db: Database) -> None:
    await _agent(db)
    made = await admin.submit(
        "/console/agents/env-bot/experiments?environment=staging",
        {
            "name": "Staged",
            "arms[0].variant": "base",
            "arms[0].weight": "1",
            "arms[1].variant": "cold",
            "arms[1].weight": "1",
        },
        from_page="/console/agents/env-bot/experiments?environment=staging",
    )
    assert made.status_code == 303 and made.headers["location"].endswith("?environment=staging")
    path = made.headers["location"].removesuffix("?environment=staging")
    confirm = await admin.page(path + "/start?environment=staging")
    assert "<h1>Start Staged in staging?</h1>" in confirm
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', confirm))
    started = await admin.http.post(path + "/start?environment=staging", data={**fields, "csrf": csrf_of(confirm)})
    assert started.status_code == 303
    assert "experiment Staged is running" in _text(await admin.page("/console/agents/env-bot?environment=staging"))
    assert "no experiment is running in production" in _text(await admin.page("/console/agents/env-bot"))
    await admin.page(path, status=404)  # production has no such experiment


async def test_the_history_says_where_each_change_was_made(admin: Browser, db: Database) -> None:
    await _agent(db)
    await variants.activate_variant(db, "env-bot", "cold", environment="staging")
    page = await admin.page("/console/agents/env-bot/history?environment=staging")
    entries = re.findall(r'<p class="when">(.*?)</p>', page, re.S)
    assert entries and 'in <span class="env">staging</span>' in entries[0] and "activate" in entries[0]
    assert any("shared" in entry and "create" in entry for entry in entries[1:])  # the agent, its variants
