"""`report()`: outcomes buffered in memory and sent in batches, never blocking the agent.

`OutcomeBuffer.add` is all an agent's `report` costs: a check of the field names and an
append under a lock (it is called from any thread). When the buffer is full, the outcome
is dropped and counted, never waited for. `Sender` drains the buffer at least every
second (at once when an agent has a full batch waiting), in batches of up to 1,000 per
agent. Each batch gets its own `Idempotency-Key`, kept across its retries, so a batch
whose answer was lost is stored once, not twice. A batch the service refuses naming some
of its items (422 invalid, 404 for an `experiment_id` it does not know) is sent again
without them; those are counted as rejected. An outcome carries the `environment` its
config was resolved in (contract 1.1); a service that predates environments refuses that
field (422 naming only `data[i].environment`, an unknown field), and the batch is sent again
without it; one that knows it refuses an environment it does not have, and those items are
rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import logging
import math
import numbers
import random
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_variants._http import Call, new_idempotency_key, segment, send_async
from agent_variants.config import ResolvedAgentConfig
from agent_variants.errors import AgentVariantsError, NotFound, RateLimited, Unavailable, ValidationFailed

log = logging.getLogger("agent_variants")

BATCH = 1000  # the service's largest batch
EVERY = 1.0  # seconds: the longest an outcome waits in the buffer while the service answers
CAPACITY = 100_000
FIELDS = frozenset(
    {
        "variant_id",
        "experiment_id",
        "environment",
        "subject",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "cost_usd",
        "success",
        "score",
    }
)
RETRY_FIRST, RETRY_MAX = 0.2, 10.0
_ITEM = re.compile(r"^data\[(\d+)\]")


_COUNTS = frozenset({"input_tokens", "output_tokens"})
_NUMBERS = frozenset({"latency_ms", "cost_usd", "score"})


def _as_json(name: str, value: Any) -> Any:
    """A field's value as JSON can carry it, or the error at the call site: a value that
    cannot be sent must never reach the buffer (it would be refused with its whole batch)."""
    if name in _COUNTS:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"report(): {name} must be an int, not {type(value).__name__}")
        return int(value)
    if name in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, decimal.Decimal)):
            raise TypeError(f"report(): {name} must be a number, not {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"report(): {name} must be finite, not {number}")
        return number
    if name == "success":
        if not isinstance(value, bool):
            raise TypeError(f"report(): success must be a bool, not {type(value).__name__}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"report(): {name} must be a str, not {type(value).__name__}")
    return value


def outcome_of(config: ResolvedAgentConfig | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The outcome's JSON: `config` (what the run resolved) fills `variant_id`,
    `experiment_id` and `environment` (contract 1.1: where it was resolved); `fields` are
    the contract's outcome fields. Names and types are checked here (a `TypeError` or
    `ValueError` for the caller); ranges by the service."""
    unknown = fields.keys() - FIELDS
    if unknown:
        raise TypeError(
            f"report() got unknown outcome fields: {', '.join(sorted(unknown))} (known: {', '.join(sorted(FIELDS))})"
        )
    outcome = {name: _as_json(name, value) for name, value in fields.items() if value is not None}
    if config is not None:
        outcome.setdefault("variant_id", config.variant_id)
        if config.experiment_id is not None:
            outcome.setdefault("experiment_id", config.experiment_id)
        if config.environment is not None:
            outcome.setdefault("environment", config.environment)
    if "variant_id" not in outcome:
        outcome["variant_id"] = None  # the base config served it
    return outcome


@dataclass(frozen=True)
class ReportStats:
    """What became of the outcomes given to `report()` so far."""

    sent: int  # stored by the service
    pending: int  # buffered or in flight
    dropped: int  # refused because the buffer was full, or left unsent at close
    rejected: int  # refused by the service (invalid, or for an unknown agent)


