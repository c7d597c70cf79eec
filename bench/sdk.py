"""`make bench`, part 4: the SDK's `resolve()` from memory, against `GET .../resolved` over
HTTP, and how fast an activation reaches an SDK. Writes bench/results/sdk.json and the
"SDK" section of bench/RESULTS.md (it runs after bench/load.py, which rewrites that file).

Two `agent-variants serve` processes, A and B, on one fresh database on the embedded
PostgreSQL; agent sdk-plain resolves plainly, sdk-experiment runs a 3-arm experiment.
- Per call, in the same loop (one pass over a list of distinct subjects, garbage
  collection off, as timeit does): the sync `AgentVariants` and the async
  `AsyncAgentVariants`, without a subject (sdk-plain) and with one (sdk-experiment); a
  dict lookup plus an attribute access, and the await of a coroutine doing the same (what
  the loop itself costs); and `GET /v1/agents/{agent}/resolved` (with `?subject=` for the
  experiment) to B on one kept-alive `httpx.Client`, the request the SDK replaces. The
  cases take turns within each repeat, so drift hits them alike; medians over REPEATS.
- Propagation: the sync client watches B; another process activates sdk-plain's two
  variants in turn through A. For each of ROUNDS changes, the time from the activation's
  response (in the writer) until `resolve()` returns the new variant (in the reader,
  polling every 0.1 ms). Both processes read CLOCK_MONOTONIC, which is system-wide on
  Linux. The watch task must be the same at the end as at the start: every change came
  down the one stream, none by a refetch.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from agent_variants import AgentVariants, AsyncAgentVariants

from bench import load

ROOT = Path(__file__).resolve().parents[1]
CALLS, REPEATS = 100_000, 7  # SDK and harness cases: calls per repeat, repeats
HTTP_CALLS = 1_000  # calls per repeat of the HTTP baselines
ROUNDS = 100  # activations timed for propagation
POLL = 0.0001  # seconds between resolve() calls while waiting for a change
TARGET_US = 5.0
PLAIN, EXPERIMENT = "sdk-plain", "sdk-experiment"


# The loops: every case makes one pass over the same list, so they differ only in the body.
def harness_loop(table: dict[str, Any], agent: str, subjects: list[str]) -> None:
    for _subject in subjects:
        table[agent].plain  # noqa: B018


def sync_plain_loop(resolve: Callable[..., Any], agent: str, subjects: list[str]) -> None:
    for _subject in subjects:
        resolve(agent)


def sync_subject_loop(resolve: Callable[..., Any], agent: str, subjects: list[str]) -> None:
    for subject in subjects:
        resolve(agent, subject)


async def async_harness_loop(lookup: Callable[..., Awaitable[Any]], agent: str, subjects: list[str]) -> None:
    for _subject in subjects:
        await lookup(agent)


async def async_plain_loop(resolve: Callable[..., Awaitable[Any]], agent: str, subjects: list[str]) -> None:
    for _subject in subjects:
        await resolve(agent)


async def async_subject_loop(resolve: Callable[..., Awaitable[Any]], agent: str, subjects: list[str]) -> None:
    for subject in subjects:
        await resolve(agent, subject)


def http_loop(http: httpx.Client, agent: str, subjects: list[str]) -> None:
    for _subject in subjects:
        http.get(f"/v1/agents/{agent}/resolved").raise_for_status()


def http_subject_loop(http: httpx.Client, agent: str, subjects: list[str]) -> None:
    for subject in subjects:
        http.get(f"/v1/agents/{agent}/resolved", params={"subject": subject}).raise_for_status()


async def timed(loop: Callable[..., Any], *args: Any) -> float:
    """Microseconds per call of one pass of `loop` (its last argument is the list it walks)."""
    gc.disable()
    try:
        start = time.perf_counter()
        done = loop(*args)
        if asyncio.iscoroutine(done):
            await done
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / len(args[-1]) * 1e6


async def per_call(sync: AgentVariants, http: httpx.Client, base: str) -> dict[str, list[float]]:
    """Every case's per-call microseconds, one figure per repeat."""
    subjects = [f"user-{n}" for n in range(CALLS)]
    http_subjects = subjects[:HTTP_CALLS]
    table = {PLAIN: sync._started().bundles.local[PLAIN, None]}

    async def lookup(agent: str) -> Any:
        return table[agent].plain

    async with AsyncAgentVariants(base, load.KEYS["resolve"]) as client:
        for agent in (PLAIN, EXPERIMENT):
            await client.resolve(agent)  # fetch the bundle, start the watch
        cases: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
            "harness_dict_attr": (harness_loop, (table, PLAIN, subjects)),
            "harness_await_dict_attr": (async_harness_loop, (lookup, PLAIN, subjects)),
            "sync_no_subject": (sync_plain_loop, (sync.resolve, PLAIN, subjects)),
            "sync_subject": (sync_subject_loop, (sync.resolve, EXPERIMENT, subjects)),
            "async_no_subject": (async_plain_loop, (client.resolve, PLAIN, subjects)),
            "async_subject": (async_subject_loop, (client.resolve, EXPERIMENT, subjects)),
            "http_no_subject": (http_loop, (http, PLAIN, http_subjects)),
            "http_subject": (http_subject_loop, (http, EXPERIMENT, http_subjects)),
        }
        for loop, args in cases.values():  # warm up
            await timed(loop, *args[:-1], args[-1][:1000])
        runs: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(REPEATS):
            for name, (loop, args) in cases.items():
                runs[name].append(await timed(loop, *args))
        arms = {(await client.resolve(EXPERIMENT, s)).variant_id for s in subjects[:1000]}
    assert len(arms) == 3, arms  # the subject cases do pick arms
    return runs


