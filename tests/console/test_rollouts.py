"""Issue 20, the console's side of rollouts: started from the variant's page (steps and
guardrails with the issue's defaults) behind a confirmation that says who gets what; the
rollout's page with its step, the time to the next, each guardrail's confidence sequence
over time and, after a rollback, why in plain words; pause, resume and stop behind
confirmations. The scheduler is driven in-process by calling its tick, as
tests/api/test_rollouts.py does."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import unescape
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.db import Database
from services.api.environments import service as environments
from services.api.environments.schemas import EnvironmentCreate
from services.api.experiments import service as experiments
from services.api.experiments.schemas import ExperimentCreate
from services.api.models import RolloutGuardrailHistory, table_of
from services.api.scheduler import rollouts as scheduler
from services.api.variants import service as variants
from tests.console.conftest import Browser, csrf_of, make_key

INPUT = re.compile(r'<input id="[^"]*" name="([^"]+)" type="text"[^>]*value="([^"]*)"')


def _text(page: str) -> str:
    """The page's words, without tags, on one line."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page)))


def _state(page: str) -> str:
    found = re.search(r'name="state" value="([0-9a-f]+)"', page)
    assert found, "no state digest on the confirmation"
    return found.group(1)


def _rollout_form(page: str) -> dict[str, str]:
    """The roll-out form's fields as the page fills them."""
    form = page[page.index('id="roll-out"') :]
    form = form[: form.index("</form>")]
    return {name: value for name, value in INPUT.findall(form)}


async def _agent(admin: Browser, db: Database, name: str) -> str:
    """An agent whose variant `current` is active in production, with a variant `candidate`."""
    slug = name.lower().replace(" ", "-")
    await admin.submit(
        "/console/agents",
        {"name": name, "config.model_provider": "p", "config.model_name": "m", "config.temperature": "0.7"},
        from_page="/console/agents",
    )
    for variant, temperature in (("Current", "0.5"), ("Candidate", "0.2")):
        made = await admin.submit(
            f"/console/agents/{slug}/variants",
            {"variant_name": variant, "overrides.temperature": temperature},
            from_page=f"/console/agents/{slug}",
        )
        assert made.status_code == 303, made.text
    current = await variants.get_variant(db, slug, "current", environment="production")
    await variants.activate_variant(db, slug, current["id"])
    return slug


async def _started(db: Database, slug: str, **rollout: Any) -> dict[str, Any]:
    body = {"kind": "rollout", "name": "Ship candidate", "variant": "candidate", **rollout}
    created = await experiments.create_experiment(db, slug, ExperimentCreate.model_validate(body))
    return await experiments.start_experiment(db, slug, created["id"])


