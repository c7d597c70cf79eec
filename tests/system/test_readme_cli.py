"""Every command line of the CLI that the README shows runs as written, from the repository
root, where `make` puts the command: `.venv/bin/agent-variants`.

The lines are read from the README itself (its `sh` blocks, and `code` in its prose that
starts with the command), so the README cannot drift from the CLI again. They run in the
README's order against a temporary database and data directory; `serve` is run until it is
ready, then stopped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from services.api import migrate
from tests.system.test_replicas import ROOT, free_port

pytestmark = pytest.mark.live

README = ROOT / "README.md"
COMMAND = ".venv/bin/agent-variants"
# A line that runs the CLI, by whatever path: the command is its first word.
_RUNS_CLI = re.compile(r"^(?P<program>\S*agent-variants)(?:\s|$)")


def cli_lines() -> list[str]:
    """The README's lines that run the CLI, in order, each once (a comment aside)."""
    text = README.read_text()
    lines: dict[str, str] = {}
    for match in re.finditer(r"```(\w*)\n(.*?)```|`([^`\n]+)`", text, re.S):
        language, block, span = match.groups()
        candidates = block.splitlines() if block is not None and language == "sh" else [span or ""]
        for line in candidates:
            if _RUNS_CLI.match(line.strip()):
                lines.setdefault(re.sub(r"\s+#.*", "", line.strip()), line.strip())
    return list(lines.values())


def test_the_readme_shows_cli_lines_that_run_from_the_repository_root() -> None:
    lines = cli_lines()
    assert any(" keys create " in line for line in lines), lines
    wrong = [line for line in lines if not line.startswith(COMMAND + " ")]
    # `make` installs the command in .venv/bin, which is not on PATH: a bare `agent-variants`
    # is "command not found".
    assert not wrong, f"not runnable as written from the repository root: {wrong}"
    assert (ROOT / COMMAND).exists()


def _serve(line: str, env: dict[str, str]) -> None:
    """Run a `serve` line until the server is ready, then stop it as an operator would."""
    process = subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://{env['HOST']}:{env['PORT']}/readyz"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"{line!r} exited {process.returncode}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{line!r} did not become ready"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 0, f"{line!r} exited {process.returncode}:\n{output[-3000:]}"


async def test_every_cli_line_of_the_readme_runs(empty_url: str, tmp_path: Path) -> None:
    # What the README asks first: a database at the newest migration (`make run` does it).
    await migrate.upgrade(empty_url)
    env = {
        **os.environ,
        "DATABASE_URL": empty_url,
        "DATA_DIR": str(tmp_path),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "LOG_LEVEL": "warning",
    }
    lines = cli_lines()
    assert len(lines) >= 5, lines
    for line in lines:
        if line.split()[1:2] == ["serve"]:
            _serve(line, env)
            continue
        done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