class OutcomeBuffer:
    """A bounded, thread-safe buffer of (agent, outcome) that drops (and counts) when full."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._items: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self.capacity = capacity
        self.dropped = 0
        self.sent = 0
        self.rejected = 0
        self.in_flight = 0
        # Called (from the adding thread) when a full batch is waiting: wakes the sender.
        self.on_full: Callable[[], None] | None = None
        self.closed = False

    def close(self) -> None:
        """No more outcomes: `add` raises from now on (checked under the lock, so an outcome
        reported while the client closes is either sent by the close or refused, never stranded)."""
        with self._lock:
            self.closed = True

    def add(self, agent: str, outcome: dict[str, Any]) -> bool:
        with self._lock:
            if self.closed:
                raise RuntimeError("report() on a closed client")
            if len(self._items) >= self.capacity:
                self.dropped += 1
                return False
            self._items.append((agent, outcome))
            full = len(self._items) % BATCH == 0
        if full and self.on_full is not None:
            self.on_full()
        return True

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        """Everything buffered; it counts as pending until `settle` says what became of it."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self.in_flight += len(items)
            return items

    def settle(self, *, sent: int = 0, rejected: int = 0, dropped: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.rejected += rejected
            self.dropped += dropped
            self.in_flight -= sent + rejected + dropped

    def stats(self) -> ReportStats:
        with self._lock:
            return ReportStats(self.sent, len(self._items) + self.in_flight, self.dropped, self.rejected)


@dataclass
class Batch:
    """Up to 1,000 outcomes of one agent, and the idempotency key every attempt sends."""

    agent: str
    items: list[dict[str, Any]]
    key: str = field(default_factory=new_idempotency_key)


class Sender:
    """Drains an `OutcomeBuffer` into `POST .../outcomes` batches, on the client's event loop."""

    def __init__(self, http: httpx.AsyncClient, buffer: OutcomeBuffer) -> None:
        self._http = http
        self._buffer = buffer
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches: deque[Batch] = deque()
        self._sending = asyncio.Lock()  # one flush at a time, so flush() also waits for the one under way
        loop = asyncio.get_running_loop()

        def wake() -> None:  # called from whichever thread reported
            loop.call_soon_threadsafe(self._wake.set)

        buffer.on_full = wake

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="agent-variants outcomes")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), EVERY)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a bug must not end reporting for the life of the process
                log.exception("agent-variants: sending outcomes failed; retrying")
                await asyncio.sleep(RETRY_MAX)

    async def flush(self) -> None:
        """Send everything reported so far, each batch until it is stored or refused for good.

        Cancelled (a timeout), the batch being sent stays first in line with its key, so
        its next attempt cannot store it twice."""
        async with self._sending:
            by_agent: dict[str, list[dict[str, Any]]] = {}
            for agent, outcome in self._buffer.take():
                by_agent.setdefault(agent, []).append(outcome)
            for agent, outcomes in by_agent.items():
                self._batches.extend(Batch(agent, outcomes[i : i + BATCH]) for i in range(0, len(outcomes), BATCH))
            while self._batches:
                await self._deliver(self._batches[0])
                self._batches.popleft()

    async def close(self, timeout: float) -> None:
        """Send what is left (for up to `timeout` seconds); what is still unsent then is
        counted as dropped (a batch cut off mid-flight may have been stored all the same)."""
        self._buffer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            pass
        self._buffer.take()  # anything reported meanwhile joins what is pending
        unsent = self._buffer.stats().pending
        if unsent:
            log.warning("agent-variants: %d outcome(s) still unsent after %s s at close were dropped", unsent, timeout)
            self._buffer.settle(dropped=unsent)
        self._batches.clear()

    async def _deliver(self, batch: Batch) -> None:
        """One batch, retried with its key until stored; items the service names as invalid
        (or as naming an unknown experiment) are taken out (and counted), and the rest sent
        under a new key. An outage is waited out; a refusal that no retry will change is
        counted as rejected, so one bad batch never holds up the others."""
        delay, attempts = RETRY_FIRST, 0
        while batch.items:
            attempts += 1
            call = Call.of(
                "POST",
                f"/v1/agents/{segment(batch.agent)}/outcomes",
                json={"data": batch.items},
                idempotency_key=batch.key,
            )
            try:
                await send_async(self._http, call)
            except AgentVariantsError as error:
                if _environment_refused(error) and any("environment" in item for item in batch.items):
                    # A service older than contract 1.1 takes no `environment`: send the
                    # outcomes without it (they still count), under a new key (a new body).
                    batch.items = [{k: v for k, v in item.items() if k != "environment"} for item in batch.items]
                    batch.key = new_idempotency_key()
                    continue
                named = _named_items(error, len(batch.items))
                if named:  # a 422, or a 404 naming items (an unknown experiment): take them out
                    self._reject(batch.agent, len(named), error)
                    batch.items = [item for i, item in enumerate(batch.items) if i not in named]
                    batch.key = new_idempotency_key()  # another body needs another key
                    continue
                wait = _retry_in(error, attempts, delay)
                if wait is None:
                    self._reject(batch.agent, len(batch.items), error)
                    return
                await asyncio.sleep(wait)
                delay = min(delay * 2, RETRY_MAX)
            except Exception as error:  # cannot even be sent (a bug): refuse it rather than retry it forever
                self._reject(batch.agent, len(batch.items), Unavailable(repr(error)))
                return
            else:
                self._buffer.settle(sent=len(batch.items))
                return

    def _reject(self, agent: str, count: int, error: AgentVariantsError) -> None:
        """Count `count` outcomes as refused for good, and say why."""
        log.warning(
            "agent-variants: the service refused %d outcome(s) of %r: %s %s",
            count,
            agent,
            error,
            error.problem.get("errors") or "",
        )
        self._buffer.settle(rejected=count)


