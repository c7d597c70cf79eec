"""The TypeScript SDK's own tests (sdk/typescript/test), run with Node's test runner.

`make test` builds them first (`make sdk-ts`: npm ci, then tsc into sdk/typescript/build).
`unit/` needs no server (the conformance cases, rendering, the model clients' requests);
each file of `live/` runs against a real `serve` process on a database of its own, started
here (one per xdist worker), told to the tests as `AV_BASE_URL` and `AV_ADMIN_KEY`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.system.test_ofrep_sdks import node_executable
from tests.system.test_replicas import ROOT, Server, own_database, start, stop, wait_ready

TS_DIR = ROOT / "sdk" / "typescript"
BUILD = TS_DIR / "build"
STAMP = BUILD / ".built-stamp"
SOURCES = ("src", "test", "bench", "examples")


def built_tests(kind: str) -> list[str]:
    return sorted(path.name for path in (BUILD / "test" / kind).glob("*.test.js"))


def check_build() -> None:
    """The build is there and no older than the sources (else these would test stale code)."""
    if not STAMP.exists():
        pytest.fail("sdk/typescript is not built: run `make sdk-ts` (make test does)")
    built = STAMP.stat().st_mtime
    stale = [
        str(path.relative_to(TS_DIR))
        for folder in SOURCES
        for path in (TS_DIR / folder).rglob("*.ts")
        if path.stat().st_mtime > built
    ]
    if stale:
        pytest.fail(f"sdk/typescript's build is older than {', '.join(stale[:5])}: run `make sdk-ts`")


def run_node_tests(files: list[Path], env: dict[str, str] | None = None, timeout: float = 300) -> None:
    check_build()
    command = [node_executable(), "--test", "--test-concurrency=1", "--test-reporter=spec", *map(str, files)]
    done = subprocess.run(
        command, cwd=TS_DIR, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    output = f"{done.stdout[-12000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"node --test failed ({done.returncode}):\n{output}"
    passed = re.search(r"^\S* ?pass (\d+)$", done.stdout, re.M)
    assert passed is not None and int(passed.group(1)) > 0, f"no test ran:\n{output}"


@pytest.mark.parametrize("name", built_tests("unit") or ["(none built)"])
def test_unit(name: str) -> None:
    run_node_tests([BUILD / "test" / "unit" / name])


@pytest.fixture(scope="module")
def live_server(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    import asyncio

    log_dir = tmp_path_factory.mktemp("ts-sdk")
    database = f"av_ts_{os.getpid()}"
    loop = asyncio.new_event_loop()
    manager = own_database(server_url, database)
    url = loop.run_until_complete(manager.__aenter__())
    server = start("ts-sdk", url, log_dir, migrate=True)
    try:

        async def ready() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                await wait_ready(http, server)

        loop.run_until_complete(ready())
        yield server, (log_dir / "admin-key").read_text().strip()
    finally:
        stop(server)
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


@pytest.mark.live
@pytest.mark.parametrize("name", built_tests("live") or ["(none built)"])
def test_live(name: str, live_server: tuple[Server, str]) -> None:
    server, admin_key = live_server
    env = {"AV_BASE_URL": server.url, "AV_ADMIN_KEY": admin_key, "AV_SERVER_LOG": str(server.log)}
    run_node_tests([BUILD / "test" / "live" / name], env)


README = ROOT / "README.md"
EXAMPLE = TS_DIR / "examples" / "agent.ts"
MARKER = "<!-- this block runs in sdk/typescript/test/live/readme-agent.test.ts -->"


def test_the_readme_shows_the_typescript_agent_as_it_is() -> None:
    text = README.read_text()
    assert MARKER in text, "the README's TypeScript example lost its marker"
    block = re.search(r"```ts\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block is not None
    assert block.group(1) == EXAMPLE.read_text()
    assert f"```ts\n{EXAMPLE.read_text()}```" in (TS_DIR / "README.md").read_text(), "sdk/typescript/README.md too"


def test_the_package_stands_alone() -> None:
    """What `npm publish` would ship (dist/) imports nothing but itself and Node's own
    modules, so it has no runtime dependency; its type declarations name neither `openai`
    nor `@anthropic-ai/sdk` (dev dependencies, for the compile-time checks only)."""
    check_build()
    package = json.loads((TS_DIR / "package.json").read_text())
    assert not package.get("dependencies"), package.get("dependencies")
    specifier = re.compile(
        r"""(?:^|\s)(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']|import\(["']([^"']+)["']\)""", re.M
    )
    files = list((TS_DIR / "dist").rglob("*.js")) + list((TS_DIR / "dist").rglob("*.d.ts"))
    assert len(files) > 20, files
    for path in files:
        for found in specifier.finditer(path.read_text()):
            name = found.group(1) or found.group(2)
            assert name.startswith(("./", "../", "node:")), f"{path.relative_to(TS_DIR)} imports {name!r}"
