"""`make bench`: the cost of resolution, against a baseline measured in the same run.

Times, per call, on one connection in autocommit mode:
- baseline: `SELECT 1` (one round trip that does nothing: the floor for any query);
- resolve_agent_config by slug and by id, and a preview (the one-statement resolver);
- GET /v1/agents/{agent}/resolved through the whole app in-process (no sockets).
Each is run in several rounds; medians of the per-round means are reported, with the
ratio to the baseline. Results go to bench/results/resolve.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.load import quiet_access_log
from services.api import embedded, migrate
from services.api.app import create_app
from services.api.db import Database
from services.api.keys import service as keys_service
from services.api.keys.schemas import KeyCreate
from services.api.principal import SCOPES
from services.api.settings import Settings, normalise_database_url
from services.shared.agent_config import resolve_agent_config

ROOT = Path(__file__).resolve().parents[1]
ROUNDS, CALLS = 7, 400


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    """Median over rounds of the mean microseconds per call."""
    for _ in range(50):  # warm up: prepared statements, caches
        await call()
    means = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            await call()
        means.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(means)


async def _grow_history(url: str, agent_id: str, variant_id: str, count: int) -> str:
    """Append `count` revisions of the variant, one millisecond apart (edits of a shared
    definition: no environment, every environment's active variant as the latest left them);
    returns an instant in the middle of them (RFC 3339)."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO revisions (id, agent_id, target, target_id, action, environment_id, active_variant_id,"
                " active_variants, before, after, created_at)"
                " SELECT 'rev_' || upper(substr(md5(r.target_id || ':' || n), 1, 26)), r.agent_id, 'variant',"
                "        r.target_id, 'update', NULL, r.active_variant_id, r.active_variants,"
                "        r.after, r.after, clock_timestamp() + n * interval '1 millisecond'"
                " FROM generate_series(1, :count) AS n,"
                "      (SELECT * FROM revisions WHERE target_id = :variant ORDER BY created_at DESC LIMIT 1) AS r"
            ),
            {"count": count, "variant": variant_id},
        )
        middle = await conn.scalar(
            text("SELECT created_at FROM revisions WHERE agent_id = :agent ORDER BY created_at OFFSET :half LIMIT 1"),
            {"agent": agent_id, "half": count // 2},
        )
    await engine.dispose()
    return middle.isoformat()


BATCHES = 30
RESULT_OUTCOMES = int(os.environ.get("BENCH_RESULT_OUTCOMES", "10000000"))
RESULTS_TARGET_MS = 100  # contract 1.1: results stay under 100 ms at 10,000,000 outcomes
INGESTION_TARGET = 20_000  # outcomes/s
# Arms just under the exact-percentile limit (services/api/outcomes/repository.py): their
# percentiles are percentile_cont over their rows, the slowest results there are.
EXACT_ARM_OUTCOMES = 99_999


async def _median_ms(client: httpx.AsyncClient, path: str, times: int = 7) -> float:
    response = await client.get(path)  # warm up: plans, pages
    assert response.status_code == 200, response.text
    timings = []
    for _ in range(times):
        start = time.perf_counter()
        response = await client.get(path)
        assert response.status_code == 200, response.text
        timings.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(timings), 1)


