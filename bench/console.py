"""`make bench`, part 5: how long the admin console takes to render its pages on the server,
with one agent of 1,000 variants and 10,000 revisions. Writes bench/results/console.json
and the "Console" section of bench/RESULTS.md (it runs after bench/load.py, which rewrites
that file). The target (the console's issue): every page under 100 ms.

The seed, on a fresh database on the embedded PostgreSQL:
- Through the API (in process): the agent, one variant created and then edited (the shapes
  every bulk row copies: the variant row, and a variant object in a revision's before/after).
- In bulk, one INSERT ... SELECT per table (jsonb_populate_recordset over rows built here):
  the other 999 variants and a history of REVISIONS revisions in all, one every few
  minutes over about a month before the seed: the variants' creations, edits of their
  overrides, names and descriptions, activations in production (each also deactivating
  the previous one, as the service does; the last one active is the activations row), and
  a few edits of the base config. Each revision's `before` is the `after` of the one before
  on the same target, and every row ends as its last revision left it. Ids are ULIDs
  stamped with their revision's instant (the service's `new_id` stamps the present, and
  ids order every list), checked with `is_id`; the agent's own creation, made through the
  API, is moved back to the start of the history.
- Through the API again: an activation, and a 3-arm experiment (base, two variants),
  running, with OUTCOMES outcomes on its arms plus some outside it, so the results page
  and the usage chart have figures.

Then every page, in process: `create_app(..., database=...)` and an httpx `AsyncClient` on
an `ASGITransport`, signed in through /console/sign-in with an admin key, like a browser.
After WARMUP rounds, REQUESTS rounds in which every page takes its turn (so drift hits all
alike): median and p95 per page, in ms, and the body's size. `GET /healthz` through the same
client is the baseline: what the client, the transport and the app's outer layers cost.
A second pass counts each page's SQL statements and the time spent in them; the slowest
page, and any page over the target, is profiled with cProfile. Every timed request also
records the garbage collector's pauses (a full collection walks every long-lived object in
the process, and makes the tails), and a last pass repeats the timings after `gc.freeze()`.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import math
import pstats
import random
import re
import statistics
import time
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, text

from bench import load
from services.api.app import create_app
from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.api.schemas import timestamp
from services.api.settings import Settings
from services.shared.agent_config import CONFIG_FIELDS
from services.shared.identifiers import PREFIXES, PRODUCTION_ENVIRONMENT_ID, PRODUCTION_ENVIRONMENT_SLUG, is_id

ROOT = Path(__file__).resolve().parents[1]
VARIANTS, REVISIONS = 1_000, 10_000
OUTCOMES = 3_000  # on the experiment's arms; OUTSIDE more with no experiment
OUTSIDE = 1_000
WARMUP, REQUESTS = 5, 50
PROFILED = 20  # requests under cProfile per profiled page
TARGET_MS = 100.0
AGENT = "support-bot"
STEP = timedelta(minutes=5)  # between revisions of the bulk history
LATER = 3  # revisions the API writes after the bulk: an activation, the experiment's create and start
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CONFIG = {
    "model_provider": "openai",
    "model_name": "gpt-4o",
    "system_prompt": "You are the support assistant of Example Corp. Answer questions about orders, refunds and"
    " shipping politely and accurately. If you do not know, say so and offer to hand over to a"
    " person. Never invent order numbers.",
    "user_prompt_template": "Customer {customer_name} asks: {input}",
    "prompt_version": "v1",
    "temperature": 0.7,
    "max_tokens": 1024,
    "context_window": 128_000,
    "input_token_limit": 100_000,
    "timeout_seconds": 60,
}
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini")
STYLES = (
    "in two sentences",
    "step by step",
    "with a short summary first",
    "in a friendly tone",
    "formally",
    "with bullet points",
    "citing the help centre article",
)


def id_at(kind: str, when: datetime, rng: random.Random) -> str:
    """A well-formed id of `kind` whose ULID carries `when` (as `new_id` would have then)."""
    value = (int(when.timestamp() * 1000) << 80) | rng.getrandbits(80)
    made = f"{PREFIXES[kind]}_" + "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
    assert is_id(kind, made), made
    return made


# ------------------------------------------------------------------------------ the seed


async def made(response: Any) -> dict[str, Any]:
    response = await response
    assert response.status_code < 300, (response.status_code, response.text[:500])
    return response.json()


def prompt(rng: random.Random, n: int) -> str:
    return (
        f"{CONFIG['system_prompt']} Answer {rng.choice(STYLES)}. Variant note {n}: prefer the customer's"
        f" language, and keep answers under {rng.choice((80, 120, 200, 300))} words."
    )


def new_overrides(rng: random.Random, n: int) -> dict[str, Any]:
    overrides: dict[str, Any] = {"temperature": round(rng.uniform(0, 1.5), 2), "system_prompt": prompt(rng, n)}
    if rng.random() < 0.3:
        overrides["model_name"] = rng.choice(MODELS)
    if rng.random() < 0.2:
        overrides["max_tokens"] = rng.choice((256, 512, 2048, 4096))
    return overrides


def edit(rng: random.Random, state: dict[str, Any], n: int) -> None:
    """One change a person might make to a variant: an override set, changed or removed,
    or its name or description."""
    overrides = state["overrides"]
    kind = rng.random()
    if kind < 0.35:
        overrides["temperature"] = round(rng.uniform(0, 1.5), 2)
    elif kind < 0.6:
        overrides["system_prompt"] = prompt(rng, n)
    elif kind < 0.7:
        overrides["model_name"] = rng.choice(MODELS)
    elif kind < 0.78:
        overrides["max_tokens"] = rng.choice((256, 512, 2048, 4096))
    elif kind < 0.85:
        overrides["prompt_version"] = f"v{rng.randint(2, 40)}"
    elif kind < 0.9 and len(overrides) > 1:
        del overrides[rng.choice(sorted(overrides))]
    elif kind < 0.95:
        topic = rng.choice(("refunds", "shipping", "returns", "billing"))
        state["description"] = f"Tried on {topic} tickets, round {n}"
    else:
        state["variant_name"] = state["variant_name"].split(" (")[0] + f" (rev {n})"
    state["overrides"] = {name: overrides[name] for name in CONFIG_FIELDS if name in overrides}


def build_history(
    agent: dict[str, Any], shapes: dict[str, Any], count: int, start: datetime, actor: str, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """`count` revisions from `start`, one every STEP: (variant rows, revision rows, the
    activation rows, the agent object they leave). Every activation is in production.
    `shapes` holds a variant row and a variant object written by the service; every row
    and object here has exactly their keys."""
    creates = {round(k * count / (VARIANTS - 1)) for k in range(VARIANTS - 1)}
    assert len(creates) == VARIANTS - 1 and max(creates) < count
    # Objects already in a revision are never changed in place: a change makes a new one.
    agent_state = deepcopy(agent)
    variants: dict[str, dict[str, Any]] = {}  # id -> its variant object, as the latest revision left it
    active: str | None = None  # in production, the only environment of this history
    activated_at: datetime | None = None
    revisions: list[dict[str, Any]] = []
    for i in range(count):
        at = start + STEP * i + timedelta(seconds=rng.randint(0, 60))
        stamp = timestamp(at)
        before: dict[str, Any] | None
        if i in creates:
            n = len(variants) + 1
            variant_id = id_at("variant", at, rng)
            after = {
                **deepcopy(shapes["object"]),
                "id": variant_id,
                "agent_id": agent["id"],
                "variant_name": f"Variant {n:04d}",
                "slug": f"variant-{n:04d}",
                "description": f"Idea {n}: {rng.choice(STYLES)}" if rng.random() < 0.5 else "",
                "metadata": {},
                "overrides": new_overrides(rng, n),
                "is_active": False,
                "active_in": [],
                "cloned_from": None,
                "version": 1,
                "created_at": stamp,
                "updated_at": stamp,
                "activated_at": None,
            }
            before, target, target_id, action = None, "variant", variant_id, "create"
            agent_state = {**agent_state, "variant_count": agent_state["variant_count"] + 1}
        elif rng.random() < 0.01:  # an edit of the base config
            before, after = agent_state, deepcopy(agent_state)
            after["config"]["temperature"] = round(rng.uniform(0.2, 1.0), 2)
            if rng.random() < 0.5:
                after["config"]["prompt_version"] = f"v{rng.randint(2, 40)}"
            after.update(version=after["version"] + 1, updated_at=stamp)
            target, target_id, action = "agent", agent["id"], "update"
            agent_state = after
        else:
            target, target_id = "variant", rng.choice(list(variants))
            before, after = variants[target_id], deepcopy(variants[target_id])
            if rng.random() < 0.03 and target_id != active:
                action = "activate"
                if active is not None:  # deactivated by the same write, without a revision of its own
                    old = variants[active]
                    variants[active] = {
                        **old,
                        "is_active": False,
                        "active_in": [],
                        "activated_at": None,
                        "version": old["version"] + 1,
                        "updated_at": stamp,
                    }
                after.update(is_active=True, active_in=[PRODUCTION_ENVIRONMENT_SLUG], activated_at=stamp)
                active, activated_at = target_id, at
                agent_state = {
                    **agent_state,
                    "active_variant_id": active,
                    "active_variants": {**agent_state["active_variants"], PRODUCTION_ENVIRONMENT_SLUG: active},
                }
            else:
                action = "update"
                edit(rng, after, i)
            after.update(version=after["version"] + 1, updated_at=stamp)
        if target == "variant":
            variants[target_id] = after
        revisions.append(
            {
                "id": id_at("revision", at, rng),
                "agent_id": agent["id"],
                "target": target,
                "target_id": target_id,
                "action": action,
                "actor": actor,
                "api_key": actor,
                # An activation is made in production; the rest change shared definitions.
                "environment_id": PRODUCTION_ENVIRONMENT_ID if action == "activate" else None,
                "active_variant_id": active,
                "active_variants": {PRODUCTION_ENVIRONMENT_ID: active} if active else {},
                "before": before,
                "after": after,
                "reverts_id": None,
                "undone_by_id": None,
                "created_at": stamp,
            }
        )
    rows = []
    for state in variants.values():
        row = {
            **shapes["row"],
            **dict.fromkeys(CONFIG_FIELDS),
            # The keyed fields (contract 1.1) are NOT NULL JSON: none overridden is empty.
            "params": {},
            "tools": {},
            "variables": {},
            "params_unset": [],
            **state["overrides"],
            **{
                name: state[name]
                for name in (
                    "id",
                    "agent_id",
                    "slug",
                    "variant_name",
                    "description",
                    "metadata",
                    "version",
                    "created_at",
                    "updated_at",
                )
            },
            "cloned_from_source": None,
            "cloned_from_variant_id": None,
        }
        assert row.keys() == shapes["row"].keys()
        rows.append(row)
    activations = (
        []
        if active is None
        else [
            {
                "agent_id": agent["id"],
                "environment_id": PRODUCTION_ENVIRONMENT_ID,
                "variant_id": active,
                "activated_at": timestamp(activated_at),
            }
        ]
    )
    return rows, revisions, activations, agent_state


async def seed(db: Database, http: httpx.AsyncClient, actor: str) -> dict[str, Any]:
    """The agent, its variants, history, experiment and outcomes; what the pages need to know."""
    rng = random.Random(20261123)
    agent = await made(http.post("/v1/agents", json={"name": "Support bot", "slug": AGENT, "config": CONFIG}))
    template = await made(
        http.post(
            f"/v1/agents/{AGENT}/variants",
            json={
                "variant_name": "Concise",
                "overrides": {"temperature": 0.2, "system_prompt": "Answer in two sentences."},
            },
        )
    )
    await made(http.patch(f"/v1/agents/{AGENT}/variants/concise", json={"overrides": {"temperature": 0.3}}))
    async with db.engine.begin() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM variants WHERE id = :id"), {"id": template["id"]})).mappings().one()
        )
        written = (
            (
                await conn.execute(
                    text("SELECT * FROM revisions WHERE agent_id = :a ORDER BY created_at, id"), {"a": agent["id"]}
                )
            )
            .mappings()
            .all()
        )
        assert [r["action"] for r in written] == ["create", "create", "update"], [r["action"] for r in written]
        created, _, updated = written
        shapes = {"row": {k: None for k in row}, "object": updated["after"]}
        assert created["after"].keys() == agent.keys()  # the agent object a revision holds is the API's
        count = REVISIONS - len(written) - LATER
        # The history ends a minute before the template variant was made.
        end = row["created_at"] - timedelta(minutes=1)
        start = end - STEP * count
        born = start - STEP
        agent_after = {**created["after"], "created_at": timestamp(born), "updated_at": timestamp(born)}
        await conn.execute(
            text("UPDATE revisions SET id = :new, created_at = :at, after = CAST(:after AS jsonb) WHERE id = :old"),
            {"new": id_at("revision", born, rng), "at": born, "after": json.dumps(agent_after), "old": created["id"]},
        )
        variant_rows, revision_rows, activation_rows, final = build_history(
            agent_after, shapes, count, start, actor, rng
        )
        await conn.execute(
            text("INSERT INTO variants SELECT * FROM jsonb_populate_recordset(NULL::variants, CAST(:rows AS jsonb))"),
            {"rows": json.dumps(variant_rows)},
        )
        await conn.execute(
            text(
                "INSERT INTO activations (agent_id, environment_id, variant_id, activated_at)"
                " SELECT agent_id, environment_id, variant_id, activated_at"
                " FROM jsonb_populate_recordset(NULL::activations, CAST(:rows AS jsonb))"
            ),
            {"rows": json.dumps(activation_rows)},
        )
        await conn.execute(
            text("INSERT INTO revisions SELECT * FROM jsonb_populate_recordset(NULL::revisions, CAST(:rows AS jsonb))"),
            {"rows": json.dumps(revision_rows)},
        )
        # The agent's row as its last revision left it; it was created at the history's start.
        await conn.execute(
            text(
                "UPDATE agents SET temperature = :temperature, prompt_version = :prompt_version, version = :version,"
                " created_at = :born, updated_at = :updated WHERE id = :id"
            ),
            {
                **{k: final["config"][k] for k in ("temperature", "prompt_version")},
                "version": final["version"],
                "born": born,
                "updated": datetime.fromisoformat(final["updated_at"]),
                "id": agent["id"],
            },
        )
    # Through the API again: activate a variant the history did not leave active, run an experiment.
    listed = await made(http.get(f"/v1/agents/{AGENT}/variants", params={"limit": 100}))
    assert listed["data"], listed
    active = next(r for r in revision_rows[::-1] if r["action"] == "activate")["target_id"]
    counts: dict[str, int] = {}
    for r in revision_rows:
        if r["target"] == "variant":
            counts[r["target_id"]] = counts.get(r["target_id"], 0) + 1
    slug_of = {v["id"]: v["slug"] for v in variant_rows}
    # The page's variant: the most edited one, neither active nor an arm.
    shown = max((v for v in counts if v != active), key=lambda v: counts[v])
    by_slug = {v["slug"]: v["id"] for v in variant_rows}

    def pick(n: int, *taken: str) -> str:  # variant-n, or the next one not taken
        return next(
            by_slug[f"variant-{k:04d}"]
            for k in range(n, VARIANTS)
            if by_slug[f"variant-{k:04d}"] not in (active, shown, *taken)
        )

    live = pick(500)
    arms = [pick(950, live)]
    arms.append(pick(990, live, *arms))
    await made(http.post(f"/v1/agents/{AGENT}/variants/{slug_of[live]}/activate"))
    experiment = await made(
        http.post(
            f"/v1/agents/{AGENT}/experiments",
            json={
                "name": "Shorter answers",
                "description": "Do shorter answers resolve tickets as well?",
                "arms": [
                    {"variant": "base", "weight": 2},
                    {"variant": slug_of[arms[0]], "weight": 1},
                    {"variant": slug_of[arms[1]], "weight": 1},
                ],
            },
        )
    )
    await made(http.post(f"/v1/agents/{AGENT}/experiments/{experiment['id']}/start"))
    arm_ids = [None, *arms]
    outcomes = []
    for n in range(OUTCOMES + OUTSIDE):
        arm = n % 3
        inside = n < OUTCOMES
        outcomes.append(
            {
                "variant_id": arm_ids[arm] if inside else live,
                "experiment_id": experiment["id"] if inside else None,
                "subject": f"user-{n}",
                "input_tokens": rng.randint(300, 3000),
                "output_tokens": rng.randint(40, 600),
                "latency_ms": round(rng.lognormvariate(6.6 - 0.1 * arm, 0.4), 1),
                "cost_usd": round(rng.uniform(0.001, 0.02), 5),
                "success": rng.random() < (0.62, 0.66, 0.60)[arm],
                "score": round(min(1.0, max(0.0, rng.gauss((0.70, 0.74, 0.69)[arm], 0.15))), 3),
            }
        )
    for chunk in range(0, len(outcomes), 1000):
        await made(http.post(f"/v1/agents/{AGENT}/outcomes", json={"data": outcomes[chunk : chunk + 1000]}))
    async with db.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
        totals = (
            (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM variants) AS variants,"
                        "       (SELECT count(*) FROM revisions) AS revisions,"
                        "       (SELECT count(*) FROM outcomes) AS outcomes, (SELECT count(*) FROM agents) AS agents"
                    )
                )
            )
            .mappings()
            .one()
        )
        history = (
            await conn.execute(
                text("SELECT id, target_id, action, created_at FROM revisions WHERE agent_id = :a ORDER BY id DESC"),
                {"a": agent["id"]},
            )
        ).all()
        variant_ids = (
            await conn.scalars(text("SELECT id FROM variants WHERE agent_id = :a ORDER BY id DESC"), {"a": agent["id"]})
        ).all()
    assert dict(totals) == {
        "variants": VARIANTS,
        "revisions": REVISIONS,
        "outcomes": OUTCOMES + OUTSIDE,
        "agents": 1,
    }, dict(totals)
    assert [r.created_at for r in history] == sorted((r.created_at for r in history), reverse=True)
    # Against a revision: one of the shown variant's edits, from the middle of its history.
    edits = [r.id for r in history if r.target_id == shown and r.action == "update"]
    other = next(v for v in variant_ids if v not in (shown, live, *arms))
    return {
        "agent": agent,
        "shown": slug_of[shown],
        "shown_id": shown,
        "edits_of_shown": counts[shown],
        "against_revision": edits[len(edits) // 2],
        "against_variant": other,
        "variants_after": variant_ids[VARIANTS // 2 - 1],
        "history_after": history[9_000 - 1].id,
        "at": timestamp(history[REVISIONS // 2].created_at)[:19],
        "experiment": experiment["id"],
        "totals": dict(totals),
        "history_days": round((history[0].created_at - history[-1].created_at).days),
    }


# ------------------------------------------------------------------------------ the pages


def pages(s: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name -> (path, a fragment the page must contain, so a page that fails is not timed)."""
    agent = f"/console/agents/{AGENT}"
    variant = f"{agent}/variants/{s['shown']}"
    return {
        "baseline: GET /healthz": ("/healthz", '"ok"'),
        "agents": ("/console/agents", AGENT),
        "agents?q=": ("/console/agents?q=support", AGENT),
        "agent": (agent, 'id="variants"'),
        "agent?after= (page 21 of variants)": (f"{agent}?after={s['variants_after']}", 'id="variants"'),
        "agent/edit": (f"{agent}/edit", "config.system_prompt"),
        "variant (against live)": (variant, 'id="diff"'),
        "variant?against=base": (f"{variant}?against=base", 'id="diff"'),
        "variant?against=<variant>": (f"{variant}?against={s['against_variant']}", 'id="diff"'),
        "variant?against=<revision>": (f"{variant}?against={s['against_revision']}", 'id="diff"'),
        "variant/activate (confirm)": (f"{variant}/activate", 'id="confirm-changes"'),
        "history": (f"{agent}/history", 'id="timeline"'),
        "history?after= (page 301)": (f"{agent}/history?after={s['history_after']}", 'id="timeline"'),
        "history?at=": (f"{agent}/history?at={s['at']}", 'id="as-of"'),
        "experiments": (f"{agent}/experiments", 'id="experiments"'),
        "experiment (results, charts)": (f"{agent}/experiments/{s['experiment']}", "<svg"),
    }


