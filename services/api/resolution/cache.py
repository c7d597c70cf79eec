"""The in-process cache of `GET /v1/agents/{agent}/resolved` responses.

Entries are the response bytes and ETag, keyed by the agent reference the client used
(id or slug), the environment reference (as named, or the default's id) and whether
`explain` was asked. It is bounded (LRU) and kept exact by:
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
from typing import Any, NamedTuple

from services.api import security_headers
from services.api.db import ALL_AGENTS, parse_changes


class Entry(NamedTuple):
    """A cached response. Stored as a plain tuple of strings, bytes and a float, which the
    garbage collector stops tracking: 100,000 entries add nothing to a collection's work
    (a NamedTuple instance would stay tracked)."""

    agent_id: str
    body: bytes
    etag: str
    # Built once at `put`, so a hit only sends: the 200's headers and the ETag as bytes.
    headers: tuple[tuple[bytes, bytes], ...]
    etag_bytes: bytes
    expires_at: float


class Context(NamedTuple):
    """What a subject or attributes need, so a context costs a hash and the rules'
    conditions, not a query: the environment's plan (rules, running experiment) and the
    response of each config it can serve (body, ETag, the 200's headers, the ETag as bytes),
    in `Plan.configs` order."""

    agent_id: str
    plan: Any  # a `resolution.plan.Plan` (a layer above this one)
    responses: tuple[tuple[bytes, str, tuple[tuple[bytes, bytes], ...], bytes], ...]
    expires_at: float


def response_headers(body: bytes, etag: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """A resolution's 200 headers, as the fast path sends them (FastAPI's path sends the same)."""
    return (
        (b"content-type", b"application/json"),
        (b"etag", etag),
        (b"content-length", b"%d" % len(body)),
        *security_headers.JSON_HEADERS,
    )


class ResolveCache:
    def __init__(self, *, max_entries: int, ttl_seconds: float, trusted: bool) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        # False until the process listens for other processes' changes.
        self.trusted = trusted
        self.generation = 0
        # Values are plain tuples (see Entry and Experiment), each ending with its expiry.
        self._entries: OrderedDict[tuple, tuple] = OrderedDict()
        # Tuples, not sets: an agent has few keys, and tuples of strings are not tracked by
        # the garbage collector (100,000 sets would make every collection slower).
        self._keys_by_agent: dict[str, tuple[tuple, ...]] = {}
        # For /metrics: lookups answered and not (an untrusted or disabled cache misses
        # every one), entries dropped to stay within `max_entries` and found expired.
        self.hits = 0
        self.misses = 0
        self.evicted = 0
        self.expired = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.trusted

    def get(self, ref: str, environment: str, explain: bool) -> Entry | None:
        stored = self._lookup((ref, environment, explain))
        return Entry._make(stored) if stored is not None else None

    def get_stored(self, ref: str, environment: str, explain: bool) -> tuple | None:
        """`get` without making an `Entry` of it (the fast path's half microsecond): the
        stored tuple, laid out as `Entry`."""
        return self._lookup((ref, environment, explain))

    def put(
        self, ref: str, environment: str, explain: bool, agent_id: str, body: bytes, etag: str, *, generation: int
    ) -> None:
        """Store a context-free response computed from a read that began at `generation`;
        dropped when an invalidation happened since (the read may predate the change)."""
        tag = etag.encode()
        self._store((ref, environment, explain), generation, (agent_id, body, etag, response_headers(body, tag), tag))

    def get_context(self, ref: str, environment: str, explain: bool) -> Context | None:
        stored = self._lookup((ref, environment, explain, "context"))
        return Context._make(stored) if stored is not None else None

    def put_context(
        self,
        ref: str,
        environment: str,
        explain: bool,
        plan: Any,
        responses: tuple[tuple[bytes, str], ...],
        *,
        generation: int,
    ) -> None:
        """Store what a context needs, read from the database at `generation` (as `put`)."""
        ready = tuple((body, tag, response_headers(body, tag.encode()), tag.encode()) for body, tag in responses)
        self._store((ref, environment, explain, "context"), generation, (plan.agent_id, plan, ready))

    def _lookup(self, key: tuple) -> tuple | None:
        if not self.enabled:
            self.misses += 1
            return None
        stored = self._entries.get(key)
        if stored is None:
            self.misses += 1
            return None
        if stored[-1] <= time.monotonic():
            self._drop(key)
            self.expired += 1
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return stored

    def _store(self, key: tuple, generation: int, value: tuple) -> None:
        """`value` starts with the agent id; the expiry is added at the end."""
        if not self.enabled or generation != self.generation:
            return
        self._drop(key)
        self._entries[key] = (*value, time.monotonic() + self.ttl_seconds)
        agent_id = value[0]
        self._keys_by_agent[agent_id] = (*self._keys_by_agent.get(agent_id, ()), key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))
            self.evicted += 1

    def invalidate(self, payloads: set[str] | frozenset[str]) -> None:
        """Drop what these changes (`db.resolution_change` payloads) may have made stale:
        every entry of an agent whose every environment changed, the entries of the named
        environments only otherwise (an entry's key holds the environment as the request
        named it, by id or slug, and a payload carries both); everything for `ALL_AGENTS`."""
        if ALL_AGENTS in payloads:  # an environment went: any agent's answer may name it
            self.clear()
            return
        self.generation += 1
        for agent_id, environments in parse_changes(payloads).items():
            keys = self._keys_by_agent.pop(agent_id, ())
            kept = []
            for key in keys:
                if environments is None or key[1] in environments:
                    self._entries.pop(key, None)
                else:
                    kept.append(key)
            if kept:
                self._keys_by_agent[agent_id] = tuple(kept)

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
