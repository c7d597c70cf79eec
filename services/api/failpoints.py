"""Failpoints: named places where a test can make this process die as `kill -9` would.

`FAILPOINTS=name[,name...]` in the environment arms them; unset (always, outside tests),
`hit()` is a set lookup. Used by the tests that kill a server at an exact instant (after a
change commits, before its idempotent response is stored), which a signal cannot aim at.
"""

from __future__ import annotations

import os

ARMED = frozenset(name for name in os.environ.get("FAILPOINTS", "").split(",") if name)


def hit(name: str) -> None:
    """Die here, at once, without cleanup (like SIGKILL), when `name` is armed."""
    if name in ARMED:
        os._exit(137)