def writer(conn: Connection, base: str, key: str, variants: list[str]) -> None:
    """Another process: on each round number received, activate that round's variant through
    A and send back the monotonic times the request went out and its response arrived."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        while (n := conn.recv()) is not None:
            sent = time.monotonic()
            response = http.post(f"/v1/agents/{PLAIN}/variants/{variants[n % 2]}/activate")
            answered = time.monotonic()
            response.raise_for_status()
            conn.send((sent, answered))


def propagation(sync: AgentVariants, a: str, variants: list[str]) -> tuple[list[float], list[float]]:
    """Milliseconds from each activation's response (through A) until the SDK (watching B) has
    it, and from the moment its request went out."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=writer, args=(theirs, a, load.KEYS["admin"], variants), daemon=True
    )
    process.start()
    tasks = sync._started().bundles._tasks  # the SDK's own: its watch task comes first
    watch = tasks[PLAIN, None][0]
    latencies, from_request = [], []
    try:
        for n in range(-2, ROUNDS):  # two rounds of warm-up
            target = variants[n % 2]
            assert sync.resolve(PLAIN).variant_id != target
            ours.send(n)
            deadline = time.monotonic() + 10
            while sync.resolve(PLAIN).variant_id != target:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round {n}: the SDK did not get the change within 10 s")
                time.sleep(POLL)
            seen = time.monotonic()
            sent, answered = ours.recv()
            if n >= 0:
                latencies.append((seen - answered) * 1000)
                from_request.append((seen - sent) * 1000)
        ours.send(None)
        process.join(10)
        if tasks.get((PLAIN, None), [None])[0] is not watch or watch.done():
            raise RuntimeError("the SDK's watch was restarted: changes did not all come down one stream")
    finally:
        if process.is_alive():
            process.kill()
    return latencies, from_request


def made(response: httpx.Response) -> dict[str, Any]:
    """The object a setup request made (its failure raises)."""
    response.raise_for_status()
    return response.json()


def setup(http: httpx.Client) -> list[str]:
    """The agents, made through the API (so their ids are real ULIDs: bench.load's seeded ids
    are md5 hex, which the service does not take for ids, and a watch on one ends with
    `deleted` at its first change): PLAIN with two variants to switch between, EXPERIMENT
    running a 3-arm experiment. Returns PLAIN's two variant ids."""

    config = {"model_provider": "openai", "model_name": "gpt-4o", "system_prompt": "You are a helpful assistant."}
    for slug in (PLAIN, EXPERIMENT):
        assert made(http.post("/v1/agents", json={"name": slug, "config": config}))["slug"] == slug
    plain = [made(http.post(f"/v1/agents/{PLAIN}/variants", json={"variant_name": f"sdk-{n}"}))["id"] for n in range(2)]
    arms = [
        made(
            http.post(
                f"/v1/agents/{EXPERIMENT}/variants",
                json={"variant_name": f"arm-{n}", "overrides": {"prompt_version": f"arm-{n}"}},
            )
        )["id"]
        for n in range(2)
    ]
    created = made(
        http.post(
            f"/v1/agents/{EXPERIMENT}/experiments",
            json={
                "name": "sdk-bench",
                "arms": [
                    {"variant": "base", "weight": 1},
                    {"variant": arms[0], "weight": 1},
                    {"variant": arms[1], "weight": 1},
                ],
            },
        )
    )
    made(http.post(f"/v1/agents/{EXPERIMENT}/experiments/{created['id']}/start"))
    return plain


