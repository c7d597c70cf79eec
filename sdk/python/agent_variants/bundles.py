"""Local copies of agents' bundles, kept current by one watch stream per agent and environment.

`Bundles.start(agent, environment)` fetches the bundle (`GET .../bundle?environment=`, the
parameter left out for `None`: the service's default, the key's environment or production)
and starts its watch task; from then on `answer(...)` reads memory only. Each (agent,
environment) pair has its own copy and watch; `None` is a pair of its own.

`answer` resolves as the contract's "Resolution order" says (1.1): the first targeting rule
whose conditions all hold (`first_match`, the service's own function) on the attributes
plus, with a subject, the attribute `subject`; else, with a subject, the running or paused
split's arm (`assign` over the arms' weights, or `rollout_arm` at a rollout's percent);
else the bundle's `resolved`. A v1 bundle (no `rules`, no `environment`) has no rules.

The watch reconnects with jittered backoff (0.2 s doubling to 10 s) and `Last-Event-ID`,
so a reconnect brings what changed meanwhile; while it is down, each round revalidates the
copy with an `If-None-Match` request, so a service that answers requests but not streams
(a proxy that cuts them, say) still keeps the copy current: every 10 s at worst, or every
`max_staleness / 2` when that is shorter.

How current a copy is: as old as the service's last word on it, a line on its stream
(the service sends one at least every 15 s, and a stream silent for `SILENT_AFTER`
seconds is replaced) or an answer to a revalidation. With `max_staleness` set, a copy
whose stream has been quiet for `max_staleness / 2` is revalidated, so a stream that
stays open but carries nothing (a proxy that buffers it, a peer that vanished) cannot
pass a stale copy off as fresh.

After the first fetch, the stream and revalidations name the agent by its id, so a
rename of its slug does not interrupt them (and the environment as the caller named it).
Only the service saying the agent is gone (`event: deleted`, or a problem+json 404
`resource_missing`) drops the copy; any other failure, a proxy's HTML 404 included, is an
outage, through which the copy is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import httpx

from agent_variants._http import Call, result, segment, send_async
from agent_variants.assignment import assign, rollout_arm
from agent_variants.config import CONFIG_FIELDS, KEYED_FIELDS, ResolvedAgentConfig
from agent_variants.errors import NotFound, Unavailable, ValidationFailed
from agent_variants.rules import Scalar, attribute_errors, first_match

log = logging.getLogger("agent_variants")

# The service sends `: keepalive` at least every 15 s; this long without a line, the
# connection is presumed dead (a peer that vanished sends no FIN) and is replaced.
SILENT_AFTER = 20.0
FIRST_DELAY, MAX_DELAY = 0.2, 10.0
_EXTRAS = ("agent_slug", "variant_slug", "source", "experiment_id", "arm", "environment", "rule_id")
# The statuses in which a split serves its arms (the others end it, or have not begun it).
SERVING = frozenset({"running", "paused"})

Key: TypeAlias = tuple[str, str | None]
"""A copy's key: the agent as the caller names it, and the environment (None: the service's default)."""


def to_config(body: dict[str, Any]) -> ResolvedAgentConfig:
    """A `resolved_agent_config` object (with `provenance`) as the dataclass."""
    provenance = body.get("provenance") or {}
    # A service before contract 1.1 sends no keyed fields: they are empty.
    keyed: dict[str, Any] = {name: body.get(name) or {} for name in KEYED_FIELDS}
    return ResolvedAgentConfig(
        agent_id=body["agent_id"],
        variant_id=body["variant_id"],
        **{name: body[name] for name in CONFIG_FIELDS},
        **keyed,
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
class Split:
    """The bundle's running (or paused) experiment or rollout: each arm's config, ready to serve."""

    salt: str
    weights: tuple[int, ...]
    arms: tuple[ResolvedAgentConfig, ...]
    # A rollout's step percent: arm 0 owns buckets [0, 10000 - 100p), arm 1 the rest.
    # None (an experiment, or a rollout whose bundle gives no percent): the arms' weights.
    percent: int | None = None

    def arm(self, subject: str) -> ResolvedAgentConfig:
        if self.percent is not None:
            return self.arms[rollout_arm(self.salt, subject, self.percent)]
        return self.arms[assign(self.salt, subject, self.weights)]

    @classmethod
    def of(cls, experiment: Mapping[str, Any], environment: str | None) -> Split | None:
        """The split a bundle's `experiment` serves, or None when it serves nothing (a
        status that is neither running nor paused; a v1 bundle has none: it runs)."""
        if experiment.get("status", "running") not in SERVING:
            return None
        kind = experiment.get("kind", "experiment")
        source = "rollout" if kind == "rollout" else "experiment"
        arms = experiment["arms"]
        configs = tuple(
            _served(
                to_config(arm["resolved"]),
                environment,
                source=source,
                experiment_id=experiment["id"],
                arm=arm.get("arm", index),
                rule_id=None,
            )
            for index, arm in enumerate(arms)
        )
        percent = _percent(experiment) if kind == "rollout" and len(arms) == 2 else None
        weights = tuple(arm.get("weight", 0) for arm in arms)
        if percent is None and sum(weights) <= 0:
            log.warning("agent-variants: split %s gives neither a percent nor weights; not served", experiment["id"])
            return None
        return cls(experiment["salt"], weights, configs, percent)


def _percent(experiment: Mapping[str, Any]) -> int | None:
    """A rollout's current percent, where the bundle gives one (`percent`, or `progress.percent`)."""
    percent = experiment.get("percent")
    if percent is None:
        progress = experiment.get("progress")
        percent = progress.get("percent") if isinstance(progress, Mapping) else None
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        return None  # none given (or one this SDK cannot read): the arms' weights decide
    return percent


