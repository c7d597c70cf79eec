"""`make bench`, part 2: `/resolved` under load with wrk, against baselines, and how fast a
change made on one process reaches another. Writes bench/RESULTS.md.

The service runs as `agent-variants serve` does by default (one uvicorn worker, uvloop and
httptools, LOG_LEVEL info with its access log, the default cache), with only its rate limits
raised so they never bind (`UNLIMITED`, reported). Every /v1 case sends a `resolve` API key,
as agents do. wrk (1 thread, 32 connections) drives each case over loopback, on the embedded
PostgreSQL seeded with 1, 10,000 and 100,000 agents, each with one variant active in production:
  (a) cached resolve of a random agent of N,  (a') the same with `?subject=` (a running
  experiment on one agent), (b) uncached resolve (RESOLVE_CACHE_SIZE=0).
The baselines are bare tools, each in a process of its own under the same server
(`bench/baselines`, no access log): (c) a FastAPI app and (e) a raw ASGI callable returning
the bytes of a resolved config; (f) a raw ASGI callable running the one resolve query on an
asyncpg pool; (d) a naive two-ORM-query FastAPI route.
Then cached resolve in a non-default environment: `staging`, with a `resolve` key bound to it
and with `?environment=`, against production, on one server in turns (`python -m bench.load
environments` runs only this case and replaces its section of RESULTS.md).
Any response of any case that is not a 200 (wrk's non-2xx count, socket errors) fails the
bench, after the report is written. BENCH_BEFORE=<checkout> adds the cached case of that
checkout's code to the headline table (`git worktree add /tmp/before <commit>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.api import embedded, migrate
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, PRODUCTION_ENVIRONMENT_SLUG

ROOT = Path(__file__).resolve().parents[1]
DURATION = os.environ.get("BENCH_DURATION", "8s")
COUNTS = (1, 10_000, 100_000)
PROPAGATION_ROUNDS = 200
AUTH_ROUNDS = int(os.environ.get("AUTH_ROUNDS", "5"))
UNLIMITED = '{"resolve": {"per_second": 1e9, "burst": 1000000000}, "admin": {"per_second": 1e9, "burst": 1000000000}}'
HEADLINE_ROUNDS = int(os.environ.get("HEADLINE_ROUNDS", "3"))
# Cases whose responses were not all 200: the bench fails once the report is written.
FAILURES: list[str] = []
# Set by main(): the secrets of a `resolve` key (what wrk sends) and an admin key.
KEYS: dict[str, str] = {}


def quiet_access_log(app: object) -> None:
    """An in-process app keeps its access log (a default: its cost is part of what these
    benches measure) but writes the lines nowhere, instead of flooding the bench's output."""
    access_log = getattr(getattr(app, "front", None), "access_log", None)
    if access_log is not None:
        access_log.stream = open(os.devnull, "w")  # noqa: SIM115 - for the process's life


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
        return shutil.which("wrk") or sys.exit("wrk did not install")
    sys.exit("wrk is needed: apt-get install wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def seed(url: str, count: int) -> None:
    """Agents bench-1..bench-count, each with one active variant (adds only what is missing)."""
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        have = await conn.scalar(text("SELECT count(*) FROM agents"))
        await conn.execute(
            text(
                "INSERT INTO agents (id, slug, name, model_provider, model_name, system_prompt, user_prompt_template,"
                " prompt_version, temperature, max_tokens, context_window, input_token_limit, token_budget,"
                " timeout_seconds, max_retries)"
                # Ids must be well-formed ULIDs (a first character 0-7), or the service reads them as unknown.
                " SELECT 'agt_0' || upper(substr(md5('a' || n), 1, 25)), 'bench-' || n, 'Bench ' || n,"
                "        'openai', 'gpt-4o', 'You are a helpful assistant for customer ' || n, '{input}', 'v1',"
                "        0.7, 1024, 128000, 0, 0, 60, 2"
                " FROM generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS n"
            ),
            {"start": have + 1, "stop": count},
        )
        await conn.execute(
            text(
                "INSERT INTO variants (id, agent_id, slug, variant_name, temperature, system_prompt)"
                " SELECT 'var_0' || upper(substr(md5('v' || n), 1, 25)),"
                "        'agt_0' || upper(substr(md5('a' || n), 1, 25)),"
                "        'concise', 'Concise', 0.2, 'Answer in two sentences.'"
                " FROM generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS n"
            ),
            {"start": have + 1, "stop": count},
        )
        # Active in production (contract 1.1: an activation is per environment).
        await conn.execute(
            text(
                "INSERT INTO activations (agent_id, environment_id, variant_id, activated_at)"
                " SELECT 'agt_0' || upper(substr(md5('a' || n), 1, 25)), :production,"
                "        'var_0' || upper(substr(md5('v' || n), 1, 25)), now()"
                " FROM generate_series(CAST(:start AS integer), CAST(:stop AS integer)) AS n"
            ),
            {"start": have + 1, "stop": count, "production": PRODUCTION_ENVIRONMENT_ID},
        )
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


class Server:
    def __init__(self, url: str, *, cwd: Path | None = None, ready: str = "/readyz", **env: str) -> None:
        """A server on `url`'s database; `cwd`, another checkout whose code it runs
        (`bench.compare`), else this one; `ready`, the path that answers 200 once it serves."""
        self.ready = ready
        self.port = free_port()
        # The keys exist before any server starts, so none makes (or writes) a first admin key.
        # The service's defaults but one: wrk sends more with one key than the default limit
        # (20,000/s for a resolve key), so the limiter runs on every request but never binds.
        environment = {
            **os.environ,
            "DATABASE_URL": url,
            "DATA_DIR": str(ROOT / ".data" / "bench"),
            "RATE_LIMITS": UNLIMITED,
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.api.cli", "serve", "--no-migrate", "--port", str(self.port)],
            env=environment,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a"),  # noqa: SIM115
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}{self.ready}", timeout=2).status_code == 200:
                    time.sleep(0.5)  # let the listener connect, so the cache is trusted
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *_: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def wrk(
    wrk_bin: str,
    base: str,
    path: str,
    *,
    count: int | None = None,
    duration: str = DURATION,
    sweep: bool = False,
    case: str | None = None,
    key: str | None = None,
) -> dict[str, float]:
    """Run wrk on `base + path`; with `count`, the first `%d` in the path is a random
    1..count per request, or with `sweep` 1, 2, ... count in turn (to warm a cache with every
    agent), and a second `%d` a random subject number. Every request sends `key`, by default
    the `resolve` key (KEYS["resolve"], once made). A `case` with any response other than
    a 200 (or a socket error) is noted in FAILURES."""
    args = [wrk_bin, "-t1", "-c32", f"-d{duration}", "--latency"]
    key = key if key is not None else KEYS.get("resolve")
    if key is not None:
        args += ["-H", f"Authorization: Bearer {key}"]
    script = None
    if count is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        pick = f"n = n % {count} + 1" if sweep else f"n = math.random(1, {count})"
        values = "n, math.random(1, 1000000000)" if path.count("%d") == 2 else "n"
        script.write(
            "math.randomseed(42)\nn = 0\n"
            f'request = function() {pick}; return wrk.format("GET", string.format("{path}", {values})) end\n'
        )
        script.close()
        args += ["-s", script.name]
    args.append(base + (path if count is None else "/"))
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    if script is not None:
        os.unlink(script.name)

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(map(int, sockets.groups()))) if sockets else 0.0,
    }
    if case is not None and (result["non_2xx"] or result["socket_errors"]):
        FAILURES.append(f"{case}: {result['non_2xx']:.0f} non-2xx, {result['socket_errors']:.0f} socket errors")
    return result


