"""Experiment assignment: which arm a subject gets, exactly as the contract defines it.

Standard library only, so the service, the SDK and any agent compute the same arm offline
(the service imports it from here: `services.shared.assignment` re-exports it):

    bucket = int.from_bytes(sha256(f"{salt}:{subject}".encode()).digest()[:8], "big") % 10000

Arms own consecutive bucket ranges in arm order. With `W = sum(weights)`, arm i first gets
`floor(w_i * 10000 / W)` buckets; the buckets left over go one each to the arms with the
largest remainders `(w_i * 10000) mod W`, ties to the lower arm index.

A rollout (contract 1.1) lays its two arms out by its step's percent instead: at percent p,
arm 0 owns buckets [0, 10000 - 100p) and arm 1 owns [10000 - 100p, 10000), so a subject
moved to arm 1 never goes back as the percent rises (`rollout_arm`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache
from hashlib import sha256

BUCKETS = 10_000


def bucket(salt: str, subject: str) -> int:
    """The subject's bucket, 0-9999."""
    return int.from_bytes(sha256(f"{salt}:{subject}".encode()).digest()[:8], "big") % BUCKETS


def arm_sizes(weights: Sequence[int]) -> tuple[int, ...]:
    """How many of the 10,000 buckets each arm owns (largest-remainder apportionment)."""
    total = sum(weights)
    if not weights or total <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative with a positive sum")
    sizes = [w * BUCKETS // total for w in weights]
    left = BUCKETS - sum(sizes)
    # Largest remainder first; the lower arm index wins a tie.
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(weights[i] * BUCKETS % total), i))
    for i in by_remainder[:left]:
        sizes[i] += 1
    return tuple(sizes)


@lru_cache(maxsize=1024)
def bounds(weights: tuple[int, ...]) -> tuple[int, ...]:
    """The exclusive upper bucket of each arm: arm i owns [bounds[i-1], bounds[i])."""
    upper, out = 0, []
    for size in arm_sizes(weights):
        upper += size
        out.append(upper)
    return tuple(out)


def assign(salt: str, subject: str, weights: Sequence[int]) -> int:
    """The arm index (0-based, 0 is the control) the subject is assigned to."""
    return bisect_right(bounds(tuple(weights)), bucket(salt, subject))


def rollout_arm(salt: str, subject: str, percent: int) -> int:
    """The arm (0: what the environment served, 1: the variant being rolled out) a subject
    gets from a rollout at `percent` (0-100) of its traffic."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise ValueError(f"a rollout's percent is an integer from 0 to 100, not {percent!r}")
    return 0 if bucket(salt, subject) < BUCKETS - 100 * percent else 1
