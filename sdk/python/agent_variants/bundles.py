"""Local copies of agents' bundles, kept current by one watch stream per agent.

`Bundles.start(agent)` fetches the bundle and starts the agent's watch task; from then on
`answer(...)` reads memory only. The watch reconnects with jittered backoff (0.2 s
doubling to 10 s) and `Last-Event-ID`, so a reconnect brings what changed meanwhile; while
it is down, each round revalidates the copy with an `If-None-Match` request, so a service
that answers requests but not streams (a proxy that cuts them, say) still keeps the copy
current: every 10 s at worst, or every `max_staleness / 2` when that is shorter.

How current a copy is: while its stream is open it is current (the service sends a line
at least every 15 s, and a stream silent for `SILENT_AFTER` seconds counts as lost);
otherwise it is as old as the last moment the service confirmed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_variants._http import Call, result, segment, send_async
from agent_variants.assignment import assign
from agent_variants.config import CONFIG_FIELDS, ResolvedAgentConfig
from agent_variants.errors import AgentVariantsError, NotFound, Unavailable

log = logging.getLogger("agent_variants")

# The service sends `: keepalive` at least every 15 s; this long without a line, the
# connection is presumed dead (a peer that vanished sends no FIN) and is replaced.
SILENT_AFTER = 20.0
FIRST_DELAY, MAX_DELAY = 0.2, 10.0
_EXTRAS = ("agent_slug", "variant_slug", "source", "experiment_id", "arm")


def to_config(body: dict[str, Any]) -> ResolvedAgentConfig:
    """A `resolved_agent_config` object (with `provenance`) as the dataclass."""
    provenance = body.get("provenance") or {}
    return ResolvedAgentConfig(
        agent_id=body["agent_id"], variant_id=body["variant_id"],
        **{name: body[name] for name in CONFIG_FIELDS},
        **{name: body[name] for name in _EXTRAS if body.get(name) is not None},
        overridden=frozenset(name for name, source in provenance.items() if source != "agent"),
    )


@dataclass
class Freshness:
    """How current an agent's copy is; one per agent, kept across bundle replacements."""

    live: bool = False  # a watch stream is open
    confirmed: float = field(default_factory=time.monotonic)  # when the service last vouched for the copy

    def age(self) -> float:
        return 0.0 if self.live else time.monotonic() - self.confirmed


@dataclass(frozen=True)
class Local:
    """One agent's bundle, ready to answer: the plain config, and the experiment's arms."""

    etag: str
    plain: ResolvedAgentConfig
    freshness: Freshness
    salt: str = ""
    weights: tuple[int, ...] = ()
    arms: tuple[ResolvedAgentConfig, ...] = ()

    @classmethod
    def of(cls, bundle: dict[str, Any], freshness: Freshness) -> Local:
        experiment = bundle.get("experiment")
        if not experiment:
            return cls(bundle["etag"], to_config(bundle["resolved"]), freshness)
        arms = experiment["arms"]
        return cls(bundle["etag"], to_config(bundle["resolved"]), freshness, experiment["salt"],
                   tuple(arm["weight"] for arm in arms), tuple(to_config(arm["resolved"]) for arm in arms))


def answer(local: Local, subject: str | None, max_staleness: float | None) -> ResolvedAgentConfig:
    """What `resolve` returns from a copy: the subject's arm while an experiment runs."""
    if max_staleness is not None and local.freshness.age() > max_staleness:
        raise Unavailable(f"No word from the service for over {max_staleness} s; the local copy may be stale")
    if subject is not None and local.arms:
        return local.arms[assign(local.salt, subject, local.weights)]
    return local.plain


