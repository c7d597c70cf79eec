"""`AsyncAgentVariants`: the SDK for asyncio programs (`AgentVariants` is the same, blocking).

    async with AsyncAgentVariants("http://config:8000", api_key="avk_...") as client:
        config = await client.resolve("support-bot", subject="user-42")
        ...  # run the agent with config.model_name, config.system_prompt, ...
        await client.report("support-bot", config=config, subject="user-42",
                            input_tokens=812, output_tokens=164, latency_ms=1930, success=True)

The first `resolve` of an agent in an environment fetches its bundle and starts one
background watch that replaces the copy after every change; later calls read memory (the
targeting rule and the split's arm are computed locally, with the service's own functions). When the service is
unreachable the last bundle keeps being served, until `max_staleness` seconds without
word from it, if set, after which `resolve` raises `Unavailable`. `report` buffers;
outcomes go out in batches in the background. `close()` (or leaving the `async with`)
flushes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from agent_variants._http import Call, send_async
from agent_variants._version import __version__
from agent_variants.admin import JSON, Agents, Environments, Experiments, Keys, Rules, Variants
from agent_variants.bundles import Bundles, answer
from agent_variants.config import ResolvedAgentConfig
from agent_variants.outcomes import CAPACITY, OutcomeBuffer, ReportStats, Sender, outcome_of
from agent_variants.rules import Scalar

CLOSE_TIMEOUT = 10.0


def http_options(base_url: str, api_key: str | None, timeout: float | None, actor: str | None = None) -> dict[str, Any]:
    """What both clients give their `httpx` client. `actor` (a tool acting for a person)
    goes as `X-Actor` on every request: the revisions its writes make record it."""
    headers = {"User-Agent": f"agent-variants-sdk/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if actor:
        headers["X-Actor"] = actor
    # Each watched agent holds a connection for as long as it is watched: no cap on the pool
    # (httpx's default, 100, would leave the 101st agent, and every report, waiting forever).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=20)
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout, "limits": limits}


class _Transport:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def obj(self, call: Call) -> JSON:
        return await send_async(self._http, call)  # type: ignore[no-any-return]

    async def nil(self, call: Call) -> None:
        await send_async(self._http, call)


class AsyncAgentVariants:
    """The SDK for asyncio programs; every method is a coroutine. See the module's docstring."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | None = 5.0,
        max_staleness: float | None = None,
        buffer_capacity: int = CAPACITY,
        actor: str | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(**http_options(base_url, api_key, timeout, actor))
        self._max_staleness = max_staleness
        self._bundles = Bundles(self._http, max_staleness=max_staleness)
        self._outcomes = OutcomeBuffer(buffer_capacity)
        self._sender: Sender | None = None
        self._closed = False
        transport = _Transport(self._http)
        self.agents = Agents(transport)
        self.variants = Variants(transport)
        self.experiments = Experiments(transport)
        self.keys = Keys(transport)
        self.environments = Environments(transport)
        self.rules = Rules(transport)

    async def __aenter__(self) -> AsyncAgentVariants:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def resolve(
        self,
        agent: str,
        subject: str | None = None,
        *,
        attributes: Mapping[str, Scalar] | None = None,
        environment: str | None = None,
    ) -> ResolvedAgentConfig:
        """The agent's config in `environment` (None: the service's default) for this
        context, from memory: the first targeting rule that holds, else the subject's arm
        while a split runs, else the environment's config.

        config = await client.resolve("support-bot", "user-42", attributes={"plan": "pro"}, environment="staging")

        Attributes the service would refuse raise `ValidationFailed` naming each of them.
        """
        if self._closed:
            raise RuntimeError("resolve() on a closed client")
        local = self._bundles.local.get((agent, environment))
        if local is None:
            local = await self._bundles.start(agent, environment)
        return answer(local, subject, self._max_staleness, attributes)

    async def report(self, agent: str, *, config: ResolvedAgentConfig | None = None, **outcome: Any) -> None:
        """Buffer one outcome (sent within a second while the service answers); never waits for it.

        `config`, the `ResolvedAgentConfig` the run used, fills `variant_id`,
        `experiment_id` and `environment`; the other fields are the contract's (`subject`,
        `input_tokens`, `output_tokens`, `latency_ms`, `cost_usd`, `success`, `score`).

            await client.report("support-bot", config=config, input_tokens=812, output_tokens=164, latency_ms=1930)
        """
        if self._closed:
            raise RuntimeError("report() on a closed client")
        if self._sender is None:
            self._sender = Sender(self._http, self._outcomes)
            self._sender.start()
        self._outcomes.add(agent, outcome_of(config, outcome))

    async def flush(self, timeout: float | None = None) -> ReportStats:
        """Send every outcome reported so far (waiting at most `timeout` seconds, if set).

        stats = await client.flush(timeout=5)   # ReportStats(sent=..., pending=0, dropped=0, rejected=0)
        """
        if self._sender is not None:
            try:
                await asyncio.wait_for(self._sender.flush(), timeout)
            except TimeoutError:
                pass  # what is unsent stays pending, and goes out later under the same keys
        return self._outcomes.stats()

    def report_stats(self) -> ReportStats:
        """How many outcomes were sent, are pending, were dropped (buffer full) or rejected.

        if client.report_stats().dropped: ...   # the buffer overflowed: report less, or raise buffer_capacity
        """
        return self._outcomes.stats()

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Flush the outcomes (for up to `timeout` seconds), end the watches, close connections.

        await client.close()   # or use the client as a context manager
        """
        if self._closed:
            return
        self._closed = True
        await wind_down(self._sender, self._bundles, self._http, timeout)


async def wind_down(sender: Sender | None, bundles: Bundles, http: httpx.AsyncClient, timeout: float) -> None:
    """Flush the outcomes, end the watches, close the connections: each step whatever the
    one before it raised (both clients close this way)."""
    try:
        if sender is not None:
            await sender.close(timeout)
    finally:
        try:
            await bundles.close()
        finally:
            await http.aclose()