async def _seed_outcomes(url: str, slug: str, experiment_id: str, variant_id: str | None, count: int) -> None:
    """`count` outcomes of the experiment written straight into the table (the triggers add
    them to the arm totals and bins, as for any insert); half to the variant's arm when
    `variant_id` is given, else all to the base arm."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        agent_id = await conn.scalar(text("SELECT id FROM agents WHERE slug = :slug"), {"slug": slug})
        await conn.execute(
            text(
                "INSERT INTO outcomes (agent_id, variant_id, experiment_id, input_tokens, output_tokens, latency_ms,"
                " success, score)"
                " SELECT :agent, CASE WHEN n % 2 = 1 THEN :variant END, :experiment, 800 + n % 400, 150,"
                "        random() * 2000, random() < 0.3 + (n % 2) * 0.05, random() * 5"
                " FROM generate_series(1, :count) AS n"
            ),
            {"agent": agent_id, "variant": variant_id, "experiment": experiment_id, "count": count},
        )
        await conn.execute(text("ANALYZE outcomes"))
    await engine.dispose()


async def _outcomes(client: httpx.AsyncClient, url: str, slug: str, variant_id: str) -> tuple[dict, dict]:
    """Ingestion: outcomes/s through `POST /outcomes` in batches of 1,000 (in process, one
    request at a time). Results: `GET .../results` over RESULT_OUTCOMES outcomes (10 million
    unless BENCH_RESULT_OUTCOMES says) of one experiment with two arms (percentiles from the
    arms' sketches), and of another whose two arms have EXACT_ARM_OUTCOMES each (exact percentiles)."""

    async def experiment(arms: list[dict]) -> str:
        response = await client.post(f"/v1/agents/{slug}/experiments", json={"name": "bench", "arms": arms})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    big = await experiment([{"variant": "base", "weight": 1}, {"variant": variant_id, "weight": 1}])
    batch = {
        "data": [
            {
                "variant_id": variant_id if n % 2 else None,
                "experiment_id": big,
                "subject": f"user-{n}",
                "input_tokens": 800 + n,
                "output_tokens": 150,
                "latency_ms": 900.5 + n,
                "success": n % 3 == 0,
                "score": (n % 5) * 1.0 + n / 997,  # not whole: the exact sums' general path
            }
            for n in range(1000)
        ]
    }
    rates = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        response = await client.post(f"/v1/agents/{slug}/outcomes", json=batch)
        assert response.status_code == 202, response.text
        rates.append(1000 / (time.perf_counter() - start))
    start = time.perf_counter()
    await _seed_outcomes(url, slug, big, variant_id, RESULT_OUTCOMES)
    seed_seconds = time.perf_counter() - start
    big_ms = await _median_ms(client, f"/v1/agents/{slug}/experiments/{big}/results")
    small = await experiment([{"variant": "base", "weight": 1}, {"variant": variant_id, "weight": 1}])
    await _seed_outcomes(url, slug, small, variant_id, 2 * EXACT_ARM_OUTCOMES)
    small_ms = await _median_ms(client, f"/v1/agents/{slug}/experiments/{small}/results")
    ingestion = {
        "batch_size": 1000,
        "batches": BATCHES,
        "median_outcomes_per_second": round(statistics.median(rates)),
        "target_outcomes_per_second": INGESTION_TARGET,
        "seed_outcomes_per_second": round(RESULT_OUTCOMES / seed_seconds),  # one INSERT, through the triggers
    }
    results = {
        "outcomes": RESULT_OUTCOMES + BATCHES * 1000,
        "median_ms": big_ms,
        "exact_arm_outcomes": EXACT_ARM_OUTCOMES,
        "exact_arm_median_ms": small_ms,
        "target_ms": RESULTS_TARGET_MS,
    }
    return ingestion, results


def _check(ingestion: dict, results: dict) -> list[str]:
    """The targets missed, if any."""
    missed = []
    if ingestion["median_outcomes_per_second"] < INGESTION_TARGET:
        missed.append(f"ingestion {ingestion['median_outcomes_per_second']:,}/s < {INGESTION_TARGET:,}/s")
    for name in ("median_ms", "exact_arm_median_ms"):
        if results[name] >= RESULTS_TARGET_MS:
            missed.append(f"results {name} {results[name]} ms >= {RESULTS_TARGET_MS} ms")
    return missed


async def outcomes_only() -> None:
    """`python -m bench.run outcomes`: only the outcomes part (ingestion and results), on
    DATABASE_URL or the embedded bench server; prints its figures, writes nothing."""
    url = os.environ.get("DATABASE_URL")
    if url:
        url = normalise_database_url(url)
    else:
        server = embedded.start(ROOT / ".data" / "bench-postgres")
        url = embedded.ensure_database(server, "av_bench")
    await migrate.upgrade(url)
    db = Database.from_url(url)
    app = create_app(Settings(database_url=None, auth_disabled=True), database=db)
    quiet_access_log(app)
    slug = f"bench-outcomes-{int(time.time())}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        response = await client.post(
            "/v1/agents",
            json={"name": slug, "config": {"model_provider": "openai", "model_name": "gpt-4o", "context_window": 8000}},
        )
        assert response.status_code == 201, response.text
        variant = (await client.post(f"/v1/agents/{slug}/variants", json={"variant_name": "v"})).json()
        ingestion, results = await _outcomes(client, url, slug, variant["id"])
        await client.delete(f"/v1/agents/{slug}")
    await db.dispose()
    print(json.dumps({"outcome_ingestion": ingestion, "experiment_results": results}, indent=2))
    for missed in _check(ingestion, results):
        print("MISSED:", missed)