def main() -> None:
    async def prepare() -> str:
        url = await load.fresh_database("av_sdk")
        await load.make_keys(url)
        return url

    url = asyncio.run(prepare())
    with (
        load.Server(url) as a,
        load.Server(url) as b,
        httpx.Client(base_url=a.base, headers={"Authorization": f"Bearer {load.KEYS['admin']}"}) as admin,
        httpx.Client(base_url=b.base, headers={"Authorization": f"Bearer {load.KEYS['resolve']}"}) as http,
        AgentVariants(b.base, load.KEYS["resolve"]) as sync,
    ):
        variants = setup(admin)
        time.sleep(0.5)
        for agent in (PLAIN, EXPERIMENT):
            sync.resolve(agent)
        for subject in ("user-1", "user-2", "user-3", "user-4"):  # the SDK picks the arm the service picks
            served = http.get(f"/v1/agents/{EXPERIMENT}/resolved", params={"subject": subject}).json()
            local = sync.resolve(EXPERIMENT, subject)
            assert local.variant_id == served["variant_id"] and local.source == served["source"] == "experiment"
        runs = asyncio.run(per_call(sync, http, b.base))
        print({name: round(statistics.median(r), 3) for name, r in runs.items()}, flush=True)
        latencies, from_request = propagation(sync, a.base, variants)
    medians = {name: round(statistics.median(r), 3) for name, r in runs.items()}
    ordered, since_request = sorted(latencies), sorted(from_request)
    record = {
        "when": datetime.now(UTC).isoformat(),
        "machine": load.machine(),
        "calls_per_repeat": CALLS,
        "http_calls_per_repeat": HTTP_CALLS,
        "repeats": REPEATS,
        "target_us": TARGET_US,
        "median_us_per_call": medians,
        "runs_us_per_call": {name: [round(x, 3) for x in r] for name, r in runs.items()},
        "http_over_sdk": {
            f"{kind}_{case}": round(medians[f"http_{case}"] / medians[f"{kind}_{case}"], 1)
            for kind in ("sync", "async")
            for case in ("no_subject", "subject")
        },
        "propagation": {
            "rounds": ROUNDS,
            "poll_ms": POLL * 1000,
            "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 2),
            "max_ms": round(ordered[-1], 2),
            "min_ms": round(ordered[0], 2),
            "below_zero": sum(x < 0 for x in latencies),
            "from_request_p50_ms": round(statistics.median(since_request), 2),
            "from_request_p99_ms": round(since_request[int(len(since_request) * 0.99) - 1], 2),
            "from_request_max_ms": round(since_request[-1], 2),
            "latencies_ms": [round(x, 3) for x in latencies],
            "from_request_ms": [round(x, 3) for x in from_request],
        },
    }
    print(
        {k: v for k, v in record.items() if k not in ("runs_us_per_call", "propagation")},
        {k: v for k, v in record["propagation"].items() if not isinstance(v, list)},
        flush=True,
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "sdk.json").write_text(json.dumps(record, indent=2) + "\n")
    write_section()


def sdk_section() -> list[str]:
    """The SDK's resolve and propagation, as this script measured them (bench/results/sdk.json)."""
    path = ROOT / "bench" / "results" / "sdk.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    m, ratio, p = r["median_us_per_call"], r["http_over_sdk"], r["propagation"]

    def row(label: str, name: str, vs: str = "") -> str:
        return f"| {label} | {m[name]:.2f} | {vs} |"

    return [
        "## SDK",
        "",
        f"Run {r['when'][:16].replace('T', ' ')} UTC on {r['machine']}; `bench/sdk.py`. Medians over"
        f" {r['repeats']} repeats of {r['calls_per_repeat']:,} calls (HTTP: {r['http_calls_per_repeat']:,}),"
        " all cases in the same loop over a list of distinct subjects, taking turns within each repeat.",
        f"{PLAIN} resolves plainly; {EXPERIMENT} runs a 3-arm experiment, so a subject picks an arm (SHA-256 of"
        " salt and subject, computed locally).",
        "",
        "| case | us per call | HTTP / this |",
        "|---|---|---|",
        row("`AgentVariants.resolve(agent)` (sync)", "sync_no_subject", f"{ratio['sync_no_subject']:,.0f}x"),
        row("`AgentVariants.resolve(agent, subject)` (sync)", "sync_subject", f"{ratio['sync_subject']:,.0f}x"),
        row("`await AsyncAgentVariants.resolve(agent)`", "async_no_subject", f"{ratio['async_no_subject']:,.0f}x"),
        row("`await AsyncAgentVariants.resolve(agent, subject)`", "async_subject", f"{ratio['async_subject']:,.0f}x"),
        row("baseline: `GET .../resolved`, kept-alive `httpx.Client`, server B", "http_no_subject"),
        row("baseline: `GET .../resolved?subject=`, same", "http_subject"),
        row("harness: dict lookup + attribute access", "harness_dict_attr"),
        row("harness: `await` of a coroutine doing that", "harness_await_dict_attr"),
        "",
        f'Target: under {r["target_us"]:g} us per call, with and without a subject. "HTTP / this" is how many'
        " times faster than the request it replaces (against the HTTP case with or without a subject to match).",
        "",
        f"Propagation from an activation's response (through server A, from another process) until"
        f" `resolve()` of a sync client watching server B returns the new variant (polled every"
        f" {p['poll_ms']:g} ms), over {p['rounds']} changes: p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms,"
        f" max {p['max_ms']:.2f} ms (min {p['min_ms']:.2f} ms; {p['below_zero']} below zero, where the SDK had the"
        " change before the writing process had read its response). From the moment the activation's"
        f" request went out instead: p50 {p['from_request_p50_ms']:.2f} ms, p99 {p['from_request_p99_ms']:.2f} ms,"
        f" max {p['from_request_max_ms']:.2f} ms.",
        "",
    ]


def write_section() -> None:
    """Put this bench's section at the end of bench/RESULTS.md, replacing an earlier one."""
    load.replace_section("## SDK", sdk_section())


if __name__ == "__main__":
    main()