async def test_a_rollout_starts_from_its_variant_page_with_the_defaults_after_a_confirmation(
    admin: Browser, db: Database
) -> None:
    slug = await _agent(admin, db, "Roll bot")
    variant_path = f"/console/agents/{slug}/variants/candidate"
    page = await admin.page(variant_path)
    form = _rollout_form(page)
    assert form["rollout.name"] == "Roll out Candidate"
    assert [form[f"steps[{row}].percent"] for row in range(4)] == ["5", "25", "50", "100"]
    assert {form[f"steps[{row}].hold_minutes"] for row in range(4)} == {"30"}
    assert form["steps[4].percent"] == "" and form["guardrails.score_mean"] == ""
    assert form["guardrails.success_rate"] == "0.02" and form["guardrails.latency_ms_mean"] == "250"
    assert form["min_outcomes"] == "100"

    made = await admin.http.post(f"{variant_path}/rollout", data={"csrf": csrf_of(page), **form})
    assert made.status_code == 303, made.text
    confirm_path = made.headers["location"]
    assert re.fullmatch(rf"/console/agents/{slug}/experiments/exp_\w+/start", confirm_path)
    experiment_id = confirm_path.split("/")[-2]
    draft = await experiments.get_experiment(db, slug, experiment_id)
    assert draft["kind"] == "rollout" and draft["status"] == "draft" and draft["environment"] == "production"
    assert draft["steps"] == [{"percent": p, "hold_seconds": 1800} for p in (5, 25, 50, 100)]
    assert draft["guardrails"] == [
        {"metric": "success_rate", "max_degradation": 0.02},
        {"metric": "latency_ms_mean", "max_degradation": 250.0},
    ]
    assert draft["min_outcomes"] == 100
    drafted = await admin.page(f"/console/agents/{slug}/experiments/{experiment_id}")
    assert "Not started: nothing is served yet." in _text(drafted) and f'href="{confirm_path}"' in drafted
    # The active variant has nothing to roll out.
    active = _text(await admin.page(f"/console/agents/{slug}/variants/current"))
    assert "Current is already the active variant in production: there is nothing to roll out" in active

    # Who gets what: the first step's share, the live config the others keep, the steps,
    # the guardrails in words, the rollback, the activation at the end, the config's changes.
    confirm = await admin.page(confirm_path)
    words = _text(confirm)
    assert re.search(r"at the first step 5% of subjects get variant candidate", words), words
    assert re.search(r"other 95% keep getting the live config, variant current", words), words
    assert "Requests without a subject keep getting the live config until the rollout completes" in words
    assert re.search(r"1 5% 30 minutes 2 25% 30 minutes 3 50% 30 minutes 4 100% 30 minutes", words), words
    assert "success rate may be at most 2 percentage points lower than the live config's" in words
    assert "mean latency may be at most 250 ms higher than the live config's" in words
    assert "rolled back at once" in words and "becomes the active variant in production" in words
    assert re.search(r"temperature 0\.5 0\.2", words), words

    one_click = await admin.http.post(confirm_path, data={"csrf": csrf_of(confirm)})
    assert one_click.status_code == 409 and "confirm again" in one_click.text
    assert (await experiments.get_experiment(db, slug, experiment_id))["status"] == "draft"
    started = await admin.http.post(
        confirm_path, data={"csrf": csrf_of(confirm), "version": "1", "state": _state(confirm)}
    )
    rollout_path = f"/console/agents/{slug}/experiments/{experiment_id}"
    assert started.status_code == 303 and started.headers["location"] == rollout_path

    # The rollout's page: its step and percent, the time to the next step, each guardrail.
    page = await admin.page(rollout_path)
    words = _text(page)
    assert 'id="status">running' in page
    assert "Step 1 of 4: 5% of subjects get candidate" in words
    assert re.search(r"It moves to step 2 of 4 \(25% of subjects\) in 30 minutes at the earliest \(20\d\d-", words)
    assert "once every guardrail also has 100 outcomes in each arm and none is breached" in words
    assert 'aria-current="step"' in page
    assert "Not enough outcomes to estimate yet" in words
    assert page.count('<figure class="chart"') == 2  # a chart per guardrail, "no figures yet"
    for action in ("pause", "stop"):
        assert f'href="{rollout_path}/{action}"' in page
    assert f'href="{rollout_path}/resume"' not in page

    # The list says what kind each split is, and a rollout's share.
    listed = _text(await admin.page(f"/console/agents/{slug}/experiments"))
    assert re.search(r"Roll out Candidate rollout running 5% on the variant \(step 1 of 4\)", listed), listed
    # The variant's page says it is being rolled out.
    assert "it is rolling this variant out" in _text(await admin.page(variant_path))