async def main() -> None:
    url = os.environ.get("DATABASE_URL")
    if url:
        url = normalise_database_url(url)
    else:
        server = embedded.start(ROOT / ".data" / "bench-postgres")
        url = embedded.ensure_database(server, "av_bench")
    await migrate.upgrade(url)

    db = Database.from_url(url)
    # Auth on, as in production, without rate limits (this measures cost, not policy).
    unlimited = {scope: {"per_second": 1e9, "burst": 10**9} for scope in SCOPES}
    app = create_app(Settings(database_url=None, rate_limits=unlimited), database=db)
    quiet_access_log(app)
    slug = f"bench-{int(time.time())}"
    key = await keys_service.create_key(db, KeyCreate(name=slug, scope="admin"))
    auth = {"Authorization": f"Bearer {key['secret']}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=auth
    ) as client:
        agent = (
            await client.post(
                "/v1/agents",
                json={
                    "name": slug,
                    "config": {"model_provider": "openai", "model_name": "gpt-4o", "context_window": 8000},
                },
            )
        ).json()
        variant = (
            await client.post(
                f"/v1/agents/{slug}/variants",
                json={
                    "variant_name": "v",
                    "overrides": {"temperature": 0.2, "system_prompt": "x" * 2000},
                },
            )
        ).json()
        await client.post(f"/v1/agents/{slug}/variants/{variant['id']}/activate")

        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            results = {
                "baseline_select_1": await _timed(lambda: conn.execute(text("SELECT 1"))),
                "resolve_by_slug": await _timed(lambda: resolve_agent_config(conn, slug)),
                "resolve_by_id": await _timed(lambda: resolve_agent_config(conn, agent["id"])),
                "preview_by_slug": await _timed(lambda: resolve_agent_config(conn, slug, variant="v")),
            }
        await engine.dispose()
        results["http_get_resolved_in_process"] = await _timed(lambda: client.get(f"/v1/agents/{slug}/resolved"))
        # Time travel: on this short history (4 revisions), then on a long one.
        now = datetime.now(UTC).isoformat()
        results["http_get_resolved_at_4_revisions"] = await _timed(
            lambda: client.get(f"/v1/agents/{slug}/resolved", params={"at": now})
        )
        # 10,000 more revisions of the active variant.
        middle = await _grow_history(url, agent["id"], variant["id"], 10_000)
        results["http_get_resolved_at_10k_revisions"] = await _timed(
            lambda: client.get(f"/v1/agents/{slug}/resolved", params={"at": middle})
        )
        ingestion, results_timing = await _outcomes(client, url, slug, variant["id"])
        await client.delete(f"/v1/agents/{slug}")
        await client.delete(f"/v1/keys/{slug}")
    await db.dispose()

    base = results["baseline_select_1"]
    print(f"{'case':34} {'median us/call':>15} {'x baseline':>11}")
    for name, micros in results.items():
        print(f"{name:34} {micros:15.1f} {micros / base:11.2f}")
    print(f"outcome ingestion: {ingestion['median_outcomes_per_second']:,} outcomes/s in batches of 1,000")
    print(f"experiment results over {results_timing['outcomes']:,} outcomes: {results_timing['median_ms']:,} ms")
    print(
        f"experiment results, one arm of {results_timing['exact_arm_outcomes']:,} outcomes (exact percentiles):"
        f" {results_timing['exact_arm_median_ms']:,} ms"
    )
    for missed in _check(ingestion, results_timing):
        print("MISSED:", missed)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    record = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": ROUNDS,
        "calls_per_round": CALLS,
        "median_us_per_call": {k: round(v, 1) for k, v in results.items()},
        "ratio_to_baseline": {k: round(v / base, 2) for k, v in results.items()},
        "outcome_ingestion": ingestion,
        "experiment_results": results_timing,
    }
    (out / "resolve.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    import sys

    asyncio.run(outcomes_only() if sys.argv[1:] == ["outcomes"] else main())
