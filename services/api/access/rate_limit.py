"""Per-key token buckets, in memory: each process limits what it serves itself.

A key's bucket holds up to `burst` tokens and refills at `per_second`; a request takes
one, and with none left it is refused with the time until the next one (`Retry-After`).
A refused request takes nothing. Limits are per process: N replicas (or workers) let a
key through N times the rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    per_second: float
    burst: int


class RateLimiter:
    def __init__(self, limits: dict[str, Limit]) -> None:
        self.limits = limits  # per scope
        # key -> [tokens, when they were counted]
        self._buckets: dict[str, list[float]] = {}

    def take(self, key: str, scope: str) -> int | None:
        """Take a token for this key: None when allowed, else whole seconds to wait (>= 1)."""
        limit = self.limits[scope]
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [limit.burst - 1.0, now]
            return None
        tokens = min(float(limit.burst), bucket[0] + (now - bucket[1]) * limit.per_second)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return None
        bucket[0] = tokens
        return _wait(tokens, limit)

    def blocked(self, key: str, scope: str) -> int | None:
        """Whether `take` would refuse now, without taking: None, or seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        limit = self.limits[scope]
        tokens = bucket[0] + (time.monotonic() - bucket[1]) * limit.per_second
        return None if tokens >= 1.0 else _wait(tokens, limit)


def _wait(tokens: float, limit: Limit) -> int:
    return max(1, math.ceil((1.0 - tokens) / limit.per_second))
