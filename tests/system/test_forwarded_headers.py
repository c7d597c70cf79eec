"""`X-Forwarded-For` is believed only from the proxies the operator lists (FORWARDED_ALLOW_IPS).

The access gate rations refused keys per client address (10/s, bursts of 100). If a
client could name its own address, it would get a fresh allowance per request: a real
`serve` process, sent wrong keys from loopback with a new `X-Forwarded-For` each time,
must ration them as the one client they come from, unless loopback is a listed proxy.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from services.api.access.gate import FAILURE_LIMIT
from services.api.settings import Settings
from tests.system.test_log_secrets import fake_secret, serve
from tests.system.test_replicas import stop, wait_ready

pytestmark = pytest.mark.live

# More refused keys than the allowance holds, even counting what it refills meanwhile.
ENOUGH = FAILURE_LIMIT.burst + 50


async def refused(http: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await http.get(
        "/v1/agents", headers={"Authorization": f"Bearer {fake_secret()}", "X-Forwarded-For": forwarded_for}
    )
    assert response.status_code in (401, 429), response.text
    return response.status_code


async def test_forwarded_for_is_ignored_unless_the_proxy_is_listed(live_url: str, tmp_path: Path) -> None:
    server = serve("default", live_url, tmp_path, LOG_LEVEL="warning", unset=("FORWARDED_ALLOW_IPS",))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await wait_ready(http, server)
            # By default nobody is trusted: a new address each time is still one client.
            started, statuses = time.monotonic(), []
            for n in range(10 * ENOUGH):
                statuses.append(await refused(http, f"10.1.{n // 250}.{n % 250 + 1}"))
                if statuses[-1] == 429:
                    break
            elapsed = time.monotonic() - started
            assert statuses[-1] == 429, f"{len(statuses)} wrong keys, from rotating X-Forwarded-For, all checked"
            refills = FAILURE_LIMIT.per_second * elapsed
            assert statuses.count(401) <= FAILURE_LIMIT.burst + refills + 1
    finally:
        stop(server)

    # With loopback listed as a proxy, each forwarded address has an allowance of its own ...
    server = serve("trusted", live_url, tmp_path, LOG_LEVEL="warning", FORWARDED_ALLOW_IPS="127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            await wait_ready(http, server)
            statuses = [await refused(http, f"10.2.{n // 250}.{n % 250 + 1}") for n in range(ENOUGH)]
            assert statuses.count(429) == 0
            # ... and one forwarded address is still one client.
            statuses = [await refused(http, "10.3.0.1") for _ in range(ENOUGH)]
            assert statuses[-1] == 429
    finally:
        stop(server)


@pytest.mark.parametrize(
    ("value", "proxies"),
    [
        ("", []),
        ("127.0.0.1", ["127.0.0.1"]),
        (" 10.0.0.0/8, ::1 ", ["10.0.0.0/8", "::1"]),
        ('["192.168.1.10", "fd00::/8"]', ["192.168.1.10", "fd00::/8"]),
        ("*", ["*"]),
        ("10.0.0.1,*", ["*"]),
    ],
)
def test_forwarded_allow_ips_setting(value: str, proxies: list[str]) -> None:
    assert Settings(forwarded_allow_ips=value).forwarded_allow_ips == proxies


@pytest.mark.parametrize("value", ["127.0.0.l", "localhost", "10.0.0.0/33"])
def test_forwarded_allow_ips_must_be_addresses(value: str) -> None:
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        Settings(forwarded_allow_ips=value)


def test_no_proxy_is_trusted_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert Settings().forwarded_allow_ips == []
