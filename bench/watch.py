"""`make bench`, part 3: what open watch streams cost a server, and how fast a change
reaches all of them. Writes bench/results/watch.json (bench/load.py puts it in RESULTS.md).

One `agent-variants serve` process (one worker) on the embedded PostgreSQL; this process
opens WATCHERS streams on one agent, and the server's resident memory is read before and
after; then one activation, timed until the last stream has it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from bench import load

ROOT = Path(__file__).resolve().parents[1]
WATCHERS = 2000
ROUNDS = 5


async def next_event(lines: AsyncIterator[str]) -> None:
    """Read one stream's lines up to the end of its next event (the iterator goes on later)."""
    async for line in lines:
        if line.startswith("data: "):
            return


async def main() -> None:
    url = await load.fresh_database("av_watch")
    await load.seed(url, 1)
    await load.make_keys(url)
    auth = {"Authorization": f"Bearer {load.KEYS['admin']}"}
    limits = httpx.Limits(max_connections=WATCHERS + 10, max_keepalive_connections=0)
    with load.Server(url) as s:
        process = psutil.Process(s.process.pid)
        async with httpx.AsyncClient(limits=limits, timeout=60, headers=auth) as http:
            variants = [
                (await http.post(f"{s.base}/v1/agents/bench-1/variants", json={"variant_name": f"w{i}"})).json()
                for i in range(2)
            ]
            await asyncio.sleep(1)
            rss_before = process.memory_info().rss
            streams = []
            for _ in range(WATCHERS):
                context = http.stream("GET", f"{s.base}/v1/agents/bench-1/bundle/watch")
                response = await context.__aenter__()
                streams.append((context, response.aiter_lines()))
            await asyncio.gather(*(next_event(lines) for _, lines in streams))
            await asyncio.sleep(1)
            rss_after = process.memory_info().rss
            fan_out = []
            for n in range(ROUNDS):
                await http.post(f"{s.base}/v1/agents/bench-1/variants/{variants[n % 2]['id']}/activate")
                written = time.perf_counter()
                await asyncio.gather(*(next_event(lines) for _, lines in streams))
                fan_out.append((time.perf_counter() - written) * 1000)
            for context, _ in streams:
                await context.__aexit__(None, None, None)
    record = {
        "when": datetime.now(UTC).isoformat(),
        "watchers": WATCHERS,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "kib_per_watch": round((rss_after - rss_before) / WATCHERS / 1024, 1),
        "fan_out_ms_median": round(statistics.median(fan_out), 1),
        "fan_out_ms_max": round(max(fan_out), 1),
    }
    print(record)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "watch.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
