"""Issue 16, item 19: while an experiment runs, requests with a subject are split between
its arms (the configs snapshotted at its start) and only requests without one get the live
config. The agent page and the activation confirmation say so, rather than "the agent runs
with variant X"."""

from __future__ import annotations

import re

from services.api.db import Database
from services.api.experiments import service as experiments
from services.api.experiments.schemas import ExperimentCreate
from services.api.variants import service as variants
from tests.console.conftest import Browser


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_while_an_experiment_runs_the_pages_say_who_gets_what(admin: Browser, db: Database) -> None:
    await admin.submit(
        "/console/agents",
        {"name": "Split bot", "config.model_provider": "p", "config.model_name": "m", "config.temperature": "0.7"},
        from_page="/console/agents",
    )
    for name, temperature in (("Warm", "0.9"), ("Cold", "0.1"), ("Mild", "0.5")):
        await admin.submit(
            "/console/agents/split-bot/variants",
            {"variant_name": name, "overrides.temperature": temperature},
            from_page="/console/agents/split-bot",
        )
    warm = await variants.get_variant(db, "split-bot", "warm", environment="production")
    await variants.activate_variant(db, "split-bot", warm["id"])
    experiment = await experiments.create_experiment(
        db,
        "split-bot",
        ExperimentCreate.model_validate(
            {"name": "Cold test", "arms": [{"variant": "live", "weight": 1}, {"variant": "cold", "weight": 3}]}
        ),
    )
    await experiments.start_experiment(db, "split-bot", experiment["id"])

    page = _text(await admin.page("/console/agents/split-bot"))
    assert "runs with now: variant warm" not in page  # not every request gets it
    assert "Cold test" in page and "is running" in page
    # Requests with a subject: each arm, what it serves, its share.
    assert re.search(r"Control warm \(live at start\) 25%", page), page
    assert re.search(r"Arm 1 cold 75%", page), page
    # Requests without a subject: the live config (the table below).
    assert re.search(r"without a subject get the live config: variant warm", page), page

    # Activating Mild changes what requests without a subject get, not the experiment's arms.
    confirm = _text(await admin.page("/console/agents/split-bot/variants/mild/activate"))
    assert "will run with" not in confirm
    assert re.search(r"Requests without a subject will get variant mild instead of warm", confirm), confirm
    assert re.search(r"Cold test.*is running", confirm) and "snapshotted at its start" in confirm
    assert re.search(r"Arm 1 cold 75%", confirm), confirm
    assert re.search(r"temperature 0\.9 0\.5", confirm)

    # With no experiment running, the page says what every request gets, as before.
    await experiments.stop_experiment(db, "split-bot", experiment["id"])
    page = _text(await admin.page("/console/agents/split-bot"))
    assert "runs with now: variant warm" in page and "without a subject" not in page
