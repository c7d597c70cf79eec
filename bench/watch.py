"""`make bench`, part 3: what open watch streams cost a server, and how fast one change
reaches all of them. Writes bench/results/watch.json and the "Watch streams" section of
bench/RESULTS.md (bench/load.py, which rewrites that file, puts the section back from the
JSON).

One `agent-variants serve` process (one uvicorn worker, the default settings but for rate
limits that never bind) on the embedded PostgreSQL. Reader processes open WATCHERS streams
of `GET /v1/agents/bench-1/bundle/watch` between them, over raw sockets (an asyncio
protocol on uvloop, a few lines of parsing), so reading costs little next to serving. The
server's resident memory is read before and after they open. Then ROUNDS activations, each
from this process once every stream has the previous one: for every stream, the delay from
the activation's 200 (read here) until that stream has read the whole new `bundle` event
(stamped as its bytes arrive, in the reader). The processes share CLOCK_MONOTONIC
(`time.monotonic_ns`, system-wide on Linux), so the delays need no clock sync. A stream
may have the change a little before the activating client reads its 200: the server
wakes the streams as the change commits, and the delay is then negative.

To show the readers are not the bottleneck, the whole measurement runs once per entry of
READER_SETS (3,000 streams split over that many processes): more readers give the same
figures. Server and reader CPU time per change are recorded too. Any status other than 200,
an `event: deleted` or a stream that ends fails the bench.

Knobs: WATCHERS, WATCH_READERS (e.g. "4,8"), WATCH_ROUNDS; WATCH_VERBOSE=1 prints each
change; WATCH_PROFILE=FILE samples the server with py-spy during the activations.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import httpx
import psutil

from bench import load

ROOT = Path(__file__).resolve().parents[1]
WATCHERS = int(os.environ.get("WATCHERS", "3000"))
READER_SETS = tuple(int(n) for n in os.environ.get("WATCH_READERS", "4,8").split(","))
ROUNDS = int(os.environ.get("WATCH_ROUNDS", "20"))
TARGET_P99_MS = 250.0
AGENT = "bench-1"
OPENING = 50  # streams each reader opens at once
TIMEOUT = 30.0  # seconds a reader waits for its streams' first or next bundle


class BenchFailed(RuntimeError):
    pass


class Watch(asyncio.Protocol):
    """One watch stream, read as raw bytes: the status line, then events. uvicorn frames
    each event as one chunk; an event ends with a blank line, and its `data:` (JSON) has no
    newline, so the chunk framing never needs decoding: it sits before `event:`."""

    def __init__(self, request: bytes, failed: asyncio.Future[str]) -> None:
        self.request = request
        self.failed = failed
        self.buffer = bytearray()
        self.status: int | None = None
        self.transport: asyncio.Transport | None = None
        self.etag = b""  # the last bundle's id
        self.arrived = 0  # when its last byte arrived (monotonic ns)
        self.got_first = asyncio.get_running_loop().create_future()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buffer += data
        if self.status is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.buffer[9:12])
            if self.status != 200:
                self.fail(f"watch answered {bytes(self.buffer[:end]).decode(errors='replace')!r}")
                return
            del self.buffer[: end + 4]
        while (end := self.buffer.find(b"\n\n")) >= 0:
            event = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            start = event.find(b"event: ")
            if start < 0:
                continue  # a keepalive comment
            if event.startswith(b"event: bundle\nid: ", start):
                self.etag = event[start + 18 : event.index(b"\n", start + 18)]
                self.arrived = now
                if not self.got_first.done():
                    self.got_first.set_result(None)
            else:
                self.fail(f"unexpected event {event[start : start + 40]!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.fail(f"a stream ended ({exc!r})")

    def fail(self, why: str) -> None:
        if not self.failed.done():
            self.failed.set_result(why)


async def read_streams(conn: Connection, port: int, auth: str, count: int) -> None:
    """A reader process: open `count` streams, then answer the main process's commands."""
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[str] = loop.create_future()
    request = (
        f"GET /v1/agents/{AGENT}/bundle/watch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {auth}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    watches: list[Watch] = []
    gate = asyncio.Semaphore(OPENING)

    async def open_one() -> None:
        async with gate:
            _, watch = await loop.create_connection(lambda: Watch(request, failed), "127.0.0.1", port)
            watches.append(watch)
            await watch.got_first

    async def or_failure(work: Any) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # raised below, if at all
        done, _ = await asyncio.wait({task, failed}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if failed in done:
            task.cancel()
            raise BenchFailed(failed.result())
        if task not in done:
            task.cancel()
            raise BenchFailed(f"no bundle within {TIMEOUT} s")
        task.result()

    async def all_changed(before: bytes) -> None:
        while any(w.etag == before for w in watches):
            await asyncio.sleep(0.002)  # the arrival times are stamped as bytes come in

    try:
        await or_failure(asyncio.gather(*(open_one() for _ in range(count))))
        etags = {w.etag for w in watches}
        if len(etags) != 1:
            raise BenchFailed(f"streams opened on different bundles: {etags}")
        before = etags.pop()
        conn.send(("opened", before.decode()))
        # Each command comes after an activation, so streams may have the change already;
        # the CPU time counts from the end of the previous round.
        cpu = time.process_time()
        while await loop.run_in_executor(None, conn.recv) != "close":
            await or_failure(all_changed(before))
            etags = {w.etag for w in watches}
            if len(etags) != 1:
                raise BenchFailed(f"streams have different bundles: {etags}")
            before = etags.pop()
            used, cpu = time.process_time() - cpu, time.process_time()
            conn.send(("changed", before.decode(), [w.arrived for w in watches], used))
    except BenchFailed as error:
        conn.send(("failed", str(error)))
    finally:
        for w in watches:
            w.closing = True
            if w.transport is not None:
                w.transport.close()
    conn.close()


def reader(conn: Connection, port: int, auth: str, count: int) -> None:
    import uvloop

    uvloop.run(read_streams(conn, port, auth, count))


def answer(conn: Connection, kind: str) -> tuple[Any, ...]:
    if not conn.poll(TIMEOUT + 10):
        raise BenchFailed("a reader did not answer")
    message = conn.recv()
    if message[0] == "failed":
        raise BenchFailed(message[1])
    if message[0] != kind:
        raise BenchFailed(f"a reader said {message!r}")
    return tuple(message[1:])


def measure(server: load.Server, http: httpx.Client, variants: list[str], readers: int) -> dict[str, Any]:
    """Open WATCHERS streams over `readers` processes, time ROUNDS activations, close them."""
    context = multiprocessing.get_context("spawn")
    process = psutil.Process(server.process.pid)
    shares = [WATCHERS // readers + (i < WATCHERS % readers) for i in range(readers)]
    pipes, children = [], []
    rss_before = process.memory_info().rss
    try:
        for share in shares:
            ours, theirs = context.Pipe()
            child = context.Process(target=reader, args=(theirs, server.port, load.KEYS["resolve"], share), daemon=True)
            child.start()
            pipes.append(ours)
            children.append(child)
        opened = {answer(conn, "opened")[0] for conn in pipes}
        if len(opened) != 1:
            raise BenchFailed(f"readers opened on different bundles: {opened}")
        time.sleep(1)
        rss_after = process.memory_info().rss
        delays: list[float] = []  # ms, every stream of every round
        from_request: list[float] = []  # ms, the same from when the activation was sent
        last: list[float] = []  # ms, per round: until the last stream had it
        reader_cpu: list[float] = []  # s, per round: the busiest reader's
        cpu = process.cpu_times()
        profiler = profile(server.process.pid)
        for n in range(ROUNDS):
            sent = time.monotonic_ns()
            response = http.post(f"/v1/agents/{AGENT}/variants/{variants[n % 2]}/activate")
            answered = time.monotonic_ns()
            if response.status_code != 200:
                raise BenchFailed(f"activation answered {response.status_code}: {response.text}")
            for conn in pipes:
                conn.send("collect")
            answers = [answer(conn, "changed") for conn in pipes]
            bundle = http.get(f"/v1/agents/{AGENT}/bundle")
            if bundle.status_code != 200:
                raise BenchFailed(f"bundle answered {bundle.status_code}")
            if {etag for etag, _, _ in answers} != {bundle.json()["etag"]}:
                raise BenchFailed(f"round {n}: streams have {answers[0][0]}, the bundle is {bundle.json()['etag']}")
            round_delays = [(t - answered) / 1e6 for _, times, _ in answers for t in times]
            delays += round_delays
            from_request += [d + (answered - sent) / 1e6 for d in round_delays]
            last.append(max(round_delays))
            if os.environ.get("WATCH_VERBOSE"):
                print(f"change {n}: p50 {statistics.median(round_delays):.1f} ms, last {last[-1]:.1f} ms", flush=True)
            reader_cpu.append(max(used for _, _, used in answers))
        spent = process.cpu_times()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(30)
        for conn in pipes:
            conn.send("close")
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    server_cpu = (spent.user + spent.system - cpu.user - cpu.system) / ROUNDS
    return {
        "readers": readers,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(percentile(delays, 0.99), 1),
        "max_ms": round(max(delays), 1),
        "min_ms": round(min(delays), 1),
        "last_stream_ms_median": round(statistics.median(last), 1),
        "from_request_p50_ms": round(statistics.median(from_request), 1),
        "from_request_p99_ms": round(percentile(from_request, 0.99), 1),
        "server_cpu_ms_per_change": round(server_cpu * 1000, 1),
        "reader_cpu_ms_per_change": round(statistics.median(reader_cpu) * 1000, 1),
    }


def profile(pid: int) -> subprocess.Popen[bytes] | None:
    """With WATCH_PROFILE=FILE, py-spy samples the server during the activations (FILE
    gets its collapsed stacks, for flamegraph.pl or speedscope)."""
    out = os.environ.get("WATCH_PROFILE")
    if not out:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", out]
    profiler = subprocess.Popen([*command, "--nonblocking"], stdout=subprocess.DEVNULL)
    time.sleep(1)  # attached
    return profiler


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def section(w: dict[str, Any]) -> list[str]:
    """The "Watch streams" section of bench/RESULTS.md, from bench/results/watch.json."""
    runs = w["runs"]
    lines = [
        "## Watch streams",
        "",
        f"Run {w['when'][:16].replace('T', ' ')} UTC; `bench/watch.py`. {w['watchers']:,} open"
        " `GET .../bundle/watch` streams on one server process (one uvicorn worker, default settings but"
        f" {w['server_settings']}), read by reader processes (raw sockets, uvloop) on the same 2 cores.",
        "",
        f"- Resident memory {w['rss_before_mib']} MiB before the streams open, {w['rss_after_mib']} MiB after,"
        f" about {w['kib_per_watch']} KiB per stream.",
        f"- From an activation's 200 (read by the activating process) until each stream has read the new"
        f" bundle, over {w['watchers']:,} streams x {w['rounds']} activations: p50 {w['p50_ms']} ms,"
        f" p99 {w['p99_ms']} ms, max {w['max_ms']} ms (target p99 < {w['target_p99_ms']:.0f} ms:"
        f" {'pass' if w['passed'] else 'FAIL'}).",
        "",
        "| reader processes | p50 ms | p99 ms | max ms | last stream, median ms | from the request sent: p50, p99 ms"
        " | server CPU ms per change | busiest reader's CPU ms per change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['readers']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['last_stream_ms_median']}"
            f" | {r['from_request_p50_ms']}, {r['from_request_p99_ms']}"
            f" | {r['server_cpu_ms_per_change']} | {r['reader_cpu_ms_per_change']} |"
        )
    lines += [
        "",
        "The headline figures are the first row's; more reader processes giving the same figures, and the"
        " server busy for about as long as the fan-out lasts, show the server is what is measured. Negative"
        " delays: a stream had the change before the activating client had read its 200 (the server wakes the"
        " streams as the change commits, and sometimes writes them all before the 200); the delays counted"
        " from when the activation was sent include its whole request.",
        "",
    ]
    return lines


def put_section(lines: list[str]) -> None:
    """Replace the "Watch streams" section of bench/RESULTS.md where it stands (or add it at
    the end); bench/load.py writes it again, from watch.json, when it rewrites the file."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text().splitlines() if path.exists() else ["# Benchmark results", ""]
    heading = lines[0]
    if heading in text:
        start = text.index(heading)
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
        text[start:end] = lines
    else:
        while text and not text[-1]:
            text.pop()
        text += ["", *lines]
    path.write_text("\n".join(text).rstrip("\n") + "\n")


async def prepare() -> str:
    url = await load.fresh_database("av_watch")
    await load.seed(url, 1)
    await load.make_keys(url)
    return url


def main() -> None:
    url = asyncio.run(prepare())
    runs = []
    with (
        load.Server(url) as server,
        httpx.Client(
            base_url=server.base, headers={"Authorization": f"Bearer {load.KEYS['admin']}"}, timeout=60
        ) as http,
    ):
        variants = []
        for i in range(2):
            made = http.post(f"/v1/agents/{AGENT}/variants", json={"variant_name": f"w{i}"})
            if made.status_code != 201:
                raise BenchFailed(f"making a variant answered {made.status_code}: {made.text}")
            variants.append(made.json()["id"])
        time.sleep(1)
        for readers in READER_SETS:
            runs.append(measure(server, http, variants, readers))
            print(runs[-1], flush=True)
            time.sleep(1)
    first = runs[0]
    record = {
        "when": datetime.now(UTC).isoformat(),
        "watchers": WATCHERS,
        "rounds": ROUNDS,
        "server_settings": "RATE_LIMITS with limits that never bind",
        "rss_before_mib": round(first["rss_before"] / 2**20, 1),
        "rss_after_mib": round(first["rss_after"] / 2**20, 1),
        "kib_per_watch": round((first["rss_after"] - first["rss_before"]) / WATCHERS / 1024, 1),
        "p50_ms": first["p50_ms"],
        "p99_ms": first["p99_ms"],
        "max_ms": first["max_ms"],
        "target_p99_ms": TARGET_P99_MS,
        "passed": all(r["p99_ms"] < TARGET_P99_MS for r in runs),
        "runs": [{k: v for k, v in r.items() if not k.startswith("rss")} for r in runs],
        # What bench/load.py's section has read since the single-reader bench: until the last stream.
        "fan_out_ms_median": first["last_stream_ms_median"],
        "fan_out_ms_max": first["max_ms"],
    }
    print(json.dumps(record, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "watch.json").write_text(json.dumps(record, indent=2) + "\n")
    put_section(section(record))


if __name__ == "__main__":
    try:
        main()
    except BenchFailed as error:
        sys.exit(f"bench/watch.py failed: {error}")