async def propagation(url: str) -> dict[str, float]:
    """From an activation's 200 on process A until process B serves it, in ms."""
    with Server(url) as a, Server(url) as b:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEYS['admin']}"}) as client:
            agent = "bench-1"
            variants = []
            for name in ("p-one", "p-two"):
                response = await client.post(f"{a.base}/v1/agents/{agent}/variants", json={"variant_name": name})
                variants.append(response.json()["id"])
            latencies, stale_on_a = [], 0
            for i in range(PROPAGATION_ROUNDS):
                target = variants[i % 2]
                await client.get(f"{b.base}/v1/agents/{agent}/resolved")  # B has the old one cached
                response = await client.post(f"{a.base}/v1/agents/{agent}/variants/{target}/activate")
                start = time.perf_counter()
                if (await client.get(f"{a.base}/v1/agents/{agent}/resolved")).json()["variant_id"] != target:
                    stale_on_a += 1
                while (await client.get(f"{b.base}/v1/agents/{agent}/resolved")).json()["variant_id"] != target:
                    pass
                latencies.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
            for variant in variants:  # leave bench-1 as seeded
                await client.post(f"{a.base}/v1/agents/{agent}/variants/concise/activate")
                await client.delete(f"{a.base}/v1/agents/{agent}/variants/{variant}")
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "max": latencies[-1],
        "stale_reads_on_writer": stale_on_a,
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "?"
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {int(memory) // 1024 // 1024} GiB, Linux {platform.release()},"
        f" Python {platform.python_version()}"
    )