async def sign_in(http: httpx.AsyncClient, secret: str) -> None:
    form = await http.get("/console/sign-in")
    found = CSRF.search(form.text)
    assert found, form.text[:500]
    response = await http.post("/console/sign-in", data={"csrf": found.group(1), "key": secret})
    assert response.status_code == 303 and response.headers["location"] == "/console/agents", response.text[:500]


async def fetch(http: httpx.AsyncClient, path: str, marker: str) -> httpx.Response:
    response = await http.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    assert marker in response.text, (path, marker, response.text[:2000])
    return response


async def timings(
    http: httpx.AsyncClient, cases: dict[str, tuple[str, str]]
) -> tuple[dict[str, list[float]], dict[str, list[list[float]]]]:
    """ms per request of every page, REQUESTS each, the pages taking turns; and the ms each
    request spent in the garbage collector's pauses (by generation), which make the tails."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    pauses: dict[str, list[list[float]]] = {name: [] for name in cases}
    paused: dict[int, float] = {}
    began: list[float] = []

    def collector(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            generation = info["generation"]
            paused[generation] = paused.get(generation, 0.0) + (time.perf_counter() - began.pop()) * 1000

    gc.callbacks.append(collector)
    try:
        for round_ in range(WARMUP + REQUESTS):
            for name, (path, _) in cases.items():
                paused.clear()
                start = time.perf_counter()
                response = await http.get(path)
                elapsed = (time.perf_counter() - start) * 1000
                assert response.status_code == 200, (path, response.status_code)
                if round_ >= WARMUP:
                    runs[name].append(elapsed)
                    pauses[name].append([round(paused.get(g, 0.0), 3) for g in range(3)])
    finally:
        gc.callbacks.remove(collector)
    return runs, pauses


async def queries(db: Database, http: httpx.AsyncClient, cases: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Per page: SQL statements per request, and the median ms spent in them (from
    sending a statement until its rows are read), over 10 requests."""
    seen: list[float] = []
    started: dict[int, float] = {}
    # Writes go through the engine, reads through the read engine (its own pool); statements
    # the service sends to asyncpg itself (resolution on an autocommit connection) are not seen.
    engines = list({id(e): e.sync_engine for e in (db.engine, db.read_engine) if e is not None}.values())

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        started[id(context)] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        seen.append((time.perf_counter() - started.pop(id(context))) * 1000)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
    out: dict[str, Any] = {}
    try:
        for name, (path, _) in cases.items():
            counts, spent = [], []
            for _ in range(10):
                seen.clear()
                await http.get(path)
                counts.append(len(seen))
                spent.append(sum(seen))
            out[name] = {"statements": statistics.median(counts), "sql_ms_median": round(statistics.median(spent), 2)}
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)
    return out


