"""`make bench`: reads of other agents during a write storm on one agent (issue 16, item 5).

One server at the default settings (uncached resolution, RESOLVE_CACHE_SIZE=0, so every
read reaches the database), 100 other agents. Reader loops send GET
/v1/agents/{other}/resolved for a while at rest, then again while 50 loops in another
process activate one agent's two variants in turn (each activation waits on the agent's
row lock). Target: the readers' p99 during the storm within 3x their p99 at rest. Any
non-2xx read fails the case. Writes to bench/results/storm.json and bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.synchronize import Event

import httpx

from bench import load

OTHERS = 100
READERS = 4
WRITERS = 50
SECONDS = 5.0
TARGET = 3.0
STORM_AGENT = "bench-1"
LIMITS = json.dumps({scope: {"per_second": 1e9, "burst": 10**9} for scope in ("resolve", "read", "write", "admin")})


async def read_for(base: str, seconds: float) -> tuple[list[float], Counter[int]]:
    """Latencies (ms) of uncached resolutions of random other agents, READERS at a time."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {load.KEYS['resolve']}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:

        async def reader() -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                path = f"/v1/agents/bench-{random.randint(2, OTHERS + 1)}/resolved"
                started = time.perf_counter()
                response = await http.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] += 1

        await asyncio.gather(*(reader() for _ in range(READERS)))
    return latencies, statuses


def storm(base: str, key: str, variants: list[str], stop: Event, counts: dict[int, int]) -> None:
    """WRITERS loops activating the storm agent's variants in turn, until `stop` (run in its
    own process, so the writers' client does not slow the readers' one)."""

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:

            async def writer(i: int) -> None:
                while not stop.is_set():
                    variant = variants[i % 2]
                    response = await http.post(f"/v1/agents/{STORM_AGENT}/variants/{variant}/activate")
                    counts[response.status_code] = counts.get(response.status_code, 0) + 1
                    i += 1

            await asyncio.gather(*(writer(i) for i in range(WRITERS)))

    asyncio.run(run())


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2)}


async def main() -> None:
    url = await load.fresh_database("av_storm")
    await load.make_keys(url)
    await load.seed(url, OTHERS + 1)
    with load.Server(url, RESOLVE_CACHE_SIZE="0", RATE_LIMITS=LIMITS) as server:
        admin = {"Authorization": f"Bearer {load.KEYS['admin']}"}
        async with httpx.AsyncClient(base_url=server.base, headers=admin) as http:
            made = await http.post(f"/v1/agents/{STORM_AGENT}/variants", json={"variant_name": "Storm"})
            made.raise_for_status()
        variants = ["concise", made.json()["slug"]]
        await read_for(server.base, 1.0)  # warm up
        rest, rest_statuses = await read_for(server.base, SECONDS)
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            stop, counts = manager.Event(), manager.dict()
            writers = context.Process(target=storm, args=(server.base, load.KEYS["admin"], variants, stop, counts))
            writers.start()
            await asyncio.sleep(1.0)  # the storm under way
            during, storm_statuses = await read_for(server.base, SECONDS)
            stop.set()
            writers.join(60)
            writes = {str(status): count for status, count in sorted(counts.items())}
    at_rest, in_storm = percentiles(rest), percentiles(during)
    ratio = round(in_storm["p99_ms"] / at_rest["p99_ms"], 2)
    non_2xx = sum(n for s, n in (rest_statuses + storm_statuses).items() if not 200 <= s < 300)
    ok = ratio <= TARGET and non_2xx == 0
    result = {
        "run_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": load.machine(),
        "settings": "defaults (DB_POOL_SIZE=20, DB_READ_POOL_SIZE=10), RESOLVE_CACHE_SIZE=0",
        "other_agents": OTHERS,
        "readers": READERS,
        "writers": WRITERS,
        "seconds": SECONDS,
        "at_rest": at_rest,
        "during_storm": in_storm,
        "p99_ratio": ratio,
        "target_ratio": TARGET,
        "non_2xx_reads": non_2xx,
        "activations_by_status": writes,
        "ok": ok,
    }
    (load.ROOT / "bench" / "results" / "storm.json").write_text(json.dumps(result, indent=2) + "\n")
    load.replace_section("## Reads during a write storm", section(result))
    print("storm", json.dumps(result), flush=True)
    if not ok:
        sys.exit(f"storm: p99 ratio {ratio} (target <= {TARGET}), {non_2xx} non-2xx reads")


def section(r: dict[str, object]) -> list[str]:
    rest, storm_ = r["at_rest"], r["during_storm"]
    assert isinstance(rest, dict) and isinstance(storm_, dict)
    verdict = "Met." if r["ok"] else "**Missed.**"
    return [
        "## Reads during a write storm",
        "",
        f"`bench/storm.py`, run {r['run_at']}: one server at the default pool sizes with RESOLVE_CACHE_SIZE=0,"
        f" {r['readers']} reader loops resolving random ones of {r['other_agents']} other agents for"
        f" {r['seconds']:g} s at rest, then for {r['seconds']:g} s while {r['writers']} loops (another process)"
        f" activate one agent's variants in turn, each waiting on its row lock.",
        "",
        "| reads of other agents | requests | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| at rest | {rest['requests']} | {rest['p50_ms']} | {rest['p99_ms']} |",
        f"| during the storm | {storm_['requests']} | {storm_['p50_ms']} | {storm_['p99_ms']} |",
        "",
        f"p99 during / at rest: {r['p99_ratio']} (target <= {r['target_ratio']:g}). {verdict}"
        f" Non-2xx reads: {r['non_2xx_reads']}. Activations by status: {r['activations_by_status']}."
        " Reads have their own pool (DB_READ_POOL_SIZE), so writers queued on the lock, holding every"
        " connection of the write pool, cannot make them wait for one.",
        "",
    ]


if __name__ == "__main__":
    asyncio.run(main())