class Baseline:
    """A baseline of `bench/baselines` in a process of its own: uvicorn, one worker, uvloop
    and httptools, no access log (the ceiling of what the server gives a bare tool)."""

    def __init__(self, module: str, *, url: str | None = None, response: tuple[Path, Path] | None = None) -> None:
        """`response`: the files of the body and the headers the constant baselines return."""
        self.port = free_port()
        env = {**os.environ, **({"DATABASE_URL": url} if url else {})}
        if response is not None:
            env |= {"BENCH_BODY_FILE": str(response[0]), "BENCH_HEADERS_FILE": str(response[1])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"bench.baselines.{module}:app", "--port", str(self.port)]
            + ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
            # As `serve` runs by default: no proxy headers (uvicorn's default wraps the app in a layer for them).
            + ["--no-proxy-headers"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ.get("BENCH_SERVER_LOG", os.devnull), "a"),  # noqa: SIM115
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Baseline:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/v1/agents/bench-1/resolved", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("baseline did not become ready")

    def __exit__(self, *_: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


RESOLVE = "/v1/agents/bench-%d/resolved"
# The non-default environment of `environment_table`, and the name of the key bound to it in KEYS.
STAGING = "staging"
SUBJECT = "/v1/agents/bench-%d/resolved?subject=user-%d"


async def start_experiment(base: str) -> None:
    """A running 2-arm experiment on bench-1 (what `?subject=` splits), made once."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEYS['admin']}"}) as client:
        running = (await client.get("/v1/agents/bench-1/experiments")).json()["data"]
        if any(experiment["status"] == "running" for experiment in running):
            return
        variant = await client.post("/v1/agents/bench-1/variants", json={"variant_name": "Split arm"})
        arms = [{"variant": "live", "weight": 1}, {"variant": variant.json()["id"], "weight": 1}]
        made = await client.post("/v1/agents/bench-1/experiments", json={"name": "bench split", "arms": arms})
        started = await client.post(f"/v1/agents/bench-1/experiments/{made.json()['id']}/start")
        assert started.status_code == 200, started.text


async def main() -> None:
    wrk_bin = ensure_wrk()
    url = await fresh_database("av_load")
    await make_keys(url)

    rows: dict[int, dict[str, dict[str, float]]] = {}
    for count in COUNTS:
        await seed(url, count)
        results: dict[str, dict[str, float]] = {}
        with Server(url) as s:
            # Warm the cache with every agent first (misses run a few thousand a second).
            wrk(wrk_bin, s.base, RESOLVE, count=count, sweep=True, duration=f"{max(4, math.ceil(count / 2500))}s")
            results["a_cached"] = wrk(wrk_bin, s.base, RESOLVE, count=count, case=f"a_cached at {count:,}")
            if count == 1:
                await start_experiment(s.base)
                wrk(wrk_bin, s.base, SUBJECT, count=1, duration="2s")  # warm: the experiment's arms
                results["a_subject"] = wrk(wrk_bin, s.base, SUBJECT, count=1, case="a_subject")
            if count == COUNTS[-1]:
                scale = scale_in_turns(wrk_bin, s.base, count)
        with Server(url, RESOLVE_CACHE_SIZE="0") as s:
            results["b_uncached"] = wrk(wrk_bin, s.base, RESOLVE, count=count, case=f"b_uncached at {count:,}")
        with Baseline("query_raw", url=url) as f:
            results["f_raw_query"] = wrk(wrk_bin, f.base, RESOLVE, count=count, case=f"f_raw_query at {count:,}")
        with Baseline("naive_orm", url=url) as d:
            results["d_naive_orm"] = wrk(wrk_bin, d.base, RESOLVE, count=count, case=f"d_naive_orm at {count:,}")
        rows[count] = results
        print(count, {k: round(v["rps"]) for k, v in results.items()}, flush=True)
    headline = headline_table(wrk_bin, url)
    print("headline", {k: round(statistics.median(v)) for k, v in headline["runs"].items()}, flush=True)
    await add_environment(url, STAGING)
    environments = environment_table(wrk_bin, url, COUNTS[-1])
    print("environments", {k: round(statistics.median(v)) for k, v in environments["runs"].items()}, flush=True)
    auth = auth_cost(wrk_bin, url)
    print("auth", auth, flush=True)
    spread = await propagation(url)
    print("propagation", spread, flush=True)
    write_report(rows, headline, spread, auth, scale, environments)
    if FAILURES:
        sys.exit("responses other than 200: " + "; ".join(FAILURES))


def scale_in_turns(wrk_bin: str, base: str, count: int) -> dict[str, list[float]]:
    """Cached resolve of one agent, and of a random one of `count`, on one warm server, in
    turns (HEADLINE_ROUNDS runs of 5 s each): what the number of agents costs, without the
    drift between the per-count servers above."""
    runs: dict[str, list[float]] = {"one": [], "all": []}
    for _ in range(HEADLINE_ROUNDS):
        runs["one"].append(wrk(wrk_bin, base, RESOLVE, count=1, duration="5s", case="scale, 1 agent")["rps"])
        runs["all"].append(wrk(wrk_bin, base, RESOLVE, count=count, duration="5s", case="scale, all")["rps"])
    return runs


def headline_table(wrk_bin: str, url: str) -> dict:
    """Cached resolve of one agent by the service at its defaults (and by BENCH_BEFORE's
    checkout, when given) against the bare FastAPI app and the raw ASGI callable returning
    the same bytes, all up at once and driven in turns, HEADLINE_ROUNDS times, so the
    machine's drift hits every one alike."""
    before = os.environ.get("BENCH_BEFORE")
    with Server(url) as service, tempfile.TemporaryDirectory() as files:
        served = httpx.get(
            f"{service.base}/v1/agents/bench-1/resolved", headers={"Authorization": f"Bearer {KEYS['resolve']}"}
        )
        assert served.status_code == 200, served.text
        # The baselines send this response byte for byte: its body and headers (uvicorn adds
        # `date` and `server` to every response, the service's included).
        body, headers = Path(files) / "body", Path(files) / "headers.json"
        body.write_bytes(served.content)
        headers.write_text(json.dumps([[k, v] for k, v in served.headers.items() if k not in ("date", "server")]))
        targets = {"service": service.base}
        with (
            Baseline("constant_fastapi", response=(body, headers)) as bare,
            Baseline("constant_raw", response=(body, headers)) as raw,
            Server(url, ACCESS_LOG="false") as quiet,
            Server(url, cwd=Path(before), ready="/healthz") if before else contextlib.nullcontext() as old,
        ):
            targets |= {"bare_fastapi": bare.base, "raw_asgi": raw.base, "service_without_access_log": quiet.base}
            if old is not None:
                targets["before"] = old.base
            runs: dict[str, list[float]] = {name: [] for name in targets}
            p99: dict[str, list[float]] = {name: [] for name in targets}
            for base in targets.values():
                wrk(wrk_bin, base, RESOLVE, count=1, duration="2s")  # warm
            for _ in range(HEADLINE_ROUNDS):
                for name, base in targets.items():
                    result = wrk(wrk_bin, base, RESOLVE, count=1, duration="5s", case=f"headline {name}")
                    runs[name].append(result["rps"])
                    p99[name].append(result["p99"])
    return {
        "runs": runs,
        "p99": p99,
        "bytes": len(served.content),
        "headers": len(served.headers),
        "before": before and revision_of(Path(before)),
    }


async def add_environment(url: str, slug: str) -> None:
    """The environment `slug`, a `resolve` key bound to it (KEYS[slug]), and every agent's
    variant active in production active there too (activations rows, as the seed's)."""
    from services.api.db import Database
    from services.api.environments import service as environments_service
    from services.api.environments.schemas import EnvironmentCreate
    from services.api.keys import service
    from services.api.keys.schemas import KeyCreate

    db = Database.from_url(url)
    try:
        made = await environments_service.create_environment(db, EnvironmentCreate(name=slug.title(), slug=slug))
        bound = KeyCreate(name=f"bench-agent-{slug}", scope="resolve", environment=slug)
        KEYS[slug] = (await service.create_key(db, bound))["secret"]
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO activations (agent_id, environment_id, variant_id, activated_at)"
                    " SELECT agent_id, :environment, variant_id, now() FROM activations"
                    " WHERE environment_id = :production"
                ),
                {"environment": made["id"], "production": PRODUCTION_ENVIRONMENT_ID},
            )
            await conn.execute(text("ANALYZE activations"))
    finally:
        await db.dispose()


