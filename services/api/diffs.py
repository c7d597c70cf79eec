"""What two resolved configs differ in: the one diff of the API's `.../diff` and the console.

Pure functions over plain mappings of a resolved config's fields, the twelve and the keyed
ones (a `ResolvedAgentConfig` gives one with `.config()`). The console's history page diffs something else, a
revision's before and after objects (`console/history.py: revision_changes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.exceptions import RevisionNotRestorable
from services.shared.agent_config import CONFIG_FIELDS, KEYED_FIELDS, coalesce, coalesce_keyed


def resolved_values(overrides: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Every resolved field's value: the twelve coalesced, the keyed ones merged by key."""
    return {**coalesce(overrides, base), **coalesce_keyed(overrides, base)[0]}


def config_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What two resolved configs differ in, in the config's order: `[{"field", "from",
    "to"}]`, `from` being `before`'s value and `to` `after`'s. A keyed field differs entry
    by entry (`params.top_p`, `tools.search`), in `before`'s order then `after`'s new ones,
    null standing for an entry one side lacks. A side without keyed fields (a revision
    written before they existed) has none."""
    changes = [
        {"field": name, "from": before[name], "to": after[name]}
        for name in CONFIG_FIELDS
        if before[name] != after[name]
    ]
    for kind in KEYED_FIELDS:
        old, new = before.get(kind) or {}, after.get(kind) or {}
        for key in dict.fromkeys([*old, *new]):
            if old.get(key) != new.get(key):
                changes.append({"field": f"{kind}.{key}", "from": old.get(key), "to": new.get(key)})
    return changes


def config_after(revision: Mapping[Any, Any], state: Mapping[str, Any] | None) -> dict[str, Any]:
    """The resolved values of a revision's target right after it, from `state`, the agent
    (and active variant) recorded at that instant (`revisions.repository.state_after`):
    the agent's config, or the variant's overrides over the agent's config of then."""
    if state is None:  # only for history written before the agent's own revision existed
        raise RevisionNotRestorable(f"No state of the agent is recorded at revision {revision['id']}")
    base = state["agent"]["config"]
    if revision["target"] == "agent":
        return resolved_values({}, base)
    if revision["target"] != "variant":  # an experiment's or a rule set's: no config of its own
        raise RevisionNotRestorable(f"Revision {revision['id']} changed a {revision['target']}, not a config")
    if revision["after"] is None:
        raise RevisionNotRestorable(f"The variant did not exist right after revision {revision['id']}")
    return resolved_values(revision["after"]["overrides"], base)
