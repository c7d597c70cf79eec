"""Local copies of agents' bundles, kept current by one watch stream per agent.

`Bundles.start(agent)` fetches the bundle and starts the agent's watch task; from then on
`answer(...)` reads memory only. The watch reconnects with jittered backoff (0.2 s
doubling to 10 s) and `Last-Event-ID`, so a reconnect brings what changed meanwhile; while
it is down, each round revalidates the copy with an `If-None-Match` request, so a service
that answers requests but not streams (a proxy that cuts them, say) still keeps the copy
current: every 10 s at worst, or every `max_staleness / 2` when that is shorter.

How current a copy is: as old as the service's last word on it, a line on its stream
(the service sends one at least every 15 s, and a stream silent for `SILENT_AFTER`
seconds is replaced) or an answer to a revalidation. With `max_staleness` set, a copy
whose stream has been quiet for `max_staleness / 2` is revalidated, so a stream that
stays open but carries nothing (a proxy that buffers it, a peer that vanished) cannot
pass a stale copy off as fresh.

After the first fetch, the stream and revalidations name the agent by its id, so a
rename of its slug does not interrupt them. Only the service saying the agent is gone
(`event: deleted`, or a problem+json 404 `resource_missing`) drops the copy; any other
failure, a proxy's HTML 404 included, is an outage, through which the copy is served.
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
from agent_variants.errors import NotFound, Unavailable

log = logging.getLogger("agent_variants")

# The service sends `: keepalive` at least every 15 s; this long without a line, the
# connection is presumed dead (a peer that vanished sends no FIN) and is replaced.
SILENT_AFTER = 20.0
FIRST_DELAY, MAX_DELAY = 0.2, 10.0
_EXTRAS = ("agent_slug", "variant_slug", "source", "experiment_id", "arm", "environment", "rule_id")


def to_config(body: dict[str, Any]) -> ResolvedAgentConfig:
    """A `resolved_agent_config` object (with `provenance`) as the dataclass."""
    provenance = body.get("provenance") or {}
    return ResolvedAgentConfig(
        agent_id=body["agent_id"],
        variant_id=body["variant_id"],
        **{name: body[name] for name in CONFIG_FIELDS},
        **{name: body[name] for name in _EXTRAS if body.get(name) is not None},
        overridden=frozenset(name for name, source in provenance.items() if source != "agent"),
    )


@dataclass
class Freshness:
    """How current an agent's copy is; one per agent, kept across bundle replacements.
    One float, written by the loop's thread and read by any: never seen half-updated."""

    confirmed: float = field(default_factory=time.monotonic)  # when the service last vouched for the copy

    def age(self) -> float:
        return time.monotonic() - self.confirmed


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
        return cls(
            bundle["etag"],
            to_config(bundle["resolved"]),
            freshness,
            experiment["salt"],
            tuple(arm["weight"] for arm in arms),
            tuple(to_config(arm["resolved"]) for arm in arms),
        )


def answer(local: Local, subject: str | None, max_staleness: float | None) -> ResolvedAgentConfig:
    """What `resolve` returns from a copy: the subject's arm while an experiment runs."""
    if max_staleness is not None and local.freshness.age() > max_staleness:
        raise Unavailable(f"No word from the service for over {max_staleness} s; the local copy may be stale")
    if subject is not None and local.arms:
        return local.arms[assign(local.salt, subject, local.weights)]
    return local.plain


class _Gone(Exception):
    """The service says the agent no longer exists."""


def _gone(error: BaseException) -> bool:
    return isinstance(error, _Gone) or (isinstance(error, NotFound) and error.code == "resource_missing")