def environment_table(wrk_bin: str, url: str, agents: int) -> dict:
    """Cached resolve of bench-1 (of `agents` seeded) on one server at its defaults: in
    production (the unbound `resolve` key, no `?environment=`), in STAGING with a key bound
    to it (no `?environment=`: the key's environment), and in STAGING with the unbound key
    and `?environment=`. Each answer is checked once (its environment, a variant), then the
    cases run in turns, HEADLINE_ROUNDS runs of 5 s each, so the machine's drift hits all
    alike; one server, so they share its process, cache and key ring."""
    cases = {
        "production": (RESOLVE, KEYS["resolve"], PRODUCTION_ENVIRONMENT_SLUG),
        "bound_key": (RESOLVE, KEYS[STAGING], STAGING),
        "query_parameter": (f"{RESOLVE}?environment={STAGING}", KEYS["resolve"], STAGING),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    p50: dict[str, list[float]] = {name: [] for name in cases}
    p99: dict[str, list[float]] = {name: [] for name in cases}
    load_before = os.getloadavg()[0]  # others' work on a shared machine shows here
    with Server(url) as service:
        for name, (path, key, environment) in cases.items():
            answer = httpx.get(f"{service.base}{path % 1}", headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, (name, answer.status_code, answer.text)
            body = answer.json()
            assert body["environment"] == environment and body["variant_id"], (name, body)
            wrk(wrk_bin, service.base, path, count=1, duration="2s", key=key)  # warm
        for _ in range(HEADLINE_ROUNDS):
            for name, (path, key, _) in cases.items():
                result = wrk(wrk_bin, service.base, path, count=1, duration="5s", key=key, case=f"environment {name}")
                runs[name].append(result["rps"])
                p50[name].append(result["p50"])
                p99[name].append(result["p99"])
    return {
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        "machine": machine(),
        "agents": agents,
        "load_average": (round(load_before, 1), round(os.getloadavg()[0], 1)),
        "runs": runs,
        "p50": p50,
        "p99": p99,
    }


def environment_section(environments: dict) -> list[str]:
    """The environment case's section of RESULTS.md."""
    median = {name: statistics.median(values) for name, values in environments["runs"].items()}
    production = median["production"]
    before, after = environments["load_average"]
    count = environments["agents"]
    agents = f"{count:,} agent" + ("s" if count != 1 else "")
    labels = {
        "production": "production: unbound `resolve` key, no `?environment=`",
        "bound_key": f"{STAGING}: `resolve` key bound to {STAGING}, no `?environment=`",
        "query_parameter": f"{STAGING}: unbound `resolve` key, `?environment={STAGING}`",
    }
    runs = "; ".join(
        f"{name}: {', '.join(f'{r:,.0f}' for r in values)}" for name, values in environments["runs"].items()
    )
    return [
        "## Resolving in a non-default environment",
        "",
        f"Run {environments['when']} UTC on {environments['machine']} (1-minute load average {before} before,"
        f" {after} after). Cached resolve of bench-1 ({agents} seeded; every agent's variant active in production"
        f" and in {STAGING}) on one server at its defaults (rate limits that never bind), every case on the same"
        f" server, in turns: medians of {len(environments['runs']['production'])} runs of 5 s each (wrk 1 thread,"
        " 32 connections). Compare the rows of this table only: the machine is shared and its figures drift"
        " between runs.",
        "",
        "| case | req/s | ratio to production | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *(
            f"| {labels[name]} | {median[name]:,.0f} | {median[name] / production:.2f} |"
            f" {statistics.median(environments['p50'][name]):.2f} |"
            f" {statistics.median(environments['p99'][name]):.2f} |"
            for name in environments["runs"]
        ),
        "",
        f"Runs: {runs}.",
        "",
    ]


def revision_of(checkout: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), "log", "-1", "--format=%h %cs"], capture_output=True, text=True, check=False
    ).stdout.strip()