def _served(config: ResolvedAgentConfig, environment: str | None, **how: Any) -> ResolvedAgentConfig:
    """`config` as served: in the bundle's environment, by what served it (`how`)."""
    if environment is not None:
        how["environment"] = environment
    if all(getattr(config, name) == value for name, value in how.items()):
        return config
    return replace(config, **how)


@dataclass(frozen=True)
class Local:
    """One bundle (an agent in one environment), ready to answer: the plain config, the
    rules (each with its served config under `resolved`), and the split's arms."""

    etag: str
    plain: ResolvedAgentConfig
    freshness: Freshness
    environment: str | None = None
    rules: tuple[dict[str, Any], ...] = ()
    split: Split | None = None

    @classmethod
    def of(cls, bundle: dict[str, Any], freshness: Freshness) -> Local:
        environment = bundle.get("environment")
        experiment = bundle.get("experiment")
        rules = tuple(
            {
                **rule,
                "resolved": _served(
                    to_config(rule["resolved"]),
                    environment,
                    source="rule",
                    rule_id=rule["id"],
                    experiment_id=None,
                    arm=None,
                ),
            }
            for rule in bundle.get("rules") or ()
        )
        return cls(
            bundle["etag"],
            _served(to_config(bundle["resolved"]), environment),
            freshness,
            environment,
            rules,
            Split.of(experiment, environment) if experiment else None,
        )


def check_attributes(attributes: Mapping[str, Scalar] | None) -> None:
    """Raise `ValidationFailed` (naming every bad attribute) for attributes the service
    would refuse with a 422."""
    errors = attribute_errors(attributes)
    if errors:
        detail = "Invalid attributes: " + "; ".join(f"{e['param']}: {e['message']}" for e in errors)
        problem = {"title": "Invalid request", "status": 422, "detail": detail, "code": "validation_error"}
        raise ValidationFailed(detail, status=422, problem={**problem, "errors": errors})


def resolve_locally(
    local: Local, subject: str | None = None, attributes: Mapping[str, Scalar] | None = None
) -> ResolvedAgentConfig:
    """What the service would answer from this bundle, in the contract's resolution order:
    the first rule that holds, else (with a subject) the split's arm, else the bundle's config."""
    if local.rules:
        rule = first_match(local.rules, subject=subject, attributes=attributes)
        if rule is not None:
            served: ResolvedAgentConfig = rule["resolved"]
            return served
    if subject is not None and local.split is not None:
        return local.split.arm(subject)
    return local.plain


def answer(
    local: Local,
    subject: str | None,
    max_staleness: float | None,
    attributes: Mapping[str, Scalar] | None = None,
) -> ResolvedAgentConfig:
    """What `resolve` returns from a copy (checked for staleness, its attributes validated)."""
    if attributes:
        check_attributes(attributes)
    if max_staleness is not None and local.freshness.age() > max_staleness:
        raise Unavailable(f"No word from the service for over {max_staleness} s; the local copy may be stale")
    return resolve_locally(local, subject, attributes)


class _Gone(Exception):
    """The service says the agent no longer exists."""


def _gone(error: BaseException) -> bool:
    return isinstance(error, _Gone) or (isinstance(error, NotFound) and error.code == "resource_missing")


