"""Verified API keys, held in memory so checking a key costs no database round trip.

The ring holds every key (revoked ones too, to say why a key is refused), indexed by the
first 8 bytes of the SHA-256 of its secret; the whole 32-byte digest is then compared in
constant time. It is trusted only while it is `fresh`:

- a create or revoke anywhere NOTIFYs `KEYS_CHANNEL`; the process listener (and, for this
  process's own commits, the database's on-commit hook) calls `invalidate`, and requests
  wait for one shared reload instead of using what may be stale;
- while the listener is down, NOTIFYs may be lost, so each request asks the database
  (`listening` False), until the listener is back and the ring reloaded. Checks of one key
  that arrive while its read runs share that read (`_read`): the watch streams a dropped
  listener wakes cost one query per key, not one per stream.

Each key is held with the environment it is bound to (its id and slug, read with a join:
`keys.repository.every`, `by_digest`), so that the default environment of its requests, and
the refusal of any other (`principal.request_environment`), cost no query either.

Uses are noted in memory and written to `last_used_at` every few seconds (`flush_usage`),
not on every request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.api.db import Database
from services.api.keys import repository
from services.api.principal import Principal

log = logging.getLogger(__name__)


class KeyRefused(Exception):
    """Why a secret does not authenticate (the 401's detail)."""


def _index(digest: bytes) -> bytes:
    return digest[:8]


class KeyRing:
    def __init__(self, database: Callable[[], Database], *, listening: bool) -> None:
        self._database = database  # the app's, made in the lifespan
        # False while the process listener is down: then every check asks the database.
        self.listening = listening
        self.fresh = False
        self._by_index: dict[bytes, tuple[Principal, ...]] = {}
        self._generation = 0
        self._reload: asyncio.Task[None] | None = None
        # Per digest, the database read running now and the generation it began in.
        self._reads: dict[bytes, tuple[int, asyncio.Future[Principal | None]]] = {}
        self._used: dict[str, float] = {}

    # --- verifying ---------------------------------------------------------------------

    def verify_now(self, secret: bytes) -> Principal | None:
        """The hot path: the live key this secret belongs to, from memory. None when the
        ring cannot answer now (stale, or not listening) or refuses: then `verify` says why."""
        if not (self.fresh and self.listening):
            return None
        digest = hashlib.sha256(secret).digest()
        for key in self._by_index.get(digest[:8], ()):  # written out: this runs on every request
            if hmac.compare_digest(key.digest, digest):
                if key.revoked_at is None and (key.expires_at is None or key.expires_at > time.time()):
                    return key
                return None
        return None

    async def verify(self, secret: bytes) -> Principal:
        """The live key this secret belongs to; KeyRefused saying why not."""
        digest = hashlib.sha256(secret).digest()
        if self.listening:
            if not self.fresh:
                await self._reloaded()
            key = self._find(self._by_index, digest)
        else:
            key = await self._read(digest)
        if key is None:
            raise KeyRefused("The API key is not valid")
        now = time.time()
        if key.revoked_at is not None:
            raise KeyRefused(f"The API key '{key.name}' has been revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise KeyRefused(f"The API key '{key.name}' has expired")
        return key

    async def still_valid(self, key: Principal) -> bool:
        """Whether a key verified earlier (a long-lived watch stream's) still works now."""
        if self.listening:
            if not self.fresh:
                await self._reloaded()
            current = self._find(self._by_index, key.digest)
        else:
            current = await self._read(key.digest)
        return (
            current is not None
            and current.revoked_at is None
            and (current.expires_at is None or current.expires_at > time.time())
        )

    async def _read(self, digest: bytes) -> Principal | None:
        """The key with this digest as the database holds it now (the ring cannot say).

        One read per key at a time: a check arriving while one runs waits for it, so the
        thousands of watch streams a dropped listener wakes cost one query per key. A read
        that began before the last `invalidate` is not joined: a key change this process
        committed (it invalidates before answering) is never checked against older state."""
        running = self._reads.get(digest)
        if running is None or running[0] != self._generation or running[1].done():
            running = (self._generation, asyncio.ensure_future(self._read_now(digest)))
            self._reads[digest] = running
            running[1].add_done_callback(functools.partial(self._read_done, digest, running))
        return await asyncio.shield(running[1])  # a check given up on leaves the read to the others

    async def _read_now(self, digest: bytes) -> Principal | None:
        async with self._database().read() as conn:
            row = await repository.by_digest(conn, digest)  # equal digests: found in the index
        return Principal.from_row(row) if row is not None else None

    def _read_done(
        self, digest: bytes, running: tuple[int, asyncio.Future[Principal | None]], future: asyncio.Future[Any]
    ) -> None:
        if self._reads.get(digest) is running:
            del self._reads[digest]
        if not future.cancelled():
            future.exception()  # its waiters have it; none left must not make it "never retrieved"

    def note_use(self, key: Principal) -> None:
        """A request made with this key is being served (refused ones are not uses)."""
        self._used[key.id] = time.time()

    @staticmethod
    def _find(by_index: dict[bytes, tuple[Principal, ...]], digest: bytes) -> Principal | None:
        """The key with this digest: looked up by its first 8 bytes, then compared whole
        in constant time."""
        return next((k for k in by_index.get(_index(digest), ()) if hmac.compare_digest(k.digest, digest)), None)

    # --- keeping current ---------------------------------------------------------------

    def invalidate(self, _key_ids: set[str] | None = None) -> None:
        """A key changed somewhere: stop trusting the ring until it has been reloaded."""
        self._generation += 1
        self.fresh = False

    async def _reloaded(self) -> None:
        """Wait for a reload that started after the last invalidation (one at a time,
        shared by every waiting request)."""
        while not self.fresh:
            if self._reload is None or self._reload.done():
                self._reload = asyncio.ensure_future(self._load())
            await asyncio.shield(self._reload)

    async def _load(self) -> None:
        generation = self._generation
        async with self._database().read() as conn:
            rows = await repository.every(conn)
        by_index: dict[bytes, tuple[Principal, ...]] = {}
        for row in rows:
            key = Principal.from_row(row)
            by_index[_index(key.digest)] = (*by_index.get(_index(key.digest), ()), key)
        if not rows:
            log.warning(
                "No API key exists, so every /v1 request is refused: make one with "
                "`agent-variants keys create --name NAME --scope admin`"
            )
        # A change while we read may be missing from what we read: then load again.
        if generation == self._generation:
            self._by_index = by_index
            self.fresh = True

    # --- last used ---------------------------------------------------------------------

    async def flush_usage(self) -> None:
        """Write when each key was last used (since the previous flush)."""
        used, self._used = self._used, {}
        if not used:
            return
        stamps = {key_id: datetime.fromtimestamp(t, UTC) for key_id, t in used.items()}

        async def unit(conn: Any) -> None:
            await repository.record_use(conn, stamps)

        try:
            await self._database().transaction(unit)
        except Exception:
            # Keep them for the next flush rather than lose them.
            for key_id, t in used.items():
                self._used[key_id] = max(t, self._used.get(key_id, t))
            raise

    async def flush_usage_forever(self, every_seconds: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await self.flush_usage()
            except Exception as error:  # noqa: BLE001 - retried next time
                log.warning("recording API key use failed: %s", error)
