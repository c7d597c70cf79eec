"""What the services count for /metrics: plain integers, bumped on the event loop.

No locks and nothing kept per call: a process's counts only ever change on its one event
loop, and `/metrics` reads them at scrape time (`services.api.metrics`). Process-wide, like
the work they count; the per-request counts and the cache's live on their own layers.
"""

from __future__ import annotations


class Counts:
    def __init__(self) -> None:
        self.outcomes_ingested = 0
        # By the scheduler's action: `advance`, `complete`, `roll_back`, `pause`.
        self.split_transitions: dict[str, int] = {}
        # Webhook delivery attempts by result: `delivered`, `retrying`, `failed` (given up).
        self.webhook_attempts: dict[str, int] = {}


COUNTS = Counts()


def outcomes_ingested(count: int) -> None:
    COUNTS.outcomes_ingested += count


def split_transition(action: str) -> None:
    COUNTS.split_transitions[action] = COUNTS.split_transitions.get(action, 0) + 1


def webhook_attempt(result: str) -> None:
    COUNTS.webhook_attempts[result] = COUNTS.webhook_attempts.get(result, 0) + 1