class Bundles:
    """Every (agent, environment) this client resolves: its copy (`local`, read without
    awaiting), its watch task, and (with `max_staleness`) the task that revalidates a quiet copy."""

    def __init__(self, http: httpx.AsyncClient, *, max_staleness: float | None = None) -> None:
        self._http = http
        self._poll_every = max_staleness / 2 if max_staleness is not None else None
        self.local: dict[Key, Local] = {}
        self._tasks: dict[Key, list[asyncio.Task[None]]] = {}
        self._first: dict[Key, asyncio.Lock] = {}

    async def start(self, agent: str, environment: str | None = None) -> Local:
        """The agent's copy in `environment` (None: the service's default), fetching it and
        starting its watch on first use."""
        key = (agent, environment)
        async with self._first.setdefault(key, asyncio.Lock()):
            local = self.local.get(key)
            if local is None:
                call = Call.of("GET", f"/v1/agents/{segment(agent)}/bundle", params=_params(environment))
                bundle = await send_async(self._http, call)
                local = self.local[key] = Local.of(bundle, Freshness())
                name = f"{agent} in {environment}" if environment is not None else agent
                tasks = [asyncio.create_task(self._watch(key), name=f"agent-variants watch {name}")]
                if self._poll_every is not None:
                    tasks.append(asyncio.create_task(self._keep_confirmed(key), name=f"agent-variants {name}"))
                self._tasks[key] = tasks
            return local

    async def close(self) -> None:
        tasks = [task for tasks in self._tasks.values() for task in tasks]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _forget(self, key: Key) -> None:
        """The agent is gone: drop its copy (the next `resolve` asks again, and says
        NotFound) and end its tasks."""
        self.local.pop(key, None)
        self._first.pop(key, None)
        for task in self._tasks.pop(key, []):
            if task is not asyncio.current_task():
                task.cancel()

    async def _watch(self, key: Key) -> None:
        delay, complaint = FIRST_DELAY, None
        while key in self.local:
            began, failed = time.monotonic(), False
            try:
                await self._stream(key)
                complaint = None
            except Exception as error:  # whatever it is, the watch goes on (a dead watch would freeze the copy)
                if _gone(error):
                    self._forget(key)
                    return
                failed, complaint = True, _complain(key, "watch", error, complaint)
            if time.monotonic() - began > MAX_DELAY:
                delay = FIRST_DELAY  # the stream held a while: this is a new outage, start the backoff over
            if failed and self._poll_every is None:  # with max_staleness, _keep_confirmed revalidates
                try:
                    await self._revalidate(key)
                except Exception as error:
                    if _gone(error):
                        self._forget(key)
                        return
                    complaint = _complain(key, "revalidation", error, complaint)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, MAX_DELAY)

    async def _keep_confirmed(self, key: Key) -> None:
        """Revalidate the copy whenever the service has said nothing of it for
        `max_staleness / 2`, backing off while that fails."""
        assert self._poll_every is not None
        failures, complaint = 0, None
        while (local := self.local.get(key)) is not None:
            due = local.freshness.confirmed + self._poll_every - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            try:
                await self._revalidate(key)
                failures, complaint = 0, None
            except Exception as error:
                if _gone(error):
                    self._forget(key)
                    return
                failures, complaint = failures + 1, _complain(key, "revalidation", error, complaint)
                await asyncio.sleep(min(self._poll_every * 2**failures, MAX_DELAY) * (0.5 + random.random()))

    async def _stream(self, key: Key) -> None:
        """One watch stream, read until it ends; its bundles replace the copy, and each of
        its lines (a keepalive too) vouches for it."""
        local = self.local[key]
        timeout = httpx.Timeout(self._http.timeout.connect, read=SILENT_AFTER)
        request = self._http.build_request(
            "GET",
            f"/v1/agents/{segment(local.plain.agent_id)}/bundle/watch",
            params=_params(key[1]),
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
                        raise _Gone(key[0])
                    if kind == "bundle":
                        self.local[key] = Local.of(json.loads(data), freshness)
                    kind, data = "message", None
        finally:
            await response.aclose()

    async def _revalidate(self, key: Key) -> None:
        """Ask for the bundle `If-None-Match` the copy: unchanged (304) or the new one."""
        local = self.local[key]
        asked = time.monotonic()
        request = self._http.build_request(
            "GET",
            f"/v1/agents/{segment(local.plain.agent_id)}/bundle",
            params=_params(key[1]),
            headers={"If-None-Match": f'"{local.etag}"'},
        )
        response = await self._http.send(request)
        if response.status_code == 200:
            fresh = Local.of(response.json(), local.freshness)
            # The stream may have brought a newer bundle while this was asked: never go back.
            if self.local.get(key) is local:
                self.local[key] = fresh
        elif response.status_code != 304:
            result(response, None)  # the typed error of a 4xx/5xx
            raise Unavailable(f"Revalidation answered {response.status_code}")
        local.freshness.confirmed = max(local.freshness.confirmed, asked)


def _params(environment: str | None) -> dict[str, str] | None:
    """The query naming the environment; none for None (the service's default)."""
    return None if environment is None else {"environment": environment}


def _complain(key: Key, what: str, error: Exception, last: str | None) -> str:
    """Log a failure once per kind, not once per retry."""
    kind = type(error).__name__
    if kind != last:
        agent, environment = key
        where = f"{agent!r} in {environment!r}" if environment is not None else repr(agent)
        log.warning("agent-variants: %s of %s failed (%s); serving the last bundle, retrying", what, where, error)
    return kind
