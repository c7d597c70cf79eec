"""What counting for /metrics costs the hot path: a cached `GET .../resolved` answered by
the resolve fast path, in process, with the metrics (this checkout) and without (another
checkout, from before them), taking turns.

    python -m bench.metrics /path/to/before [--rounds 9] [--calls 20000]

Each side runs in a process of its own, started in its checkout (its `services` package is
the one imported), on one database seeded as `bench.load` seeds it (one agent, a `resolve`
key), with the service's defaults but the access log off (it is the same on both sides,
and its flusher never runs in a loop that does not yield). A process calls the app's
front (its whole ASGI stack) directly with a plain resolve, the `resolve` key and no-op
sends, 2,000 times to warm it (the first is the miss that fills the cache), then `--calls`
times in each of 5 repeats, and reports the median CPU time per call of its thread
(`time.thread_time`: what the request costs the process, unlike the wall clock, which
other processes on these 2 cores move by more than the effect measured). The rounds take
turns, in alternating order; the report gives each side's median over rounds and the
with/without ratio. Writes bench/results/metrics.json and the "Metrics on the hot path"
section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM, REPEATS = 2_000, 5
CHILD = (
    "import runpy, sys; path = sys.argv[1]; sys.argv = [path, '--child', *sys.argv[2:]];"
    " runpy.run_path(path, run_name='__main__')"
)


async def child(url: str, key: str, calls: int) -> None:
    """One side: the microseconds of CPU per cached resolve, printed as JSON."""
    import services
    from services.api.app import create_app
    from services.api.db import Database
    from services.api.settings import Settings

    unlimited = '{"resolve": {"per_second": 1e9, "burst": 1000000000}}'
    db = Database.from_url(url, pool_size=2)
    app = create_app(Settings(database_url=url, rate_limits=unlimited, access_log=False), database=db)
    front = app.front  # type: ignore[attr-defined]
    request = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/agents/bench-1/resolved",
        "raw_path": b"/v1/agents/bench-1/resolved",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", b"Bearer " + key.encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(WARM):
        await front(dict(request), receive, send)
    if set(statuses) != {200}:
        raise SystemExit(f"answers other than 200: {sorted(set(statuses))}")

    async def quiet_send(message: dict) -> None:
        pass

    per_call = []
    for _ in range(REPEATS):
        start = time.thread_time()
        for _ in range(calls):
            await front(dict(request), receive, quiet_send)
        per_call.append((time.thread_time() - start) / calls * 1e6)
    await db.dispose()
    print(json.dumps({"services": services.__file__, "us_per_call": statistics.median(per_call), "repeats": per_call}))


def run_side(checkout: Path, url: str, key: str, calls: int) -> dict:
    out = subprocess.run(
        # Run by path from the checkout (sys.path[0] is then the checkout, not bench/).
        [sys.executable, "-c", CHILD, str(Path(__file__).resolve()), url, key, str(calls)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: {out.stderr[-2000:]}")
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["services"].startswith(str(checkout)), (checkout, result["services"])  # the right code ran
    return result


async def main() -> None:
    from bench.compare import revision
    from bench.load import KEYS, fresh_database, machine, make_keys, replace_section, seed

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a checkout from before the metrics")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    sides = {"without": args.before.resolve(), "with": ROOT}
    url = await fresh_database("av_metrics")
    await make_keys(url)
    await seed(url, 1)
    runs: dict[str, list[float]] = {"without": [], "with": []}
    for round_ in range(args.rounds):
        order = ["without", "with"] if round_ % 2 == 0 else ["with", "without"]
        for side in order:
            runs[side].append(run_side(sides[side], url, KEYS["resolve"], args.calls)["us_per_call"])
        print(f"round {round_ + 1}: " + ", ".join(f"{s} {runs[s][-1]:.3f} us" for s in ("without", "with")), flush=True)
    medians = {side: statistics.median(values) for side, values in runs.items()}
    ratio = medians["with"] / medians["without"]
    report = {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "checkouts": {side: revision(path) for side, path in sides.items()},
        "calls": args.calls,
        "rounds": args.rounds,
        "median_us_per_call": medians,
        "with_over_without": round(ratio, 3),
        "runs_us_per_call": runs,
    }
    (ROOT / "bench" / "results" / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"median CPU per cached resolve: without {medians['without']:.3f} us, with {medians['with']:.3f} us,"
        f" with/without = {ratio:.3f}"
    )
    replace_section(
        "## Metrics on the hot path",
        [
            "## Metrics on the hot path",
            "",
            f"`bench/metrics.py`, run {report['when'][:16].replace('T', ' ')} UTC on {report['machine']}: a cached"
            " `GET .../resolved` through the app's whole ASGI stack in process (the fast path answers it), CPU"
            f" time per call, {args.rounds} rounds in turns of {REPEATS} x {args.calls:,} calls each.",
            f"Without metrics: `{report['checkouts']['without']}`; with: `{report['checkouts']['with']}`.",
            "",
            "| | without metrics | with metrics | with / without |",
            "|---|---|---|---|",
            f"| median CPU per cached resolve | {medians['without']:.3f} us | {medians['with']:.3f} us | {ratio:.3f} |",
        ],
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        asyncio.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        asyncio.run(main())
