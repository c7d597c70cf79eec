"""The webhook events (contract 1.1) and which change each revision is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EVENTS = (
    "agent.created",
    "agent.updated",
    "agent.archived",
    "agent.unarchived",
    "agent.purged",
    "variant.created",
    "variant.updated",
    "variant.deleted",
    "variant.activated",
    "variant.deactivated",
    "variant.restored",
    "rule_set.updated",
    "experiment.created",
    "experiment.updated",
    "experiment.deleted",
    "experiment.started",
    "experiment.stopped",
    "rollout.started",
    "rollout.advanced",
    "rollout.paused",
    "rollout.resumed",
    "rollout.completed",
    "rollout.rolled_back",
    "rollout.stopped",
    "change.undone",
    "webhook.test",
)
_PAST = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "archive": "archived",
    "unarchive": "unarchived",
    "activate": "activated",
    "deactivate": "deactivated",
    "restore": "restored",
    "start": "started",
    "stop": "stopped",
    "advance": "advanced",
    "pause": "paused",
    "resume": "resumed",
    "complete": "completed",
    "roll_back": "rolled_back",
    "rules": "updated",
}


def event_of(revision: Mapping[str, Any]) -> str | None:
    """The event a revision is (None for a change no event names)."""
    if revision["action"] == "undo":
        return "change.undone"
    target = revision["target"]
    if target == "experiment":
        shown = revision["after"] or revision["before"] or {}
        target = "rollout" if shown.get("kind") == "rollout" else "experiment"
    past = _PAST.get(revision["action"])
    event = f"{target}.{past}" if past is not None else None
    return event if event in EVENTS else None


def matches(patterns: Iterable[str], event: str) -> bool:
    """Exact, `prefix.*` or `*`."""
    for pattern in patterns:
        if pattern == "*" or pattern == event:
            return True
        if pattern.endswith(".*") and event.startswith(pattern[:-1]):
            return True
    return False
