"""The in-process cache of `GET /v1/agents/{agent}/resolved` responses.

Entries are the response bytes and ETag, keyed by the agent reference the client used
(id or slug) and whether `explain` was asked. It is bounded (LRU) and kept exact by:
- this process's own commits, which drop their agents before the write is answered;
- the other processes' commits, heard through PostgreSQL NOTIFY (`listener.py`);
- a generation counter, so a response computed before an invalidation is never stored
  after it;
- `trusted`: while the listener is down nothing is served or stored (NOTIFYs may be lost),
  and the cache is cleared when it comes back;
- a TTL, the last safety net.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import NamedTuple


class Entry(NamedTuple):
    """A cached response. Stored as a plain tuple of strings, bytes and a float, which the
    garbage collector stops tracking: 100,000 entries add nothing to a collection's work
    (a NamedTuple instance would stay tracked)."""

    agent_id: str
    body: bytes
    etag: str
    expires_at: float
    # Built once at `put`, so a hit only sends: the 200's headers and the ETag as bytes.
    headers: tuple[tuple[bytes, bytes], ...]
    etag_bytes: bytes


class Experiment(NamedTuple):
    """A cached running experiment: enough to answer `?subject=` with a hash, no query.
    `arms[i]` is arm i's (body, etag, headers, etag bytes)."""

    agent_id: str
    experiment_id: str | None
    salt: str
    weights: tuple[int, ...]
    arms: tuple[tuple[bytes, str, tuple[tuple[bytes, bytes], ...], bytes], ...]
    expires_at: float


class ResolveCache:
    def __init__(self, *, max_entries: int, ttl_seconds: float, trusted: bool) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        # False until the process listens for other processes' changes.
        self.trusted = trusted
        self.generation = 0
        self._entries: OrderedDict[tuple, tuple] = OrderedDict()
        # Tuples, not sets: an agent has few keys, and tuples of strings are not tracked by
        # the garbage collector (100,000 sets would make every collection slower).
        self._keys_by_agent: dict[str, tuple[tuple, ...]] = {}

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.trusted

    def get(self, ref: str, explain: bool) -> Entry | None:
        if not self.enabled:
            return None
        key = (ref, explain)
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored[3] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return Entry._make(stored)

    def put(self, ref: str, explain: bool, agent_id: str, body: bytes, etag: str, *, generation: int) -> None:
        """Store a response computed from a read that began at `generation`; dropped when an
        invalidation happened since (the read may predate the change)."""
        if not self.enabled or generation != self.generation:
            return
        key = (ref, explain)
        self._drop(key)
        tag = etag.encode()
        headers = ((b"content-type", b"application/json"), (b"etag", tag), (b"content-length", b"%d" % len(body)))
        self._entries[key] = (agent_id, body, etag, time.monotonic() + self.ttl_seconds, headers, tag)
        self._keys_by_agent[agent_id] = (*self._keys_by_agent.get(agent_id, ()), key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def get_experiment(self, ref: str, explain: bool) -> Experiment | None:
        """The agent's running experiment as cached (`experiment_id` None: none runs)."""
        if not self.enabled:
            return None
        key = (ref, explain, "experiment")
        stored = self._entries.get(key)
        if stored is None:
            return None
        if stored[-1] <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return Experiment._make(stored)

    def put_experiment(
        self,
        ref: str,
        explain: bool,
        agent_id: str,
        experiment_id: str | None,
        salt: str,
        weights: tuple[int, ...],
        arms: tuple[tuple[bytes, str], ...],
        *,
        generation: int,
    ) -> None:
        """Store the running experiment's definition and each arm's response (body, ETag)."""
        if not self.enabled or generation != self.generation:
            return
        key = (ref, explain, "experiment")
        self._drop(key)
        prepared = tuple(
            (body, etag, ((b"content-type", b"application/json"), (b"etag", etag.encode()),
                          (b"content-length", b"%d" % len(body))), etag.encode())
            for body, etag in arms
        )
        self._entries[key] = (agent_id, experiment_id, salt, weights, prepared, time.monotonic() + self.ttl_seconds)
        self._keys_by_agent[agent_id] = (*self._keys_by_agent.get(agent_id, ()), key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def invalidate(self, agent_ids: set[str] | frozenset[str]) -> None:
        self.generation += 1
        for agent_id in agent_ids:
            for key in self._keys_by_agent.pop(agent_id, ()):
                self._entries.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._keys_by_agent.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: tuple) -> None:
        stored = self._entries.pop(key, None)
        if stored is not None:
            agent_id = stored[0]
            keys = tuple(k for k in self._keys_by_agent.get(agent_id, ()) if k != key)
            if keys:
                self._keys_by_agent[agent_id] = keys
            else:
                self._keys_by_agent.pop(agent_id, None)
