"""`agent-variants serve` with DATABASE_URL unset: embedded PostgreSQL up, served, stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.live


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_running(data_dir: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or ()):
            return True
    return False


def test_serve_starts_embedded_postgres_migrates_serves_and_stops_it(tmp_path: Path) -> None:
    data_dir = (tmp_path / "pg").resolve()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(EMBEDDED_POSTGRES_DIR=str(data_dir), DATA_DIR=str(tmp_path), LOG_LEVEL="warning")
    server = subprocess.Popen(
        [sys.executable, "-m", "services.api.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.3)
        assert _postgres_running(data_dir)

        # First start, no key yet: an admin key was made, saved for its owner alone ...
        key_file = tmp_path / "admin-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        secret = key_file.read_text().strip()
        assert secret.startswith("avk_") and len(secret) == 47
        # ... and every /v1 route wants it.
        refused = httpx.get(f"{base}/v1/agents")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        key = {"Authorization": f"Bearer {secret}"}
        created = httpx.post(
            f"{base}/v1/agents",
            headers=key,
            json={
                "name": "Serve Test",
                "config": {"model_provider": "openai", "model_name": "gpt-4o"},
            },
        )
        assert created.status_code == 201, created.text
        resolved = httpx.get(f"{base}/v1/agents/serve-test/resolved", headers=key)
        assert resolved.status_code == 200
        assert resolved.json()["model_name"] == "gpt-4o"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0
    output = server.stdout.read().decode() if server.stdout else ""
    assert output.count(secret) == 1, output  # shown once, with a message saying what it is
    assert "admin key" in output
    # The embedded server is stopped with the service, not left behind.
    deadline = time.monotonic() + 20
    while _postgres_running(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postgres_running(data_dir)