class Bundles:
    """Every agent this client resolves: its copy (`local`, read without awaiting) and its watch."""

    def __init__(self, http: httpx.AsyncClient, *, max_staleness: float | None = None) -> None:
        self._http = http
        # While the stream is down, revalidate often enough that a service which answers
        # requests (but not streams) keeps the copy within max_staleness.
        self._poll_every = max_staleness / 2 if max_staleness else None
        self.local: dict[str, Local] = {}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._first: dict[str, asyncio.Lock] = {}

    async def start(self, agent: str) -> Local:
        """The agent's copy, fetching it and starting its watch on first use."""
        async with self._first.setdefault(agent, asyncio.Lock()):
            local = self.local.get(agent)
            if local is None:
                bundle = await send_async(self._http, Call.of("GET", f"/v1/agents/{segment(agent)}/bundle"))
                local = self.local[agent] = Local.of(bundle, Freshness())
                self._watches[agent] = asyncio.create_task(self._watch(agent), name=f"agent-variants watch {agent}")
            return local

    async def close(self) -> None:
        for task in self._watches.values():
            task.cancel()
        for task in self._watches.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watches.clear()

    def _forget(self, agent: str) -> None:
        """The agent was deleted: drop its copy, so the next `resolve` asks (and says NotFound)."""
        self.local.pop(agent, None)
        self._watches.pop(agent, None)
        self._first.pop(agent, None)

    async def _watch(self, agent: str) -> None:
        delay, complaint = FIRST_DELAY, None
        while True:
            began, failed = time.monotonic(), False
            try:
                await self._stream(agent)
                complaint = None
            except NotFound:
                self._forget(agent)
                return
            except (httpx.HTTPError, AgentVariantsError, ValueError, KeyError) as error:
                failed, complaint = True, self._complain(agent, "watch", error, complaint)
            if time.monotonic() - began > MAX_DELAY:
                delay = FIRST_DELAY  # the stream held a while: this is a new outage, start the backoff over
            if failed:
                try:
                    await self._revalidate(agent)
                except NotFound:
                    self._forget(agent)
                    return
                except (httpx.HTTPError, AgentVariantsError, ValueError, KeyError) as error:
                    complaint = self._complain(agent, "revalidation", error, complaint)
            pause = delay * (0.5 + random.random())
            if failed and self._poll_every is not None:
                pause = min(pause, self._poll_every)
            await asyncio.sleep(pause)
            delay = min(delay * 2, MAX_DELAY)

    @staticmethod
    def _complain(agent: str, what: str, error: Exception, last: str | None) -> str:
        """Log a failure once per kind, not once per retry."""
        kind = type(error).__name__
        if kind != last:
            log.warning("agent-variants: %s of %r failed (%s); serving the last bundle, retrying", what, agent, error)
        return kind

    async def _stream(self, agent: str) -> None:
        """One watch stream, read until it ends; its bundles replace the copy."""
        local = self.local[agent]
        timeout = httpx.Timeout(self._http.timeout.connect, read=SILENT_AFTER)
        request = self._http.build_request("GET", f"/v1/agents/{segment(agent)}/bundle/watch",
                                           headers={"Last-Event-ID": local.etag}, timeout=timeout)
        response = await self._http.send(request, stream=True)
        freshness, heard = local.freshness, time.monotonic()
        try:
            if response.status_code != 200:
                await response.aread()
                result(response, None)  # the typed error of a 4xx/5xx
                raise Unavailable(f"The watch answered {response.status_code}")
            freshness.live = True
            kind, data = "message", None
            async for line in response.aiter_lines():
                heard = time.monotonic()
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "" and data is not None:
                    if kind == "deleted":
                        raise NotFound(f"Agent '{agent}' was deleted", status=404)
                    if kind == "bundle":
                        self.local[agent] = Local.of(json.loads(data), freshness)
                    kind, data = "message", None
            heard = time.monotonic()  # it ended cleanly: current until now
        except httpx.ReadTimeout:
            raise  # silent too long: the copy is only as current as the last line
        except Exception:
            heard = time.monotonic()  # it broke just now: current until now
            raise
        finally:
            if freshness.live:
                freshness.live = False
                freshness.confirmed = heard
            await response.aclose()

    async def _revalidate(self, agent: str) -> None:
        """Ask for the bundle `If-None-Match` the copy: unchanged (304) or the new one."""
        local = self.local[agent]
        call = Call("GET", f"/v1/agents/{segment(agent)}/bundle", headers={"If-None-Match": f'"{local.etag}"'})
        bundle = await send_async(self._http, call)
        if bundle is not None:
            self.local[agent] = Local.of(bundle, local.freshness)
        local.freshness.confirmed = time.monotonic()