async def test_the_roll_out_form_shows_errors_at_their_fields_and_keeps_what_was_typed(
    admin: Browser, db: Database
) -> None:
    slug = await _agent(admin, db, "Typo bot")
    variant_path = f"/console/agents/{slug}/variants/candidate"
    page = await admin.page(variant_path)
    typed = {
        "rollout.name": "",
        "steps[0].percent": "100",
        "steps[0].hold_minutes": "10",
        "guardrails.success_rate": "0.02",
        "guardrails.score_mean": "lots",
        "min_outcomes": "0",
    }
    bad = await admin.http.post(f"{variant_path}/rollout", data={"csrf": csrf_of(page), **typed})
    assert bad.status_code == 422 and "Some fields need fixing" in bad.text
    for field in ("rollout-name", "guardrails-score_mean", "min_outcomes"):
        assert f'id="err-{field}"' in bad.text, field
    kept = _rollout_form(bad.text)
    assert kept["guardrails.score_mean"] == "lots" and kept["min_outcomes"] == "0"
    assert kept["rollout.name"] == "" and kept["steps[1].percent"] == ""  # not the defaults again
    # Steps that do not rise to 100: named at the form's rows (an empty row is skipped, so the
    # API's steps[1] is the form's row 2).
    steps = {
        "rollout.name": "Ship it",
        "steps[0].percent": "50",
        "steps[0].hold_minutes": "10",
        "steps[2].percent": "40",
        "steps[2].hold_minutes": "5",
    }
    bad = await admin.http.post(f"{variant_path}/rollout", data={"csrf": csrf_of(page), **steps})
    assert bad.status_code == 422
    error = re.search(r'id="err-steps-2-percent" role="alert">([^<]*)<', bad.text)
    assert error and "must be above the step before (50)" in error.group(1) and "the last step is 100" in error.group(1)
    assert 'id="err-steps-0-percent"' not in bad.text
    kept = _rollout_form(bad.text)
    assert kept["steps[2].percent"] == "40" and kept["steps[1].percent"] == "" and kept["rollout.name"] == "Ship it"
    # A hold that is no number of minutes is refused by the form itself, nothing sent.
    hold = await admin.http.post(
        f"{variant_path}/rollout",
        data={"csrf": csrf_of(page), "rollout.name": "r", "steps[0].percent": "100", "steps[0].hold_minutes": "soon"},
    )
    assert hold.status_code == 422 and 'id="err-steps-0-hold_minutes"' in hold.text
    assert _rollout_form(hold.text)["steps[0].hold_minutes"] == "soon"
    listed = await experiments.list_experiments(db, slug, after=None, limit=10, status=None, environment="production")
    assert listed == []


