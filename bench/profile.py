"""Where a cached resolution spends its time, layer by layer, against the raw ASGI callable
sending the same response: `python -m bench.profile` (not part of `make bench`; about a minute).

The service (its defaults, a `resolve` key, one agent, rate limits that never bind) and
`bench/baselines/constant_raw.py` run under the same server, each driven by wrk while py-spy
samples it (`--nonblocking`, 400 Hz, active samples only). Each sample is charged to the
innermost frame that belongs to a layer below (`LAYERS`, first match from the innermost
frame outwards), so a layer's share includes the C functions it calls (hashing, clocks, dict
work). The table goes to stdout and bench/results/profile.json; bench/README.md quotes it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench import load

SECONDS = 8
# (layer, what a frame's "function (file)" contains), innermost first: the first match wins.
LAYERS = [
    ("key check (AccessGate.admit: key ring, rate limit)", ("gate.py", "keyring.py", "rate_limit.py")),
    ("cache lookup", ("cache.py",)),
    ("subject assignment", ("assignment.py",)),
    ("access log (note, format, write)", ("access_log.py",)),
    ("fast path itself (parsing, headers, sends)", ("fast_path.py",)),
    ("the app's callables (constant_raw)", ("constant_raw.py",)),
    ("uvicorn: response writing (send)", ("RequestResponseCycle.send",)),
    ("uvicorn: request parsing", ("data_received", "on_headers_complete", "on_url", "on_header", "on_message")),
    ("uvicorn: task per request", ("_start_asgi_task", "run_asgi", "on_response_complete")),
]
OTHER = "event loop and the rest (uvloop, GC, threads)"


def layer_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def shares(raw_file: Path) -> tuple[dict[str, float], int]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for text in raw_file.read_text().splitlines():
        if not text.strip():
            continue
        stack, count = text.rsplit(" ", 1)
        counts[layer_of(stack.split(";"))] += int(count)
        total += int(count)
    return {name: counts[name] / total for name in [*(n for n, _ in LAYERS), OTHER]}, total


def profiled(wrk_bin: str, pid: int, base: str, out: Path) -> dict[str, float]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    recorder = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-d", str(SECONDS), "-r", "400", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result = load.wrk(wrk_bin, base, load.RESOLVE, count=1, duration=f"{SECONDS}s", case=f"profile {base}")
    recorder.wait()
    return result


async def main() -> None:
    wrk_bin = load.ensure_wrk()
    url = await load.fresh_database("av_profile")
    await load.make_keys(url)
    await load.seed(url, 1)
    report: dict[str, dict] = {}
    with load.Server(url) as service, tempfile.TemporaryDirectory() as files:
        key = {"Authorization": f"Bearer {load.KEYS['resolve']}"}
        served = httpx.get(f"{service.base}{load.RESOLVE % 1}", headers=key)
        body, headers = Path(files) / "body", Path(files) / "headers.json"
        body.write_bytes(served.content)
        headers.write_text(json.dumps([[k, v] for k, v in served.headers.items() if k not in ("date", "server")]))
        with load.Baseline("constant_raw", response=(body, headers)) as raw:
            targets = (("service", service.process.pid, service.base), ("raw_asgi", raw.process.pid, raw.base))
            for name, pid, base in targets:
                load.wrk(wrk_bin, base, load.RESOLVE, count=1, duration="2s")  # warm
                out = Path(files) / f"{name}.txt"
                result = profiled(wrk_bin, pid, base, out)
                layers, samples = shares(out)
                report[name] = {"rps": result["rps"], "samples": samples, "layers": layers}
    if load.FAILURES:
        sys.exit("responses other than 200: " + "; ".join(load.FAILURES))
    service_rps, raw_rps = report["service"]["rps"], report["raw_asgi"]["rps"]
    print(f"| layer | service, % of its CPU ({service_rps:,.0f} req/s) | raw ASGI, % ({raw_rps:,.0f} req/s) |")
    print("|---|---|---|")
    ours, theirs = report["service"]["layers"], report["raw_asgi"]["layers"]
    for name in ours:
        print(f"| {name} | {100 * ours[name]:.1f} | {100 * theirs[name]:.1f} |")
    (load.ROOT / "bench" / "results" / "profile.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
