"""One LISTEN connection per process: other processes' changes drop our cached entries
and make the key ring reload.

While the connection is down the cache is not trusted (nothing is served from it or
stored in it) and keys are checked against the database, since NOTIFYs sent meanwhile
are lost; on reconnecting the cache is cleared and the ring reloaded, then both are
trusted again. Loss is noticed at once when the server closes the connection, and within
`ping_seconds + ping_timeout` (0.8 s) when the network silently drops it or the server stops
answering: inside the 1 s propagation bound, so a process that can no longer hear about
changes (a revoked key included) stops trusting what it holds before the bound runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

import asyncpg

from services.api.db import KEYS_CHANNEL, RESOLUTION_CHANNEL
from services.api.resolution.cache import ResolveCache

if TYPE_CHECKING:
    from services.api.access.keyring import KeyRing
    from services.api.resolution.watch import WatchHub

log = logging.getLogger(__name__)

# pg_stat_activity.application_name of each listener connection, followed by the process id.
APPLICATION_NAME = "agent-variants-listener"


class ResolutionListener:
    def __init__(
        self,
        dsn: str,
        cache: ResolveCache,
        *,
        keys: KeyRing | None = None,
        watches: WatchHub | None = None,
        ping_seconds: float = 0.3,
        ping_timeout: float = 0.5,
        retry_seconds: float = 0.5,
        connect_timeout: float = 5.0,
    ):
        self.dsn = dsn
        self.cache = cache
        self.keys = keys
        self.watches = watches
        self.ping_seconds = ping_seconds
        self.ping_timeout = ping_timeout
        self.retry_seconds = retry_seconds
        # Connecting, and each statement that sets up the LISTEN, give up after this long:
        # a server that stops answering then is retried, not waited for.
        self.connect_timeout = connect_timeout
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None
        self.connects = 0  # LISTENs set up, the first included (for /metrics)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="resolution-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.cache.invalidate({payload})
        if self.watches is not None:
            self.watches.changed({payload})

    def _on_key_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if self.keys is not None:
            self.keys.invalidate({payload})
        if self.watches is not None:
            self.watches.changed_all()  # streams re-check their keys

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                # Named, so operators (and tests) can tell it from pooled connections.
                conn = await asyncpg.connect(
                    self.dsn,
                    server_settings={"application_name": f"{APPLICATION_NAME} {os.getpid()}"},
                    timeout=self.connect_timeout,
                    command_timeout=self.connect_timeout,
                )
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(RESOLUTION_CHANNEL, self._on_notify)
                await conn.add_listener(KEYS_CHANNEL, self._on_key_notify)
                self.backend_pid = conn.get_server_pid()
                # Listening now: whatever happened before is unknown, so start empty.
                self.cache.clear()
                self.cache.trusted = True
                if self.keys is not None:
                    self.keys.invalidate()  # the next check reloads the ring
                    self.keys.listening = True
                if self.watches is not None:
                    self.watches.changed_all()  # what happened while deaf is unknown: re-read
                self.connected.set()
                self.connects += 1
                log.info("listening for resolution changes (backend pid %s)", self.backend_pid)
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), timeout=self.ping_seconds)
                    except TimeoutError:
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=self.ping_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure means: reconnect
                log.warning("resolution listener failed: %s", error)
            finally:
                self.connected.clear()
                self.cache.trusted = False
                if self.keys is not None:
                    self.keys.listening = False
                if self.watches is not None:
                    self.watches.changed_all()  # streams switch to polling until we are back
                self.cache.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            log.warning("resolution listener lost its connection; cache suspended until it reconnects")
            await asyncio.sleep(self.retry_seconds)
