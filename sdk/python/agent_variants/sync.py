"""`AgentVariants`: the SDK for ordinary (blocking) programs, with `AsyncAgentVariants`'s methods.

    with AgentVariants("http://config:8000", api_key="avk_...") as client:
        config = client.resolve("support-bot", subject="user-42")
        ...  # run the agent
        client.report("support-bot", config=config, input_tokens=812, output_tokens=164, latency_ms=1930)

The watches and the outcome sender are the async client's own code, run on an event loop
in one daemon thread that starts with the first `resolve` or `report`. `resolve` reads the
copies that thread keeps current straight from memory (no hop to the thread, no lock), and
`report` appends to a thread-safe buffer, so both are as cheap as in the async client and
safe to call from any thread. Admin calls are plain blocking requests in the caller's thread.
At interpreter exit a client that was not closed still flushes its outcomes.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures.thread  # noqa: F401  (imported now: see _close_at_exit below)
import logging
import os
import threading
import weakref
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import httpx

from agent_variants._http import Call, send
from agent_variants.admin import JSON, Agents, Environments, Experiments, Keys, Rules, Variants
from agent_variants.bundles import Bundles, Local, answer
from agent_variants.client import CLOSE_TIMEOUT, http_options, wind_down
from agent_variants.config import ResolvedAgentConfig
from agent_variants.errors import Unavailable
from agent_variants.outcomes import CAPACITY, OutcomeBuffer, ReportStats, Sender, outcome_of
from agent_variants.rules import Scalar

T = TypeVar("T")


class _Transport:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def obj(self, call: Call) -> JSON:
        return send(self.http, call)  # type: ignore[no-any-return]

    def nil(self, call: Call) -> None:
        send(self.http, call)


class _Background:
    """An event loop in a daemon thread, holding the watches and the outcome sender."""

    def __init__(self, options: dict[str, Any], outcomes: OutcomeBuffer, max_staleness: float | None) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="agent-variants", daemon=True)
        self._thread.start()
        self._stopped = False

        async def setup() -> tuple[httpx.AsyncClient, Bundles, Sender]:
            http = httpx.AsyncClient(**options)
            sender = Sender(http, outcomes)
            sender.start()
            return http, Bundles(http, max_staleness=max_staleness), sender

        self.http, self.bundles, self.sender = self.run(setup())

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and wait for it (at most `timeout` seconds)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, timeout: float) -> None:
        """Flush, end the watches, stop the thread. Runs once (at `close`, or at exit)."""
        if self._stopped:
            return
        self._stopped = True

        closing = wind_down(self.sender, self.bundles, self.http, timeout)
        if threading.current_thread() is self._thread:
            # Collected on the loop's own thread (a cycle freed there): it cannot wait for itself.
            self.loop.create_task(closing)
            return
        try:
            self.run(closing, timeout + 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self.loop.close()


class AgentVariants:
    """The SDK for blocking programs; thread-safe. See the module's docstring."""

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
        self._options = http_options(base_url, api_key, timeout, actor)
        self._timeout = timeout
        self._http = httpx.Client(**self._options)
        self._max_staleness = max_staleness
        self._outcomes = OutcomeBuffer(buffer_capacity)
        self._background: _Background | None = None
        self._starting = threading.Lock()
        self._finalizer: weakref.finalize[[float], AgentVariants] | None = None
        self._closed = False
        self._transport = _Transport(self._http)
        self.agents = Agents(self._transport)
        self.variants = Variants(self._transport)
        self.experiments = Experiments(self._transport)
        self.keys = Keys(self._transport)
        self.environments = Environments(self._transport)
        self.rules = Rules(self._transport)
        _CLIENTS.add(self)

    def _after_fork_in_child(self) -> None:
        """A forked child (a pre-forking server's worker) has no background thread: it starts
        its own on first use, with its own connections and an empty buffer (the parent sends
        what it had reported)."""
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._background = None
        self._starting = threading.Lock()
        self._outcomes = OutcomeBuffer(self._outcomes.capacity)
        self._http = self._transport.http = httpx.Client(**self._options)

    def __enter__(self) -> AgentVariants:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _started(self) -> _Background:
        background = self._background
        if background is not None and not self._closed:
            return background
        with self._starting:
            if self._closed:
                raise RuntimeError("the client is closed")
            if self._background is None:
                self._background = _Background(self._options, self._outcomes, self._max_staleness)
                # When the client is collected, the outcomes still go out (at exit, see below).
                self._finalizer = weakref.finalize(self, self._background.stop, CLOSE_TIMEOUT)
                self._finalizer.atexit = False
            return self._background

    def resolve(
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

        config = client.resolve("support-bot", "user-42", attributes={"plan": "pro"}, environment="staging")

        Attributes the service would refuse raise `ValidationFailed` naming each of them.
        """
        background = self._background or self._started()
        local: Local | None = background.bundles.local.get((agent, environment))
        if local is None:
            # The first call for this agent and environment: fetch its bundle and start its watch.
            wait = None if self._timeout is None else self._timeout * 5  # its retries included
            try:
                local = background.run(background.bundles.start(agent, environment), wait)
            except TimeoutError as error:
                raise Unavailable(f"The service did not answer within {wait} s") from error
        return answer(local, subject, self._max_staleness, attributes)

    def report(self, agent: str, *, config: ResolvedAgentConfig | None = None, **outcome: Any) -> None:
        """Buffer one outcome (sent within a second while the service answers); never waits for it.

        client.report("support-bot", config=config, input_tokens=812, output_tokens=164, latency_ms=1930)
        """
        self._started()
        self._outcomes.add(agent, outcome_of(config, outcome))

    def flush(self, timeout: float | None = None) -> ReportStats:
        """Send every outcome reported so far (waiting at most `timeout` seconds, if set).

        stats = client.flush(timeout=5)   # ReportStats(sent=..., pending=0, dropped=0, rejected=0)
        """
        background = self._background
        if background is not None:
            future = asyncio.run_coroutine_threadsafe(background.sender.flush(), background.loop)
            try:
                future.result(timeout)
            except TimeoutError:
                future.cancel()  # what is unsent stays pending, and goes out later under the same keys
        return self._outcomes.stats()

    def report_stats(self) -> ReportStats:
        """How many outcomes were sent, are pending, were dropped (buffer full) or rejected.

        if client.report_stats().dropped: ...   # the buffer overflowed: report less, or raise buffer_capacity
        """
        return self._outcomes.stats()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Flush the outcomes (for up to `timeout` seconds), end the watches, close connections.

        client.close()   # or use the client as a context manager
        """
        with self._starting:
            if self._closed:
                return
            self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._background is not None:
            self._background.stop(timeout)
            self._background = None  # from now on resolve() and report() say the client is closed
        self._http.close()


# Every live sync client, so a fork's child can give each its own background thread.
_CLIENTS: weakref.WeakSet[AgentVariants] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork_in_child()


def _close_at_exit() -> None:
    """Flush every client left open when the program ends."""
    for client in list(_CLIENTS):
        try:
            client.close()
        except Exception:  # one client's failure must not keep the others' outcomes from going out
            logging.getLogger("agent_variants").exception("agent-variants: closing a client at exit failed")


os.register_at_fork(after_in_child=_after_fork_in_child)
# The exit flush must run before the interpreter stops its threads' machinery: an atexit
# handler runs after, when asyncio can no longer resolve a host name (its executor is
# gone), so a URL like http://config:8000 would never be reached. `threading` runs these
# hooks first, in reverse order of registration, so this one comes before the executors'
# own. concurrent.futures.thread registers its hook when imported, and asyncio imports it
# lazily, at its first executor, which during shutdown fails ("can't register atexit
# after shutdown"): hence the import at the top. It is how concurrent.futures itself
# cleans up at exit; where the hook is missing, atexit is the fallback.
getattr(threading, "_register_atexit", atexit.register)(_close_at_exit)