async def test_the_guardrail_charts_draw_the_history_and_a_rollback_says_why(admin: Browser, db: Database) -> None:
    slug = await _agent(admin, db, "Guard bot")
    rollout = await _started(
        db,
        slug,
        steps=[{"percent": 10, "hold_seconds": 0}, {"percent": 100, "hold_seconds": 0}],
        guardrails=[{"metric": "success_rate", "max_degradation": 0.02}],
        min_outcomes=50,
    )
    live, candidate = (arm["variant_id"] for arm in rollout["arms"])
    _, secret = await make_key(db, "admin")

    async def report(outcomes: list[dict[str, Any]]) -> None:
        batch = [
            {"experiment_id": rollout["id"], "input_tokens": 1, "output_tokens": 1, "latency_ms": 100, **one}
            for one in outcomes
        ]
        sent = await admin.http.post(
            f"/v1/agents/{slug}/outcomes", json={"data": batch}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert sent.status_code == 202, sent.text

    path = f"/console/agents/{slug}/experiments/{rollout['id']}"
    await report([{"variant_id": live, "success": True} for _ in range(20)])
    await report([{"variant_id": candidate, "success": n % 2 == 0} for n in range(20)])
    assert await scheduler.tick(db) == []  # too few outcomes to decide: the figures are recorded
    words = _text(await admin.page(path))
    assert "Its hold has passed; it moves to step 2 of 2 (100% of subjects) once every guardrail has 50" in words
    assert "so far success rate: 20 of the variant's and 20 of the live config's" in words
    assert "It decides once each arm has 50" in words

    await report([{"variant_id": live, "success": True} for _ in range(400)])
    await report([{"variant_id": candidate, "success": n % 2 == 0} for n in range(400)])
    assert await scheduler.tick(db) == ["roll_back"]
    page = await admin.page(path)
    words = _text(page)
    assert 'id="status">rolled back' in page
    reason = _text(page[page.index('id="reason"') : page.index("</div>", page.index('id="reason"'))])
    assert "Rolled back at 20" in reason and "a guardrail was breached" in reason
    assert "Every request gets variant current again; variant candidate was not activated" in reason
    assert re.search(
        r"Its success rate got worse by more than the 2 percentage points allowed: over 420 outcomes of the "
        r"variant and 420 of the live config, the variant's success rate was 5\d\.?\d* percentage points lower",
        reason,
    ), reason
    assert f'href="{path}/pause"' not in page and f'href="{path}/stop"' not in page
    chart = page[page.index('<figure class="chart" data-metric="success_rate"') :]
    chart = chart[: chart.index("</figure>")]
    assert chart.count('class="cs"') == 1 and 'class="estimate"' in chart and 'class="breach"' in chart
    assert 'class="threshold"' in chart and "limit -2.0%" in chart
    estimate = re.search(r'class="estimate" points="([^"]+)"', chart)
    assert estimate and len(estimate.group(1).split()) == 2  # the two figures the scheduler recorded
    listed = _text(await admin.page(f"/console/agents/{slug}/experiments"))
    assert re.search(r"Ship candidate rollout rolled back", listed), listed


async def test_pause_resume_and_stop_are_confirmed_first_and_work(admin: Browser, db: Database) -> None:
    slug = await _agent(admin, db, "Pause bot")
    rollout = await _started(
        db, slug, steps=[{"percent": 20, "hold_seconds": 3600}, {"percent": 100, "hold_seconds": 3600}]
    )
    path = f"/console/agents/{slug}/experiments/{rollout['id']}"
    page = await admin.page(path)
    # While it runs, the agent's page says so, and activation in its environment waits for it.
    assert "rollout Ship candidate is running; requests with a subject" in _text(
        await admin.page(f"/console/agents/{slug}")
    )
    frozen = await admin.page(f"/console/agents/{slug}/variants/current/deactivate")
    assert "no variant can be activated or deactivated there until it ends" in _text(frozen)
    assert 'name="state"' not in frozen

    async def confirmed(action: str, words_in: str, version: int) -> str:
        confirm = await admin.page(f"{path}/{action}")
        assert words_in in _text(confirm), _text(confirm)
        one_click = await admin.http.post(f"{path}/{action}", data={"csrf": csrf_of(page)})
        assert one_click.status_code == 409 and "confirm again" in one_click.text
        done = await admin.http.post(
            f"{path}/{action}", data={"csrf": csrf_of(confirm), "version": str(version), "state": _state(confirm)}
        )
        assert done.status_code == 303 and done.headers["location"] == path
        return await admin.page(path)

    moot = _text(await admin.page(f"{path}/resume"))
    assert "only a paused rollout can be resumed" in moot
    paused = await confirmed("pause", "20% of subjects keep getting variant candidate", 2)
    assert 'id="status">paused' in paused
    assert "Paused: it does not advance until resumed (its step's hold ends at" in _text(paused)
    assert f'href="{path}/resume"' in paused and f'href="{path}/pause"' not in paused
    resumed = await confirmed("resume", "It runs again from step 1 of 2 (20% of subjects on variant candidate", 3)
    assert 'id="status">running' in resumed
    stopped = await confirmed("stop", "Stopping is final", 4)
    assert 'id="status">stopped' in stopped
    assert "It ended at step 1 of 2 (20% of subjects on the variant)" in _text(stopped)
    assert "Stopped at 20" in _text(stopped) and "every request gets variant current again" in _text(stopped)
    again = _text(await admin.page(f"{path}/start"))
    assert "is stopped: a stopped rollout can never start again" in again


async def test_a_completed_rollout_says_its_variant_is_active(admin: Browser, db: Database) -> None:
    slug = await _agent(admin, db, "Done bot")
    rollout = await _started(db, slug, steps=[{"percent": 50, "hold_seconds": 0}, {"percent": 100, "hold_seconds": 0}])
    assert await scheduler.tick(db) == ["advance"]
    page = _text(await admin.page(f"/console/agents/{slug}/experiments/{rollout['id']}"))
    assert "Step 2 of 2: 100% of subjects get candidate" in page
    assert "it completes: variant candidate becomes the active variant in production at the scheduler's next" in page
    assert await scheduler.tick(db) == ["complete"]
    page = _text(await admin.page(f"/console/agents/{slug}/experiments/{rollout['id']}"))
    assert "Completed at 20" in page and "variant candidate is the active variant in production" in page
    assert "None: it advances on time alone." in page


async def test_pausing_an_experiment_has_nothing_to_confirm(admin: Browser, db: Database) -> None:
    slug = await _agent(admin, db, "Plain bot")
    created = await experiments.create_experiment(
        db,
        slug,
        ExperimentCreate.model_validate(
            {"name": "AB", "arms": [{"variant": "live", "weight": 1}, {"variant": "candidate", "weight": 1}]}
        ),
    )
    await experiments.start_experiment(db, slug, created["id"])
    confirm = await admin.page(f"/console/agents/{slug}/experiments/{created['id']}/pause")
    assert "only rollouts pause and resume" in _text(confirm) and 'name="state"' not in confirm
    refused = await admin.http.post(
        f"/console/agents/{slug}/experiments/{created['id']}/pause",
        data={"csrf": csrf_of(confirm), "version": "2", "state": "x"},
    )
    assert refused.status_code == 409
    assert (await experiments.get_experiment(db, slug, created["id"]))["status"] == "running"


async def test_a_long_history_is_thinned_for_its_chart_keeping_the_newest(admin: Browser, db: Database) -> None:
    slug = await _agent(admin, db, "Long bot")
    rollout = await _started(
        db,
        slug,
        steps=[{"percent": 10, "hold_seconds": 86400}, {"percent": 100, "hold_seconds": 0}],
        guardrails=[{"metric": "latency_ms_mean", "max_degradation": 250}],
    )

    async def unit(conn: AsyncConnection) -> None:
        started = datetime.fromisoformat(rollout["started_at"])
        rows = [
            {
                "experiment_id": rollout["id"],
                "at": started + timedelta(seconds=5 * n),
                "step": 0,
                "percent": 10,
                "guardrails": [
                    {
                        "metric": "latency_ms_mean",
                        "max_degradation": 250,
                        "estimate": -n / 10,
                        "cs": [-n / 10 - 50, -n / 10 + 50],
                        "n": [n, n],
                        "breached": n == 1000,
                    }
                ],
            }
            for n in range(1001)
        ]
        await conn.execute(table_of(RolloutGuardrailHistory).insert(), rows)

    await db.transaction(unit)
    page = await admin.page(f"/console/agents/{slug}/experiments/{rollout['id']}")
    estimate = re.search(r'class="estimate" points="([^"]+)"', page)
    assert estimate is not None
    assert len(estimate.group(1).split()) == 335  # every third of 1,001 (at most 400), and the newest
    assert page.count('class="breach"') == 1  # the newest figures are always drawn


async def test_a_rollout_is_made_in_the_environment_its_variant_page_shows(admin: Browser, db: Database) -> None:
    slug = await _agent(admin, db, "Staged bot")
    await environments.create_environment(db, EnvironmentCreate(name="Staging"))
    variant_path = f"/console/agents/{slug}/variants/candidate"
    page = await admin.page(f"{variant_path}?environment=staging")
    assert 'action="/console/agents/staged-bot/variants/candidate/rollout?environment=staging"' in page
    assert "Roll out in staging" in page
    made = await admin.http.post(
        f"{variant_path}/rollout?environment=staging", data={"csrf": csrf_of(page), **_rollout_form(page)}
    )
    assert made.status_code == 303 and made.headers["location"].endswith("/start?environment=staging")
    experiment_id = made.headers["location"].split("/")[-2]
    created = await experiments.get_experiment(db, slug, experiment_id, environment="staging")
    assert created["environment"] == "staging" and created["kind"] == "rollout"
    confirm = _text(await admin.page(made.headers["location"]))
    # Nothing is active in staging: the live config there is the base config.
    assert (
        "in staging step by step" in confirm
        and "the other 95% keep getting the live config, the base config" in confirm
    )