async def fresh_database(name: str) -> str:
    """An empty, migrated database `name` on the bench's embedded server (made anew)."""
    server = embedded.start(ROOT / ".data" / "bench-postgres")
    admin = create_async_engine(embedded.with_database(server.get_uri(), "postgres"), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    url = embedded.with_database(server.get_uri(), name)
    await migrate.upgrade(url)
    return url


async def make_keys(url: str) -> None:
    from services.api.db import Database
    from services.api.keys import service
    from services.api.keys.schemas import KeyCreate

    db = Database.from_url(url)
    try:
        for scope, name in (("resolve", "bench-agent"), ("admin", "bench-admin")):
            KEYS[scope] = (await service.create_key(db, KeyCreate(name=name, scope=scope)))["secret"]
    finally:
        await db.dispose()


def auth_cost(wrk_bin: str, url: str) -> dict[str, float]:
    """Cached resolve of 1 agent with the key checked and with AUTH_DISABLED, alternating
    AUTH_ROUNDS times between two servers up at once, so drift hits both alike."""
    resolve = "/v1/agents/bench-%d/resolved"
    on: list[float] = []
    off: list[float] = []
    with Server(url) as with_auth, Server(url, AUTH_DISABLED="true") as without:
        for s in (with_auth, without):
            wrk(wrk_bin, s.base, resolve, count=1, duration="2s")  # warm
        for _ in range(AUTH_ROUNDS):
            on.append(wrk(wrk_bin, with_auth.base, resolve, count=1, case="auth on")["rps"])
            off.append(wrk(wrk_bin, without.base, resolve, count=1, case="auth off")["rps"])
    return {"on": statistics.median(on), "off": statistics.median(off), "runs_on": on, "runs_off": off}


def write_report(rows, headline, spread, auth, scale, environments) -> None:
    median = {name: statistics.median(runs) for name, runs in headline["runs"].items()}
    bare, raw = median["bare_fastapi"], median["raw_asgi"]
    configurations = [
        ("after", "`agent-variants serve` defaults, resolve key", "service"),
        ("after", "the same with `ACCESS_LOG=false`", "service_without_access_log"),
    ]
    if "before" in median:
        configurations.insert(0, ("before", f"the same, before ({headline['before']}; uvicorn's access log)", "before"))
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; wrk 1 thread, 32 connections,"
        f" {DURATION} per case, one uvicorn worker (uvloop, httptools), load generator on the same machine."
        " `make bench` makes it.",
        f"The service runs with its defaults (LOG_LEVEL info, its access log on, the default cache) but for rate"
        f" limits raised so they never bind: `RATE_LIMITS={UNLIMITED}`. Every /v1 request sends a `resolve` key.",
        "Baselines are bare tools in processes of their own under the same server, without an access log"
        " (`bench/baselines`). Any response other than a 200 fails the bench.",
        "",
        f"## Cached resolve against the bare tools (the same response: a {headline['bytes']:,}-byte body and"
        f" {headline['headers']} headers; medians of"
        f" {HEADLINE_ROUNDS} runs of 5 s, all servers up at once, in turns)",
        "",
        "| configuration | cached /resolved req/s | bare FastAPI app | raw ASGI callable | ratio to bare |"
        " ratio to raw (target >= 0.85) | p99 ms (target < 5) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, label, name in configurations:
        lines.append(
            f"| {label} | {median[name]:,.0f} | {bare:,.0f} | {raw:,.0f} | {median[name] / bare:.2f} |"
            f" {median[name] / raw:.2f} | {statistics.median(headline['p99'][name]):.2f} |"
        )
    runs = "; ".join(f"{name}: {', '.join(f'{r:,.0f}' for r in values)}" for name, values in headline["runs"].items())
    lines += [
        "",
        f"Runs: {runs}.",
        "",
        "## By number of agents",
        "",
        "| agents | case | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for count, results in rows.items():
        for case, r in results.items():
            lines.append(
                f"| {count:,} | {case} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non_2xx']:.0f} |"
                f" {r['socket_errors']:.0f} |"
            )
    lines += ["", "Ratios (throughput, same run):", ""]
    for count, results in rows.items():
        a, b, d, f = (results[k]["rps"] for k in ("a_cached", "b_uncached", "d_naive_orm", "f_raw_query"))
        lines.append(
            f"- {count:,} agents: uncached/raw query b/f = {b / f:.2f} (target >= 0.6),"
            f" uncached/naive ORM b/d = {b / d:.2f} (target >= 4), cached p99 {results['a_cached']['p99']:.2f} ms"
            " (target < 5)"
        )
    first = rows[COUNTS[0]]
    last = rows[COUNTS[-1]]["a_cached"]["rps"]
    lines += [
        f"- `?subject=` (a running 2-arm experiment) / plain cached resolve, 1 agent:"
        f" {first['a_subject']['rps'] / first['a_cached']['rps']:.2f} (target >= 0.7)",
        f"- cached resolve at {COUNTS[-1]:,} agents vs 1 (the rows above, separate servers):"
        f" {last / first['a_cached']['rps']:.2f}; on one server, in turns ({HEADLINE_ROUNDS} runs each): a random"
        f" agent of {COUNTS[-1]:,} {statistics.median(scale['all']):,.0f} req/s, always the same one"
        f" {statistics.median(scale['one']):,.0f}, ratio"
        f" {statistics.median(scale['all']) / statistics.median(scale['one']):.2f} (target within 10%)",
        "",
        f"API keys: cached resolve of 1 agent with its `resolve` key checked, against the same with"
        f" AUTH_DISABLED, alternating {AUTH_ROUNDS} runs each between two servers: median {auth['on']:,.0f} vs"
        f" {auth['off']:,.0f} req/s, with auth = {auth['on'] / auth['off']:.2f} of without."
        f" Runs with auth: {', '.join(f'{r:,.0f}' for r in auth['runs_on'])};"
        f" without: {', '.join(f'{r:,.0f}' for r in auth['runs_off'])}.",
        "",
        f"Propagation from an activation's 200 on process A to process B serving it, over {PROPAGATION_ROUNDS}"
        f" activations: p50 {spread['p50']:.2f} ms, p99 {spread['p99']:.2f} ms, max {spread['max']:.2f} ms"
        f" (target p99 < 100 ms); stale reads on A right after its 200: {spread['stale_reads_on_writer']}.",
        "",
        "The in-process resolver (no HTTP) is measured by `bench/run.py`: see bench/results/resolve.json.",
        "",
        *(["**Failed**: " + "; ".join(FAILURES), ""] if FAILURES else []),
        *environment_section(environments),
        *experiments_section(),
        *watch_section(),
        *kept_sections(ROOT / "bench" / "RESULTS.md", OUTSIDE_MAKE_BENCH),
    ]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines))