async def profile(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """cProfile over PROFILED requests of `path`, per request: the functions with the most own
    time, and the project's code and templates by cumulative time (the ASGI layers above the
    handler left out). cProfile counts each resumption of a coroutine as a call, and roughly
    triples the time of Python-heavy code: read the shares, not the absolute figures."""
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    for _ in range(PROFILED):
        await http.get(path)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in stats.values()) / PROFILED * 1000

    def row(key: tuple[str, int, str], value: tuple[Any, ...]) -> dict[str, Any]:
        file, line, func = key
        _, calls, own, cumulative, _ = value
        return {
            "function": f"{Path(file).name}:{line}({func})",
            "calls_per_request": round(calls / PROFILED, 1),
            "own_ms": round(own / PROFILED * 1000, 2),
            "cumulative_ms": round(cumulative / PROFILED * 1000, 2),
        }

    def ours(file: str) -> bool:
        return "/services/" in file or file.endswith(".html") or file.endswith("jinja2/environment.py")

    by_own = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:20]
    by_cumulative = sorted(((k, v) for k, v in stats.items() if ours(k[0])), key=lambda item: item[1][3], reverse=True)[
        :25
    ]
    render = sum(v[3] for k, v in stats.items() if k[0].endswith("jinja2/environment.py") and k[2] == "render")
    return {
        "path": path,
        "requests": PROFILED,
        "profiled_ms_per_request": round(total, 2),
        "template_render_ms_per_request": round(render / PROFILED * 1000, 2),
        "by_own_time": [row(k, v) for k, v in by_own],
        "by_cumulative": [row(k, v) for k, v in by_cumulative],
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def run() -> dict[str, Any]:
    url = await load.fresh_database("av_console")
    db = Database.from_url(url)
    try:
        key = await keys_service.create_key(db, KeyCreate(name="bench-console", scope="admin"))
        app = create_app(Settings(database_url=None, rate_limits=load.UNLIMITED), database=db)
        load.quiet_access_log(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench",
            headers={"Authorization": f"Bearer {key['secret']}"},
            timeout=60,
        ) as api:
            seeded = await seed(db, api, key["name"])
        print("seeded", {k: v for k, v in seeded.items() if k != "agent"}, flush=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as http:
            await sign_in(http, key["secret"])
            cases = pages(seeded)
            sizes = {
                name: len((await fetch(http, path, marker)).content) / 1024 for name, (path, marker) in cases.items()
            }
            tracked = len(gc.get_objects())
            runs, pauses = await timings(http, cases)
            sql = await queries(db, http, cases)
            medians = {name: statistics.median(r) for name, r in runs.items()}
            pages_only = {name: m for name, m in medians.items() if not name.startswith("baseline")}
            over = [name for name, m in pages_only.items() if m > TARGET_MS]
            slowest = max(pages_only, key=pages_only.__getitem__)
            profiles = {name: await profile(http, cases[name][0]) for name in dict.fromkeys([*over, slowest])}
            # The same timings with the objects alive now (the app, its modules) out of the
            # collector's reach: what a gc.freeze() after startup would do to the tails.
            gc.collect()
            gc.freeze()
            try:
                frozen, frozen_pauses = await timings(http, cases)
            finally:
                gc.unfreeze()
    finally:
        await db.dispose()
    baseline = medians["baseline: GET /healthz"]

    def frozen_figures(name: str) -> dict[str, Any]:
        return {
            "frozen_median_ms": round(statistics.median(frozen[name]), 2),
            "frozen_p95_ms": round(quantile(frozen[name], 0.95), 2),
            "frozen_requests_with_full_gc": sum(p[2] > 0 for p in frozen_pauses[name]),
            "frozen_gc_ms_max": round(max(sum(p) for p in frozen_pauses[name]), 2),
        }

    full = [sum(p) for r in pauses.values() for p in r if p[2]]
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": load.machine(),
        "target_ms": TARGET_MS,
        "seed": {
            "agents": seeded["totals"]["agents"],
            "variants": seeded["totals"]["variants"],
            "revisions": seeded["totals"]["revisions"],
            "outcomes": seeded["totals"]["outcomes"],
            "experiment_outcomes": OUTCOMES,
            "experiment_arms": 3,
            "history_days": seeded["history_days"],
            "shown_variant": seeded["shown"],
            "shown_variant_revisions": seeded["edits_of_shown"],
        },
        "warmup_rounds": WARMUP,
        "requests": REQUESTS,
        "pages": {
            name: {
                "path": cases[name][0],
                "median_ms": round(medians[name], 2),
                "p95_ms": round(quantile(runs[name], 0.95), 2),
                "net_of_baseline_ms": round(medians[name] - baseline, 2) if name in pages_only else None,
                "kib": round(sizes[name], 1),
                **sql[name],
                "over_target": name in over,
                "requests_with_full_gc": sum(p[2] > 0 for p in pauses[name]),
                "gc_ms_max": round(max(sum(p) for p in pauses[name]), 2),
                "p95_without_gc_ms": round(
                    quantile(
                        [x for x, p in zip(runs[name], pauses[name], strict=True) if not p[2]] or [math.nan], 0.95
                    ),
                    2,
                ),
                **frozen_figures(name),
            }
            for name in cases
        },
        "gc_tracked_objects": tracked,
        "full_gc": {
            "count": len(full),
            "of_requests": REQUESTS * len(cases),
            "median_ms": round(statistics.median(full), 2) if full else None,
            "max_ms": round(max(full), 2) if full else None,
            "frozen_count": sum(p[2] > 0 for r in frozen_pauses.values() for p in r),
            "frozen_max_ms": round(max((sum(p) for r in frozen_pauses.values() for p in r if p[2]), default=0.0), 2),
        },
        "over_target": over,
        "slowest": slowest,
        "runs_ms": {name: [round(x, 3) for x in r] for name, r in runs.items()},
        "gc_pause_ms_by_generation": pauses,
        "frozen_runs_ms": {name: [round(x, 3) for x in r] for name, r in frozen.items()},
        "profiles": profiles,
    }


def main() -> None:
    record = asyncio.run(run())
    for name, page in record["pages"].items():
        flag = "  OVER" if page["over_target"] else ""
        print(
            f"{name:40} {page['median_ms']:8.2f} {page['p95_ms']:8.2f} ms {page['kib']:7.1f} KiB"
            f" {page['statements']:4} SQL {page['sql_ms_median']:6.2f} ms;"
            f" p95 without GC {page['p95_without_gc_ms']:7.2f},"
            f" {page['requests_with_full_gc']} full GCs, max GC {page['gc_ms_max']} ms;"
            f" frozen {page['frozen_median_ms']:.2f} / {page['frozen_p95_ms']:.2f} ms{flag}",
            flush=True,
        )
    print("full collections:", record["full_gc"], "tracked objects:", record["gc_tracked_objects"])
    for name, found in record["profiles"].items():
        print(f"\nprofile of {name} ({found['profiled_ms_per_request']} ms per request under cProfile):")
        for row in found["by_cumulative"][:25]:
            print(f"  {row['cumulative_ms']:8.2f} {row['own_ms']:8.2f} {row['calls_per_request']:8} {row['function']}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps(record, indent=2) + "\n")
    write_section()


def console_section() -> list[str]:
    """The console's pages, as this script measured them (bench/results/console.json)."""
    path = ROOT / "bench" / "results" / "console.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    s, g = r["seed"], r["full_gc"]
    rows = []
    for name, page in r["pages"].items():
        flag = " **over**" if page["over_target"] else ""
        net = "" if page["net_of_baseline_ms"] is None else f"{page['net_of_baseline_ms']:.1f}"
        rows.append(
            f"| {name}{flag} | {page['median_ms']:.1f} | {page['p95_ms']:.1f} | {net} | {page['kib']:.1f}"
            f" | {page['statements']:g} | {page['sql_ms_median']:.1f} | {page['frozen_p95_ms']:.1f} |"
        )
    over = r["over_target"]
    verdict = (
        f"Over the target: {', '.join(over)}."
        if over
        else f"Every page is under the target; the slowest is {r['slowest']}"
        f" ({r['pages'][r['slowest']]['median_ms']:.1f} ms median)."
    )
    return [
        "## Console",
        "",
        f"Run {r['when'][:16].replace('T', ' ')} UTC on {r['machine']}; `bench/console.py`. Server-side render"
        " time of each page in process (`create_app` with an httpx `ASGITransport`, signed in with an admin key"
        f" like a browser): medians and p95 over {r['requests']} requests per page after {r['warmup_rounds']}"
        " warm-up rounds, every page taking its turn in each round.",
        f"Seed: {s['agents']} agent with {s['variants']:,} variants and {s['revisions']:,} revisions (about"
        f" {s['history_days']} days of history), a running {s['experiment_arms']}-arm experiment with"
        f" {s['experiment_outcomes']:,} outcomes ({s['outcomes']:,} outcomes in all). The variant page shows"
        f" {s['shown_variant']}, the most edited ({s['shown_variant_revisions']} revisions).",
        "",
        "| page | median ms | p95 ms | net of baseline ms | KiB | SQL statements | SQL ms | p95 ms, frozen |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f'Target: under {r["target_ms"]:g} ms per page on the server. {verdict} "Net of baseline" subtracts'
        " the median of `GET /healthz` through the same client (the client, the transport and the app's outer"
        " layers). SQL statements and SQL ms: per request, from a separate pass with SQLAlchemy's cursor events"
        " (median of 10 requests); the rest of a page's time is Python (the service layer, the templates).",
        "",
        f"The tails are the garbage collector's: {g['count']} full collections in {g['of_requests']:,} timed"
        f" requests, median {g['median_ms']:.0f} ms, max {g['max_ms']:.0f} ms each, landing on whichever page allocated"
        f" last (the collector then walks every long-lived object in the process, about"
        f" {r['gc_tracked_objects'] // 1000:,}k of them, mostly the app's own modules, routes and models)."
        f' "p95 ms, frozen": the same rounds again after `gc.freeze()` (done in the bench process, as'
        f" `serve` does at the end of startup): {g['frozen_count']} full collections, max {g['frozen_max_ms']:.1f} ms.",
        "",
    ]


def write_section() -> None:
    """Put this bench's section at the end of bench/RESULTS.md, replacing an earlier one."""
    load.replace_section("## Console", console_section())


if __name__ == "__main__":
    main()
