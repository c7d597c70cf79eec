"""Public identifiers: type-prefixed ULIDs and slugs, and telling one from the other."""

from __future__ import annotations

import re
import threading
import time
from secrets import token_bytes

# Crockford base32, the alphabet ULIDs are written in (no I, L, O, U).
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_RE = "[0-7][0-9A-HJKMNP-TV-Z]{25}"

SLUG_MAX_LENGTH = 64
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

PREFIXES = {
    "agent": "agt",
    "variant": "var",
    "revision": "rev",
    "experiment": "exp",
    "api_key": "key",
    "environment": "env",
    "rule": "rul",  # a targeting rule (contract 1.1, "Targeting rules and context")
    "model": "mdl",  # a model of the catalog (contract 1.1, "Models")
    "webhook": "whk",  # a webhook subscription (contract 1.1, "Interoperability")
    "message": "msg",  # a webhook event: its `webhook-id`, the same on every attempt
}
# The environment every installation has (contract 1.1, "Environments"), made by the migration
# that created the table (b2c4e6a8d0f1), with this fixed id on every installation: the
# smallest well-formed environment id, so it sorts before every environment made later.
PRODUCTION_ENVIRONMENT_ID = "env_00000000000000000000000000"
PRODUCTION_ENVIRONMENT_SLUG = "production"
# The pattern of each kind's ids, as a JSON Schema `pattern` states it.
ID_PATTERNS = {kind: rf"^{prefix}_{_ULID_RE}$" for kind, prefix in PREFIXES.items()}
_ID_RES = {kind: re.compile(pattern) for kind, pattern in ID_PATTERNS.items()}


def is_id(kind: str, value: str) -> bool:
    """True when `value` is a well-formed id of that kind (`agt_01J...`)."""
    return _ID_RES[kind].match(value) is not None


def is_slug(value: str) -> bool:
    return len(value) <= SLUG_MAX_LENGTH and SLUG_RE.match(value) is not None


def looks_like_id(value: str) -> bool:
    """Ids always contain `_` and slugs never do: that is how a path segment is read."""
    return "_" in value


def ref_key(kind: str, ref: str) -> str | None:
    """Which column a reference names: "id", "slug", or None when it is neither (then
    nothing can match, and no query is needed)."""
    if looks_like_id(ref):
        return "id" if is_id(kind, ref) else None
    return "slug" if is_slug(ref) else None


class _MonotonicUlid:
    """ULIDs that increase strictly within this process.

    Two ids made in the same millisecond keep the order they were made in (the random
    part is incremented, as the ULID spec's monotonic mode says), so lists ordered by id
    are ordered by creation even for objects created in a burst.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_random + 1
                if rand >= 1 << 80:  # 2^80 ids in one millisecond: borrow the next one
                    ms, rand = ms + 1, int.from_bytes(token_bytes(10), "big") >> 1
            else:
                # Leave headroom so increments within a millisecond never overflow.
                rand = int.from_bytes(token_bytes(10), "big") >> 1
            self._last_ms, self._last_random = ms, rand
        value = (ms << 80) | rand
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


_next_ulid = _MonotonicUlid()


def new_id(kind: str) -> str:
    """A fresh id of that kind: `agt_` + a 26-character ULID."""
    return f"{PREFIXES[kind]}_{_next_ulid()}"