# Sections written by benches that `make bench` does not run (bench/metrics.py, bench/compare.py):
# rewriting the file keeps them as they are (each says when it was run).
OUTSIDE_MAKE_BENCH = ("## Metrics on the hot path", "## Before and after")


def kept_sections(path: Path, headings: tuple[str, ...]) -> list[str]:
    """The lines of `path`'s sections under `headings`, as they are, each ending with a blank line."""
    if not path.exists():
        return []
    text = path.read_text().splitlines()
    kept: list[str] = []
    for heading in headings:
        if heading in text:
            start = text.index(heading)
            end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
            section = text[start:end]
            while section and not section[-1]:
                section.pop()
            kept += [*section, ""]
    return kept


def watch_section() -> list[str]:
    """Open watch streams, as `bench/watch.py` measured them (its own wording)."""
    import json

    from bench import watch  # here: bench.watch imports this module

    path = ROOT / "bench" / "results" / "watch.json"
    return watch.section(json.loads(path.read_text())) if path.exists() else []


def experiments_section() -> list[str]:
    """Outcome ingestion and experiment results, as `bench/run.py` measured them."""
    import json

    path = ROOT / "bench" / "results" / "resolve.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    ingestion, results = record.get("outcome_ingestion"), record.get("experiment_results")
    if not ingestion or not results:
        return []
    return [
        "## Experiments",
        "",
        f"- Outcome ingestion through `POST /outcomes` (in process, one request at a time, batches of"
        f" {ingestion['batch_size']:,}): median {ingestion['median_outcomes_per_second']:,} outcomes/s"
        " (target >= 20,000).",
        f"- `GET .../experiments/{{id}}/results` over {results['outcomes']:,} outcomes of one experiment"
        f" (two arms, percentiles from their sketches): median {results['median_ms']:,} ms (target < 100).",
        *(
            [
                f"- The same over two arms of {results['exact_arm_outcomes']:,} outcomes each (exact percentiles,"
                f" the slowest case): median {results['exact_arm_median_ms']:,} ms (target < 100)."
            ]
            if "exact_arm_median_ms" in results
            else []
        ),
        "",
    ]


