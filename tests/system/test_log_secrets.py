"""No secret reaches a log: a real `serve` process, its whole output captured, is sent keys
and passwords in query strings, paths and headers, and never writes one of them.

uvicorn's access log prints the request line with its query string, and at `trace` it
prints every request's ASGI scope; the app's own lines print paths. All of it goes through
`services.api.log_redaction`.
"""

from __future__ import annotations

import os
import secrets
import string
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.api.keys.tokens import PREFIX
from services.api.log_redaction import redact
from tests.system.test_replicas import ROOT, Server, free_port, stop, wait_ready

pytestmark = pytest.mark.live


def serve(
    name: str, database_url: str, log_dir: Path, *, workers: int = 1, unset: tuple[str, ...] = (), **env: str
) -> Server:
    """A `serve` process on the (migrated) database, its stdout and stderr in `<name>.log`;
    `env` is added to this process's environment, the variables named in `unset` are left out."""
    port = free_port()
    log = log_dir / f"{name}.log"
    inherited = {key: value for key, value in os.environ.items() if key not in unset}
    environment = {**inherited, "DATABASE_URL": database_url, "DATA_DIR": str(log_dir), **env}
    command = [sys.executable, "-m", "services.api.cli", "serve", "--port", str(port), "--no-migrate"]
    command += ["--workers", str(workers)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, process, f"http://127.0.0.1:{port}", log)


def fake_secret() -> str:
    """Shaped like one of our key secrets (`avk_` and 43 base62 characters), but no key."""
    return PREFIX + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


# At `trace`, uvicorn logs each request's ASGI scope too; with workers, each worker process
# sets up its own logging.
@pytest.mark.parametrize(("log_level", "workers"), [("info", 1), ("trace", 1), ("info", 2)])
async def test_no_secret_in_the_logs(
    live_url: str, live_key: str, tmp_path: Path, log_level: str, workers: int
) -> None:
    in_query, in_header, in_path, in_encoded = (fake_secret() for _ in range(4))
    password, token = "hunter2-" + secrets.token_hex(8), "tok-" + secrets.token_hex(8)
    server = serve("secrets", live_url, tmp_path, workers=workers, LOG_LEVEL=log_level)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await wait_ready(http, server)
            key = {"Authorization": f"Bearer {live_key}"}
            # A key sent as a query parameter is refused (keys go in the header only) ...
            assert (await http.get(f"/v1/agents?api_key={in_query}")).status_code == 401
            # ... and so is a wrong one in the header.
            wrong = await http.get("/v1/agents", headers={"Authorization": f"Bearer {in_header}"})
            assert wrong.status_code == 401
            # Credential-looking parameters next to a good key, by name and percent-encoded.
            await http.get(f"/v1/agents?limit=5&token={token}", headers=key)
            await http.get(f"/v1/agents?Password={password}&x=1", headers=key)
            await http.get(f"/v1/agents?api%5Fkey={in_encoded}", headers=key)
            # A secret pasted where a key's name goes (revoking by secret) is in the path.
            assert (await http.delete(f"/v1/keys/{in_path}", headers=key)).status_code in (404, 422)
            await http.get(f"/console/sign-in?next=/console&access_token={token}")
    finally:
        stop(server)
    output = server.log.read_text(errors="replace")
    # The requests were logged (the test would prove nothing otherwise) ...
    assert '"GET /v1/agents?api_key=' in output, output[-4000:]
    assert "/v1/keys/" in output
    # ... without any of the secrets.
    for secret in (in_query, in_header, in_path, in_encoded, password, token, live_key):
        assert secret not in output, f"{secret} is in the log:\n{output[-4000:]}"
    # What is not a secret is kept, so the line still says what was asked.
    assert "limit=5" in output and "x=1" in output


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"GET /v1/agents?api_key=avk_abc123 HTTP/1.1" 401', '"GET /v1/agents?api_key=[redacted] HTTP/1.1" 401'),
        (
            "GET /x?ACCESS-TOKEN=t0k&client_secret=s3&next=/a",
            "GET /x?ACCESS-TOKEN=[redacted]&client_secret=[redacted]&next=/a",
        ),
        (
            "GET /x?key=k&x_api_key=k&passwd=p&sig=s",
            "GET /x?key=[redacted]&x_api_key=[redacted]&passwd=[redacted]&sig=[redacted]",
        ),
        ("query_string: b'password=p4ss&limit=5'", "query_string: b'password=[redacted]&limit=5'"),
        ("Cookie: av_session=0123abcd; theme=dark", "Cookie: av_session=[redacted]; theme=dark"),
        ("Authorization: Bearer s3cr3t-t0ken-value", "Authorization: Bearer [redacted]"),
        ("DELETE /v1/keys/avk%5FAbC123 404", "DELETE /v1/keys/avk_[redacted] 404"),
        ("refused avk_Zz9 in a message", "refused avk_[redacted] in a message"),
        # Not credentials: left alone, so a line still says what was asked.
        ("GET /v1/agents?limit=5&after=agt_01J&monkey=1", "GET /v1/agents?limit=5&after=agt_01J&monkey=1"),
        ("Key (name)=(ci) already exists.", "Key (name)=(ci) already exists."),
        ("GET /v1/agents/support-bot/resolved?subject=u1&explain=true", None),
    ],
)
def test_redact(line: str, expected: str | None) -> None:
    assert redact(line) == (line if expected is None else expected)
