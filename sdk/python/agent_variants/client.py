"""`AsyncAgentVariants`: resolve an agent's config from a local copy of its bundle.

    async with AsyncAgentVariants("http://config:8000", api_key="avk_...") as client:
        config = await client.resolve("support-bot", subject="user-42")
        config.model_name, config.temperature, config.arm

The first `resolve` of an agent fetches its bundle and starts one background watch
(server-sent events) that replaces the copy after every change; later calls read memory
(the experiment arm computed locally, with the service's own assignment function). When
the service is unreachable the last bundle keeps being served, until `max_staleness`
seconds without contact, if set, after which `resolve` raises `Unavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_variants.assignment import assign
from agent_variants.config import CONFIG_FIELDS, ResolvedAgentConfig
from agent_variants.errors import NotFound, Unavailable, from_response

_EXTRAS = ("agent_slug", "variant_slug", "source", "experiment_id", "arm")


def to_config(body: dict[str, Any]) -> ResolvedAgentConfig:
    """A `resolved_agent_config` object (with `provenance`) as the dataclass."""
    provenance = body.get("provenance") or {}
    return ResolvedAgentConfig(
        agent_id=body["agent_id"], variant_id=body["variant_id"],
        **{name: body[name] for name in CONFIG_FIELDS},
        **{name: body.get(name) for name in _EXTRAS if body.get(name) is not None},
        overridden=frozenset(name for name, source in provenance.items() if source != "agent"),
    )


@dataclass
class _Local:
    """One agent's bundle, ready to answer: the plain config, and the arms."""

    etag: str
    plain: ResolvedAgentConfig
    salt: str | None = None
    weights: tuple[int, ...] = ()
    arms: tuple[ResolvedAgentConfig, ...] = ()
    deleted: bool = False
    contact: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> _Local:
        experiment = bundle.get("experiment")
        local = cls(etag=bundle["etag"], plain=to_config(bundle["resolved"]))
        if experiment:
            local.salt = experiment["salt"]
            local.weights = tuple(arm["weight"] for arm in experiment["arms"])
            local.arms = tuple(to_config(arm["resolved"]) for arm in experiment["arms"])
        return local


class AsyncAgentVariants:
    def __init__(
        self, base_url: str, api_key: str | None = None, *, timeout: float = 5.0, max_staleness: float | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._max_staleness = max_staleness
        self._agents: dict[str, _Local] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._first: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> AsyncAgentVariants:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._watches.values():
            task.cancel()
        for task in self._watches.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()

    async def resolve(self, agent: str, subject: str | None = None) -> ResolvedAgentConfig:
        """The agent's config (its arm, for `subject`, while an experiment runs), from memory."""
        local = self._agents.get(agent)
        if local is None:
            local = await self._start(agent)
        if local.deleted:
            raise NotFound(f"Agent '{agent}' was deleted")
        if self._max_staleness is not None and time.monotonic() - local.contact > self._max_staleness:
            raise Unavailable(f"No contact with the service for over {self._max_staleness} s")
        if subject is not None and local.arms:
            return local.arms[assign(local.salt or "", subject, local.weights)]
        return local.plain

    async def _start(self, agent: str) -> _Local:
        async with self._first.setdefault(agent, asyncio.Lock()):
            if agent in self._agents:
                return self._agents[agent]
            response = await self._get(f"/v1/agents/{agent}/bundle")
            self._agents[agent] = _Local.of(response.json())
            self._watches[agent] = asyncio.create_task(self._watch(agent), name=f"agent-variants watch {agent}")
            return self._agents[agent]

    async def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.get(path, **kwargs)
        except httpx.HTTPError as error:
            raise Unavailable(f"The service cannot be reached: {error}") from error
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise from_response(response.status_code, body, response.headers)
        return response

    async def _watch(self, agent: str) -> None:
        """Keep the agent's copy current: one stream, reconnected with backoff and
        `Last-Event-ID`, so a reconnect brings whatever changed meanwhile."""
        delay = 0.2
        while True:
            local = self._agents[agent]
            try:
                headers = {"Last-Event-ID": local.etag}
                async with self._http.stream("GET", f"/v1/agents/{agent}/bundle/watch", headers=headers,
                                             timeout=httpx.Timeout(self._http.timeout.connect, read=None)) as stream:
                    if stream.status_code == 404:
                        local.deleted = True
                        return
                    if stream.status_code >= 400:
                        raise Unavailable(f"watch answered {stream.status_code}")
                    local.contact = time.monotonic()
                    delay = 0.2
                    await self._read(agent, stream)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, Unavailable):
                pass
            if self._agents[agent].deleted:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)

    async def _read(self, agent: str, stream: httpx.Response) -> None:
        kind, data = "message", None
        async for line in stream.aiter_lines():
            self._agents[agent].contact = time.monotonic()
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data is not None:
                if kind == "bundle":
                    local = _Local.of(json.loads(data))
                    local.contact = time.monotonic()
                    self._agents[agent] = local
                elif kind == "deleted":
                    self._agents[agent].deleted = True
                    return
                kind, data = "message", None