def _named_items(error: AgentVariantsError, size: int) -> set[int]:
    """The batch items a 422 or 404 names (`data[3].input_tokens`): the ones to take out."""
    if not isinstance(error, (ValidationFailed, NotFound)):
        return set()
    named = error.problem.get("errors") or []
    return {int(m.group(1)) for e in named if (m := _ITEM.match(str(e.get("param", ""))))} & set(range(size))


# What a service says of a field it does not take: its own words ("Unknown field"), or
# pydantic's where a proxy or an older build passes them through.
_UNKNOWN_FIELD = ("unknown field", "extra inputs are not permitted")


def _environment_refused(error: AgentVariantsError) -> bool:
    """Whether a 422 names nothing but outcomes' `environment` (`data[3].environment`) as a
    field it does not know: what a service that predates environments says. A service that
    knows the field names it too when the environment does not exist (deleted since the
    config was resolved, say); those items are refused like any invalid one, not sent
    again without it, which would store them in another environment."""
    if not isinstance(error, ValidationFailed):
        return False
    named = error.problem.get("errors") or []
    return bool(named) and all(
        _ITEM.match(str(e.get("param", "")))
        and str(e.get("param", "")).endswith("].environment")
        and str(e.get("message", "")).lower().startswith(_UNKNOWN_FIELD)
        for e in named
    )


# A server error that is not an outage (a 500: a bug) is tried this many times, then refused.
SERVER_ERROR_ATTEMPTS = 5


def _retry_in(error: AgentVariantsError, attempts: int, delay: float) -> float | None:
    """Seconds to wait before sending a batch again, or None: it will never pass."""
    pause = delay * (0.5 + random.random())
    if isinstance(error, RateLimited):
        return max(error.retry_after or 0.0, pause)
    if error.status is None or error.status in (408, 502, 503, 504):
        return pause  # the service is away: wait it out (the buffer bounds what waits)
    if error.status == 409 and error.code == "idempotency_key_in_use":
        return pause  # our own earlier attempt is still running
    if isinstance(error, NotFound) and error.code != "resource_missing":
        return pause  # not the service's 404 (a proxy's, during a deploy): an outage
    if error.status >= 500 and attempts < SERVER_ERROR_ATTEMPTS:
        return pause
    return None  # a revoked key, an unknown agent, a server bug that persists: refused for good