def replace_section(heading: str, lines: list[str]) -> None:
    """Put a `## heading` section at the end of bench/RESULTS.md, replacing an earlier one
    (the benches that run after bench.load add theirs this way)."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text().splitlines() if path.exists() else ["# Benchmark results", ""]
    if heading in text:
        start = text.index(heading)
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
        text[start:end] = []
    while text and not text[-1]:
        text.pop()
    path.write_text("\n".join([*text, "", *lines]))


async def environments_only() -> None:
    """`python -m bench.load environments`: only the environment case, on a fresh database
    seeded with one agent; replaces its section of bench/RESULTS.md, and fails as the whole
    bench does on any response other than a 200."""
    wrk_bin = ensure_wrk()
    url = await fresh_database("av_load_environments")
    await make_keys(url)
    await seed(url, 1)
    await add_environment(url, STAGING)
    environments = environment_table(wrk_bin, url, 1)
    print("environments", {k: round(statistics.median(v)) for k, v in environments["runs"].items()}, flush=True)
    replace_section(
        "## Resolving in a non-default environment",
        [*environment_section(environments), *(["**Failed**: " + "; ".join(FAILURES), ""] if FAILURES else [])],
    )
    if FAILURES:
        sys.exit("responses other than 200: " + "; ".join(FAILURES))


if __name__ == "__main__":
    asyncio.run(environments_only() if sys.argv[1:] == ["environments"] else main())
