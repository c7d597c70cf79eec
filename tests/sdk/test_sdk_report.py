"""The SDK's `report()` against real server processes, through a proxy that fails half the
outcome batches: every outcome is stored exactly once.

`FaultyProxy` (tests/sdk/faulty_proxy.py) forwards everything to server A, except that every other `POST .../outcomes`
fails, in two ways in turn: *refused* (503 without forwarding: nothing stored) and *lost*
(forwarded, so the server stores the batch, then answered 502: only the same
`Idempotency-Key`, replayed by the server, keeps the retry from storing it twice). The
figures are then read from server A itself (`/usage`, and the outcomes table).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agent_variants import AgentVariants, AsyncAgentVariants, ReportStats
from sqlalchemy import text

from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id
from tests.helpers import unique
from tests.sdk.faulty_proxy import FaultyProxy
from tests.system.test_replicas import Replicas, free_port, ok, replicas, setup_agent

pytestmark = pytest.mark.live
__all__ = ["replicas"]  # the module-scoped fixture: two servers on one database


@pytest.fixture
def proxy(replicas: Replicas) -> Iterator[FaultyProxy]:
    """A proxy of its own per test, so the alternation starts over: first batch refused."""
    proxy = FaultyProxy(replicas.a.url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


# ----------------------------------------------------------------------------- helpers


def secret(replicas: Replicas) -> str:
    return replicas.http.headers["Authorization"].removeprefix("Bearer ")


@dataclass
class Reported:
    """What a test reported for one agent: each outcome unique (its `subject`), and the
    totals the service must show for it."""

    agent_id: str
    subjects: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    by_variant: Counter[str | None] = field(default_factory=Counter)

    def outcome(self, n: int, variant_id: str | None = None) -> dict[str, Any]:
        """The fields of outcome `n` (as given to `report`), now counted as expected."""
        fields = {
            "variant_id": variant_id,
            "subject": f"run-{n}",
            "input_tokens": n,
            "output_tokens": 3 * n + 1,
            "latency_ms": n / 4,
            "success": n % 2 == 0,
        }
        self.subjects.append(fields["subject"])
        self.input_tokens += fields["input_tokens"]
        self.output_tokens += fields["output_tokens"]
        self.by_variant[variant_id] += 1
        return fields


async def assert_stored_once(replicas: Replicas, reported: Reported) -> None:
    """Server A shows exactly what was reported: each outcome once, the token sums exact."""
    usage = await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{reported.agent_id}/usage"))
    assert (usage["outcomes"], usage["input_tokens"], usage["output_tokens"]) == (
        len(reported.subjects),
        reported.input_tokens,
        reported.output_tokens,
    )
    assert {row["variant_id"]: row["outcomes"] for row in usage["by_variant"]} == dict(reported.by_variant)
    rows = await replicas.conn.execute(
        text("SELECT subject, count(*) AS n FROM outcomes WHERE agent_id = :agent GROUP BY subject"),
        {"agent": reported.agent_id},
    )
    stored = {row.subject: row.n for row in rows}
    assert stored == dict.fromkeys(reported.subjects, 1)


def assert_both_faults_fired(proxy: FaultyProxy) -> None:
    """Each kind of fault happened, and each lost batch was sent again under its key and
    answered from it (the server replayed instead of storing it again)."""
    assert proxy.keys("refused") and proxy.keys("lost"), proxy.faults
    replayed = {f.key for f in proxy.forwarded if f.replayed and f.status == 202}
    for key in proxy.keys("lost"):
        assert sum(f.key == key for f in proxy.forwarded) >= 2, key
        assert key in replayed, (key, proxy.forwarded)
    # Nothing but the lost batches needed a replay: a refused batch never reached the server.
    assert replayed == set(proxy.keys("lost"))


# ----------------------------------------------------------------------------- tests


async def test_report_through_a_server_failing_half_the_batches_stores_every_outcome_once(
    replicas: Replicas, proxy: FaultyProxy
) -> None:
    agents = [await setup_agent(replicas) for _ in range(2)]
    reported = [Reported(agent["id"]) for agent, _ in agents]
    total = 2500  # 1,250 an agent: batches of 1,000 and 250 for each
    async with AsyncAgentVariants(proxy.url, secret(replicas)) as client:
        for n in range(total):
            (agent, variants), expected = agents[n % 2], reported[n % 2]
            await client.report(agent["id"], **expected.outcome(n, variants[0]["id"] if n % 3 == 0 else None))
        stats = await client.flush(timeout=30)
        assert stats == ReportStats(sent=total, pending=0, dropped=0, rejected=0)
    assert client.report_stats() == ReportStats(sent=total, pending=0, dropped=0, rejected=0)
    for expected in reported:
        await assert_stored_once(replicas, expected)
    assert_both_faults_fired(proxy)
    # Four batches (1,000 and 250 an agent), the first attempts refused, lost, refused, lost.
    assert len({f.key for f in proxy.forwarded}) == 4
    assert [kind for kind, _ in proxy.faults][:2] == ["refused", "lost"]


async def test_the_blocking_client_stores_every_outcome_once_through_the_same_faults(
    replicas: Replicas, proxy: FaultyProxy
) -> None:
    agents = [(await setup_agent(replicas))[0] for _ in range(2)]
    reported = [Reported(agent["id"]) for agent in agents]
    total = 600
    client = AgentVariants(proxy.url, secret(replicas))
    try:
        for n in range(total):
            # The agent by slug here: the SDK takes either.
            client.report(agents[n % 2]["slug"], **reported[n % 2].outcome(n))
        # At least two batches (one an agent): the first refused, the second lost.
        assert client.flush(timeout=30) == ReportStats(sent=total, pending=0, dropped=0, rejected=0)
    finally:
        client.close()
    assert client.report_stats() == ReportStats(sent=total, pending=0, dropped=0, rejected=0)
    for expected in reported:
        await assert_stored_once(replicas, expected)
    assert_both_faults_fired(proxy)


async def test_a_full_buffer_drops_and_counts_instead_of_blocking() -> None:
    # Nothing listens there: every attempt fails to connect, so nothing is ever sent.
    client = AsyncAgentVariants(f"http://127.0.0.1:{free_port()}", "avk_unused", buffer_capacity=10)
    try:
        started = time.perf_counter()
        for n in range(25):
            await client.report("nowhere", input_tokens=n, output_tokens=0, latency_ms=1)
        elapsed = time.perf_counter() - started
        # `report` never yields to the event loop, so the sender (started by the first call)
        # has not run: nothing is in flight, 10 fill the buffer and the other 15 are dropped.
        assert client.report_stats() == ReportStats(sent=0, pending=10, dropped=15, rejected=0)
        assert elapsed < 0.5, elapsed  # none of the 25 waited (a functional bound, not a benchmark)

        # A flush takes the 10 out of the buffer into a batch, which stays in flight (and
        # pending) while the service cannot be reached ...
        assert await client.flush(timeout=0.3) == ReportStats(sent=0, pending=10, dropped=15, rejected=0)
        # ... so the buffer has room for 10 again: the capacity bounds what waits, not what is in flight.
        started = time.perf_counter()
        for n in range(25):
            await client.report("nowhere", input_tokens=n, output_tokens=0, latency_ms=1)
        elapsed = time.perf_counter() - started
        assert client.report_stats() == ReportStats(sent=0, pending=20, dropped=30, rejected=0)
        assert elapsed < 0.5, elapsed
    finally:
        await client.close(timeout=0.3)
    # What close could not send is dropped (and counted), not left pending for ever.
    assert client.report_stats() == ReportStats(sent=0, pending=0, dropped=50, rejected=0)


async def test_items_named_invalid_are_rejected_and_the_rest_stored_once(
    replicas: Replicas, proxy: FaultyProxy
) -> None:
    agent, _ = await setup_agent(replicas)
    reported = Reported(agent["id"])
    async with AsyncAgentVariants(proxy.url, secret(replicas)) as client:
        for n in range(12):
            if n in (3, 8):  # the SDK checks field names, not values: these go out as they are
                await client.report(agent["id"], subject=f"bad-{n}", input_tokens=-1, output_tokens=1, latency_ms=1)
            else:
                await client.report(agent["id"], **reported.outcome(n))
        stats = await client.flush(timeout=30)
    assert stats == ReportStats(sent=10, pending=0, dropped=0, rejected=2)
    await assert_stored_once(replicas, reported)
    # The 12 were refused, then answered 422 (naming data[3] and data[8]); the 10 left went
    # out under a new key (another body), whose first answer was lost, and were replayed.
    # (A retry that comes before the server has recorded the lost answer is told 409
    # `idempotency_key_in_use`, and waits.)
    assert [kind for kind, _ in proxy.faults][:2] == ["refused", "lost"]
    assert_both_faults_fired(proxy)
    assert [f.status for f in proxy.forwarded if f.status != 409] == [422, 202, 202]
    assert len({f.key for f in proxy.forwarded}) == 2


async def test_items_naming_an_unknown_experiment_are_rejected_and_the_rest_stored_once(replicas: Replicas) -> None:
    # A draft experiment deleted while its outcomes wait in the buffer, say: the service
    # answers 404 naming each such item (`data[i].experiment_id`); the others are good.
    agent, _ = await setup_agent(replicas)
    gone = new_id("experiment")
    reported = Reported(agent["id"])
    async with AsyncAgentVariants(replicas.a.url, secret(replicas)) as client:
        for n in range(8):
            if n in (0, 5):
                await client.report(
                    agent["id"], experiment_id=gone, subject=f"gone-{n}", input_tokens=1, output_tokens=1, latency_ms=1
                )
            else:
                await client.report(agent["id"], **reported.outcome(n))
        stats = await client.flush(timeout=30)
    assert stats == ReportStats(sent=6, pending=0, dropped=0, rejected=2)
    await assert_stored_once(replicas, reported)


async def test_outcomes_are_stored_in_their_environment(replicas: Replicas) -> None:
    # The environment a config was resolved in, or one named, reaches the table (contract
    # 1.1); one the service does not have is refused, never stored elsewhere.
    agent, _ = await setup_agent(replicas)
    environment = await ok(replicas.http.post(f"{replicas.a.url}/v1/environments", json={"name": unique("sdk")}), 201)
    slug = environment["slug"]
    async with AsyncAgentVariants(replicas.a.url, secret(replicas)) as client:
        config = await client.resolve(agent["id"], "u1", environment=slug)
        assert config.environment == slug
        await client.report(
            agent["id"], config=config, subject="resolved", input_tokens=1, output_tokens=1, latency_ms=1
        )
        await client.report(
            agent["id"], environment=slug, subject="named", input_tokens=2, output_tokens=1, latency_ms=1
        )
        await client.report(
            agent["id"], environment=environment["id"], subject="by-id", input_tokens=3, output_tokens=1, latency_ms=1
        )
        await client.report(agent["id"], subject="default", input_tokens=4, output_tokens=1, latency_ms=1)
        await client.report(
            agent["id"], environment="no-such-place", subject="unknown", input_tokens=5, output_tokens=1, latency_ms=1
        )
        stats = await client.flush(timeout=30)
    assert stats == ReportStats(sent=4, pending=0, dropped=0, rejected=1)
    rows = await replicas.conn.execute(
        text("SELECT subject, environment_id FROM outcomes WHERE agent_id = :agent"), {"agent": agent["id"]}
    )
    assert dict(rows.all()) == {
        "resolved": environment["id"],
        "named": environment["id"],
        "by-id": environment["id"],
        "default": PRODUCTION_ENVIRONMENT_ID,
    }
    usage = await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{agent['id']}/usage", params={"environment": slug}))
    assert (usage["environment"], usage["outcomes"], usage["input_tokens"]) == (slug, 3, 6)


async def test_an_unknown_agent_is_rejected_whole(replicas: Replicas) -> None:
    async with AsyncAgentVariants(replicas.a.url, secret(replicas)) as client:
        for n in range(3):
            await client.report("no-such-agent", input_tokens=n, output_tokens=0, latency_ms=1)
        assert await client.flush(timeout=30) == ReportStats(sent=0, pending=0, dropped=0, rejected=3)


async def test_an_unknown_field_raises_at_the_call_site_and_report_after_close_raises(replicas: Replicas) -> None:
    agent, _ = await setup_agent(replicas)
    reported = Reported(agent["id"])
    client = AsyncAgentVariants(replicas.a.url, secret(replicas))
    with pytest.raises(TypeError, match="tokens"):
        await client.report(agent["id"], tokens=5, output_tokens=1, latency_ms=1)
    await client.report(agent["id"], **reported.outcome(1))
    await client.close()
    with pytest.raises(RuntimeError):
        await client.report(agent["id"], **Reported(agent["id"]).outcome(2))
    assert client.report_stats() == ReportStats(sent=1, pending=0, dropped=0, rejected=0)

    blocking = AgentVariants(replicas.a.url, secret(replicas))
    with pytest.raises(TypeError, match="tokens"):
        blocking.report(agent["id"], tokens=5, output_tokens=1, latency_ms=1)
    blocking.report(agent["id"], **reported.outcome(3))  # starts the background thread
    blocking.close()
    with pytest.raises(RuntimeError):
        blocking.report(agent["id"], **Reported(agent["id"]).outcome(4))
    assert blocking.report_stats() == ReportStats(sent=1, pending=0, dropped=0, rejected=0)
    await assert_stored_once(replicas, reported)


async def test_close_sends_what_is_buffered(replicas: Replicas) -> None:
    agent, _ = await setup_agent(replicas)
    reported = Reported(agent["id"])
    client = AsyncAgentVariants(replicas.a.url, secret(replicas))
    for n in range(5):
        await client.report(agent["id"], **reported.outcome(n))
    await client.close()  # no flush: close sends them
    assert client.report_stats() == ReportStats(sent=5, pending=0, dropped=0, rejected=0)

    blocking = AgentVariants(replicas.a.url, secret(replicas))
    for n in range(5, 12):
        blocking.report(agent["id"], **reported.outcome(n))
    blocking.close()
    assert blocking.report_stats() == ReportStats(sent=7, pending=0, dropped=0, rejected=0)
    await assert_stored_once(replicas, reported)


async def test_values_that_cannot_be_sent_raise_at_the_call_site_and_numbers_of_any_kind_are_taken(
    replicas: Replicas,
) -> None:
    import decimal
    import fractions

    agent, _ = await setup_agent(replicas)
    async with AsyncAgentVariants(replicas.a.url, secret(replicas)) as client:
        bad: list[dict[str, Any]] = [
            {"input_tokens": 1, "output_tokens": 1, "latency_ms": float("nan")},  # a scorer that failed
            {"input_tokens": 1, "output_tokens": 1, "latency_ms": 1, "score": float("inf")},
            {"input_tokens": 1.5, "output_tokens": 1, "latency_ms": 1},
            {"input_tokens": True, "output_tokens": 1, "latency_ms": 1},
            {"input_tokens": 1, "output_tokens": 1, "latency_ms": 1, "success": 1},
            {"input_tokens": 1, "output_tokens": 1, "latency_ms": 1, "subject": 42},
            {"input_tokens": 1, "output_tokens": 1, "latency_ms": "fast"},
        ]
        for fields in bad:
            with pytest.raises((TypeError, ValueError)):
                await client.report(agent["id"], **fields)
        await client.report(
            agent["id"],
            input_tokens=2,
            output_tokens=3,
            latency_ms=decimal.Decimal("1.5"),
            cost_usd=fractions.Fraction(1, 4),
            score=decimal.Decimal("0.5"),
        )
        assert await client.flush(timeout=10) == ReportStats(sent=1, pending=0, dropped=0, rejected=0)
    usage = await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{agent['id']}/usage"))
    assert (usage["outcomes"], usage["input_tokens"]) == (1, 2)


async def test_outcomes_go_out_within_a_second_or_so_without_flush(replicas: Replicas) -> None:
    agent, _ = await setup_agent(replicas)
    usage_url = f"{replicas.a.url}/v1/agents/{agent['id']}/usage"
    async with AsyncAgentVariants(replicas.a.url, secret(replicas)) as client:
        for n in range(3):
            await client.report(agent["id"], input_tokens=n, output_tokens=0, latency_ms=1)
        reported = time.monotonic()
        while (await ok(replicas.http.get(usage_url)))["outcomes"] < 3:
            assert time.monotonic() - reported < 3.0, "not sent within 3 s (it goes out at least every second)"
            await asyncio.sleep(0.05)
        assert client.report_stats() == ReportStats(sent=3, pending=0, dropped=0, rejected=0)


async def test_a_batch_the_server_keeps_failing_is_rejected_in_the_end_and_holds_up_no_other(
    replicas: Replicas,
) -> None:
    broken, _ = await setup_agent(replicas)
    fine, _ = await setup_agent(replicas)
    proxy = FaultyProxy(replicas.a.url, mode="pass", fail_with_500=broken["id"])
    proxy.start()
    try:
        async with AsyncAgentVariants(proxy.url, secret(replicas)) as client:
            for agent in (broken, fine, broken, fine):
                await client.report(agent["id"], input_tokens=1, output_tokens=0, latency_ms=1)
            stats = await client.flush(timeout=60)
        assert stats == ReportStats(sent=2, pending=0, dropped=0, rejected=2)
        assert len(proxy.faults) == 5  # SERVER_ERROR_ATTEMPTS, then refused for good
    finally:
        proxy.stop()
    usage = await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{fine['id']}/usage"))
    assert usage["outcomes"] == 2


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_program_that_ends_without_close_still_sends_its_outcomes(replicas: Replicas, host: str) -> None:
    """The exit flush runs while asyncio can still resolve a host name."""
    import subprocess
    import sys

    agent, _ = await setup_agent(replicas)
    url = replicas.a.url.replace("127.0.0.1", host)
    program = (
        "import sys\n"
        "from agent_variants import AgentVariants\n"
        "client = AgentVariants(sys.argv[1], sys.argv[2])\n"
        "for n in range(3):\n"
        "    client.report(sys.argv[3], input_tokens=n, output_tokens=1, latency_ms=1)\n"
        "print('exiting without close')\n"
    )
    ran = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", program, url, secret(replicas), agent["id"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0 and "exiting without close" in ran.stdout, ran.stderr
    usage = await ok(replicas.http.get(f"{replicas.a.url}/v1/agents/{agent['id']}/usage"))
    assert (usage["outcomes"], usage["output_tokens"]) == (3, 3), ran.stderr
