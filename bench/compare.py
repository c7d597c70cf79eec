"""Before and after: the same `/resolved` load cases against two checkouts of the service,
taking turns, so the machine's drift (these machines are small and noisy) hits both alike.

    python -m bench.compare /path/to/before /path/to/after [--rounds 5] [--agents 10000]

Each checkout is served by its own uvicorn worker, started in that directory (its
`services` package is the one imported), on one database seeded as `bench.load` seeds it
and migrated by the checkout this module runs from: the two must share a schema, or the
older one must run on the newer one's (additive migrations: new nullable columns). An older
checkout's /readyz says its migrations are behind, so both are waited for on /healthz. For each
case both servers run at once and wrk (1 thread, 32 connections) hits one, then the other,
`--rounds` times; the report gives each side's median and the after/before ratio. The cases:
cached resolve (after a sweep that fills the cache), uncached resolve
(RESOLVE_CACHE_SIZE=0), and `?subject=` (served from the cached arms, through FastAPI). Any non-2xx answer fails
the run. Writes bench/results/compare.json and the "Before and after" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench.load import KEYS, ROOT, Server, ensure_wrk, fresh_database, machine, make_keys, replace_section, seed, wrk

RESOLVE = "/v1/agents/bench-%d/resolved"
CASES = {
    # name: (server settings, path)
    "cached": ({"RESOLVE_CACHE_TTL_SECONDS": "3600"}, RESOLVE),
    "uncached": ({"RESOLVE_CACHE_SIZE": "0"}, RESOLVE),
    # One agent, a different subject each request: the arm is picked from the cached entry.
    "subject": ({"RESOLVE_CACHE_TTL_SECONDS": "3600"}, "/v1/agents/bench-1/resolved?subject=user-%d"),
}


def revision(checkout: Path) -> str:
    """The checkout's commit (with `+` when its work tree has changes), or its path."""
    head = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(checkout), "status", "--porcelain", "--", "services"], capture_output=True, text=True
    )
    return (head.stdout.strip() + ("+" if dirty.stdout.strip() else "")) or str(checkout)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--agents", type=int, default=10_000)
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": args.after.resolve()}
    wrk_bin = ensure_wrk()
    url = await fresh_database("av_compare")
    await make_keys(url)
    await seed(url, args.agents)
    sweep = f"{max(4, math.ceil(args.agents / 600))}s"

    report: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "agents": args.agents,
        "rounds": args.rounds,
        "checkouts": {side: revision(path) for side, path in checkouts.items()},
        "cases": {},
    }
    for case, (settings, path) in CASES.items():
        runs: dict[str, list[float]] = {"before": [], "after": []}
        with (
            Server(
                url, cwd=checkouts["before"], ready="/healthz", PYTHONPATH=str(checkouts["before"]), **settings
            ) as before,
            Server(
                url, cwd=checkouts["after"], ready="/healthz", PYTHONPATH=str(checkouts["after"]), **settings
            ) as after,
        ):
            servers = {"before": before, "after": after}
            for server in servers.values():  # fill the caches (and warm both processes)
                wrk(wrk_bin, server.base, path, count=args.agents, sweep=True, duration=sweep)
            for _ in range(args.rounds):
                for side, server in servers.items():
                    result = wrk(wrk_bin, server.base, path, count=args.agents)
                    if result["non_2xx"]:
                        raise SystemExit(f"{case} on {side}: {result['non_2xx']:.0f} answers were not 2xx")
                    runs[side].append(result["rps"])
        medians = {side: statistics.median(values) for side, values in runs.items()}
        report["cases"][case] = {  # type: ignore[index]
            "median_rps": medians,
            "after_over_before": round(medians["after"] / medians["before"], 3),
            "runs_rps": runs,
        }
        print(
            case,
            {side: round(m) for side, m in medians.items()},
            f"after/before = {medians['after'] / medians['before']:.3f}",
            flush=True,
        )
    (ROOT / "bench" / "results" / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    write_section(report)


def write_section(report: dict) -> None:
    """The comparison's section of bench/RESULTS.md."""
    lines = [
        "## Before and after",
        "",
        f"`bench/compare.py`, run {report['when'][:16].replace('T', ' ')} UTC on {report['machine']}:"
        f" the same cases against two checkouts served side by side on one database of {report['agents']:,}"
        f" agents, taking turns, {report['rounds']} runs of wrk each (1 thread, 32 connections).",
        f"Before: `{report['checkouts']['before']}`; after: `{report['checkouts']['after']}`.",
        "",
        "| case | before req/s | after req/s | after / before |",
        "|---|---|---|---|",
    ]
    for case, figures in report["cases"].items():
        medians = figures["median_rps"]
        lines.append(
            f"| {case} | {medians['before']:,.0f} | {medians['after']:,.0f} | {figures['after_over_before']:.3f} |"
        )
    replace_section("## Before and after", lines)


if __name__ == "__main__":
    KEYS.clear()
    asyncio.run(main())