class Bundles:
    """Every agent this client resolves: its copy (`local`, read without awaiting), its
    watch task, and (with `max_staleness`) the task that revalidates a quiet copy."""

    def __init__(self, http: httpx.AsyncClient, *, max_staleness: float | None = None) -> None:
        self._http = http
        self._poll_every = max_staleness / 2 if max_staleness is not None else None
        self.local: dict[str, Local] = {}
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._first: dict[str, asyncio.Lock] = {}

    async def start(self, agent: str) -> Local:
        """The agent's copy, fetching it and starting its watch on first use."""
        async with self._first.setdefault(agent, asyncio.Lock()):
            local = self.local.get(agent)
            if local is None:
                bundle = await send_async(self._http, Call.of("GET", f"/v1/agents/{segment(agent)}/bundle"))
                local = self.local[agent] = Local.of(bundle, Freshness())
                tasks = [asyncio.create_task(self._watch(agent), name=f"agent-variants watch {agent}")]
                if self._poll_every is not None:
                    tasks.append(asyncio.create_task(self._keep_confirmed(agent), name=f"agent-variants {agent}"))
                self._tasks[agent] = tasks
            return local

    async def close(self) -> None:
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _forget(self, agent: str) -> None:
        """The agent is gone: drop its copy (the next `resolve` asks again, and says
        NotFound) and end its tasks."""
        self.local.pop(agent, None)
        self._first.pop(agent, None)
        for task in self._tasks.pop(agent, []):
            if task is not asyncio.current_task():
                task.cancel()

    async def _watch(self, agent: str) -> None:
        delay, complaint = FIRST_DELAY, None
        while agent in self.local:
            began, failed = time.monotonic(), False
            try:
                await self._stream(agent)
                complaint = None
            except Exception as error:  # whatever it is, the watch goes on (a dead watch would freeze the copy)
                if _gone(error):
                    self._forget(agent)
                    return
                failed, complaint = True, _complain(agent, "watch", error, complaint)
            if time.monotonic() - began > MAX_DELAY:
                delay = FIRST_DELAY  # the stream held a while: this is a new outage, start the backoff over
            if failed and self._poll_every is None:  # with max_staleness, _keep_confirmed revalidates
                try:
                    await self._revalidate(agent)
                except Exception as error:
                    if _gone(error):
                        self._forget(agent)
                        return
                    complaint = _complain(agent, "revalidation", error, complaint)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_DELAY)

    async def _keep_confirmed(self, agent: str) -> None:
        """Revalidate the copy whenever the service has said nothing of it for
        `max_staleness / 2`, backing off while that fails."""
        assert self._poll_every is not None
        failures, complaint = 0, None
        while (local := self.local.get(agent)) is not None:
            due = local.freshness.confirmed + self._poll_every - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            try:
                await self._revalidate(agent)
                failures, complaint = 0, None
            except Exception as error:
                if _gone(error):
                    self._forget(agent)
                    return
                failures, complaint = failures + 1, _complain(agent, "revalidation", error, complaint)
                await asyncio.sleep(min(self._poll_every * 2**failures, MAX_DELAY) * (0.5 + random.random()))

    async def _stream(self, agent: str) -> None:
        """One watch stream, read until it ends; its bundles replace the copy, and each of
        its lines (a keepalive too) vouches for it."""
        local = self.local[agent]
        timeout = httpx.Timeout(self._http.timeout.connect, read=SILENT_AFTER)
        request = self._http.build_request(
            "GET",
            f"/v1/agents/{segment(local.plain.agent_id)}/bundle/watch",
            headers={"Last-Event-ID": local.etag},
            timeout=timeout,
        )
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                result(response, None)  # the typed error of a 4xx/5xx
                raise Unavailable(f"The watch answered {response.status_code}")
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                raise Unavailable(f"The watch answered {response.headers.get('content-type')!r}, not an event stream")
            freshness = local.freshness
            kind, data = "message", None
            async for line in response.aiter_lines():
                freshness.confirmed = time.monotonic()
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "" and data is not None:
                    if kind == "deleted":
                        raise _Gone(agent)
                    if kind == "bundle":
                        self.local[agent] = Local.of(json.loads(data), freshness)
                    kind, data = "message", None
        finally:
            await response.aclose()

    async def _revalidate(self, agent: str) -> None:
        """Ask for the bundle `If-None-Match` the copy: unchanged (304) or the new one."""
        local = self.local[agent]
        asked = time.monotonic()
        request = self._http.build_request(
            "GET", f"/v1/agents/{segment(local.plain.agent_id)}/bundle", headers={"If-None-Match": f'"{local.etag}"'}
        )
        response = await self._http.send(request)
        if response.status_code == 200:
            fresh = Local.of(response.json(), local.freshness)
            # The stream may have brought a newer bundle while this was asked: never go back.
            if self.local.get(agent) is local:
                self.local[agent] = fresh
        elif response.status_code != 304:
            result(response, None)  # the typed error of a 4xx/5xx
            raise Unavailable(f"Revalidation answered {response.status_code}")
        local.freshness.confirmed = max(local.freshness.confirmed, asked)


def _complain(agent: str, what: str, error: Exception, last: str | None) -> str:
    """Log a failure once per kind, not once per retry."""
    kind = type(error).__name__
    if kind != last:
        log.warning("agent-variants: %s of %r failed (%s); serving the last bundle, retrying", what, agent, error)
    return kind
