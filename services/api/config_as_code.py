"""Config as code: the CLI's `export`, `plan` and `apply`, over the HTTP API only.

Environments, agents, variants, activations and rules as one YAML file, by slug
(docs/config-as-code.md).

The service is read once (`read_service`), with each object's `version`; `plan` compares the
file with it and lists the changes in the order `apply` makes them: environments, agents,
variants, activations, rule sets, then (with `--prune` only) deactivations, rule sets emptied
and deletions in reverse. Every write carries `If-Match` with the version read (or the one our
own previous write returned), and every `POST` an `Idempotency-Key` (the SDK's `Call`), so a
change made by someone else between plan and apply is a 412 that stops us, and a retried
`POST` never acts twice.

Left out on purpose: experiments and rollouts (state that runs and ends, with results, not
configuration), API keys (secrets, shown once), webhooks (secrets; installation wiring) and the
models catalog (installation-wide reference data, seeded from a cited source).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from agent_variants._http import Call, segment, send
from agent_variants.config import CONFIG_FIELDS
from agent_variants.errors import AgentVariantsError

FORMAT = 1
# Made by a migration on every installation, and never deletable: never pruned.
PROTECTED_ENVIRONMENTS = frozenset({"production"})
BASE = "base"
PAGE = 100
HEADER = (
    "# agent-variants configuration: environments, agents, their variants, activations and rules, by slug.\n"
    "# `agent-variants plan -f FILE` shows what `apply -f FILE` would change (docs/config-as-code.md).\n"
)
# A config's (and a variant's overrides') fields in the order the file shows them.
CONFIG_ORDER: tuple[str, ...] = (*CONFIG_FIELDS, "params", "params_unset", "tools", "variables")
CONDITION_ORDER = ("attribute", "op", "value", "values")

ENVIRONMENT_KEYS = {"slug", "name", "description"}
AGENT_KEYS = {"slug", "name", "description", "metadata", "config", "params_schema", "variants", "active", "rules"}
VARIANT_KEYS = {"slug", "variant_name", "description", "metadata", "overrides"}
RULE_KEYS = {"name", "when", "serve"}


class ConfigError(Exception):
    """A file that cannot be used, or a service that cannot be read: nothing was written."""


class Refused(Exception):
    """The service refused a write: `apply` stops there."""


# ----------------------------------------------------------------------------- the service


@dataclass
class Service:
    """What the service holds, as its API objects (each with its `version`)."""

    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    archived: set[str] = field(default_factory=set)
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # agent slug -> slug -> variant
    rules: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (agent, environment) -> rule set


def _pages(client: httpx.Client, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    after = None
    while True:
        page = send(client, Call.of("GET", path, params={**params, "limit": PAGE, "after": after}))
        yield from page["data"]
        if not page["has_more"]:
            return
        after = page["last_id"]


def read_service(client: httpx.Client) -> Service:
    """Everything the file describes, read through the API (a `read` key)."""
    service = Service()
    try:
        for environment in _pages(client, "/v1/environments"):
            service.environments[environment["slug"]] = environment
        for agent in _pages(client, "/v1/agents", archived=True):
            if agent.get("archived_at"):
                service.archived.add(agent["slug"])
                continue
            service.agents[agent["slug"]] = agent
            base = f"/v1/agents/{segment(agent['slug'])}"
            service.variants[agent["slug"]] = {v["slug"]: v for v in _pages(client, f"{base}/variants")}
            for slug in service.environments:
                rule_set = send(client, Call.of("GET", f"{base}/rules", params={"environment": slug}))
                service.rules[agent["slug"], slug] = rule_set
    except AgentVariantsError as error:
        raise ConfigError(f"cannot read the service: {_problem(error)}") from error
    return service


# ----------------------------------------------------------------------------- the file


def _sorted(value: Any) -> Any:
    """JSON with every object's keys sorted (the service keeps no order in them)."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _config(config: Mapping[str, Any]) -> dict[str, Any]:
    known = {name: _sorted(config[name]) for name in CONFIG_ORDER if name in config}
    return known | {name: _sorted(config[name]) for name in sorted(config) if name not in CONFIG_ORDER}


def _condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    ordered = {name: condition[name] for name in CONDITION_ORDER if condition.get(name) is not None}
    return ordered | {name: condition[name] for name in sorted(condition) if name not in CONDITION_ORDER}


def _rule(rule: Mapping[str, Any], slugs: Mapping[str, str]) -> dict[str, Any]:
    """A rule as the file holds it: no id, the served variant by slug."""
    served = rule["serve"]["variant"]
    return {
        "name": rule["name"],
        "when": [_condition(condition) for condition in rule["when"]],
        "serve": {"variant": slugs.get(served, served)},
    }


def _optional(document: dict[str, Any], name: str, value: Any, empty: Any) -> None:
    if value != empty and value is not None:
        document[name] = value


def export(service: Service) -> dict[str, Any]:
    """The file's document for what the service holds: by slug, sorted, without ids,
    versions or timestamps, and without what is empty."""
    environments = []
    for slug in sorted(service.environments):
        environment = service.environments[slug]
        entry: dict[str, Any] = {"slug": slug, "name": environment["name"]}
        _optional(entry, "description", environment["description"], "")
        environments.append(entry)
    agents = []
    for slug in sorted(service.agents):
        agent = service.agents[slug]
        variants = service.variants.get(slug, {})
        slugs = {variant["id"]: variant_slug for variant_slug, variant in variants.items()}
        entry = {"slug": slug, "name": agent["name"]}
        _optional(entry, "description", agent["description"], "")
        _optional(entry, "metadata", _sorted(agent["metadata"]), {})
        entry["config"] = _config(agent["config"])
        _optional(entry, "params_schema", _sorted(agent.get("params_schema")), None)
        listed = []
        for variant_slug in sorted(variants):
            variant = variants[variant_slug]
            shown: dict[str, Any] = {"slug": variant_slug, "variant_name": variant["variant_name"]}
            _optional(shown, "description", variant["description"], "")
            _optional(shown, "metadata", _sorted(variant["metadata"]), {})
            _optional(shown, "overrides", _config(variant["overrides"]), {})
            listed.append(shown)
        _optional(entry, "variants", listed, [])
        active = {
            environment: slugs.get(variant_id, variant_id)
            for environment, variant_id in sorted(agent.get("active_variants", {}).items())
            if variant_id is not None
        }
        _optional(entry, "active", active, {})
        rules = {
            environment: [_rule(rule, slugs) for rule in service.rules[slug, environment]["rules"]]
            for environment in sorted(service.environments)
            if (slug, environment) in service.rules and service.rules[slug, environment]["rules"]
        }
        _optional(entry, "rules", rules, {})
        agents.append(entry)
    return {"format": FORMAT, "environments": environments, "agents": agents}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as literal blocks; everything else as PyYAML writes it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(document: Mapping[str, Any]) -> str:
    """The document as YAML: the same document always gives the same bytes."""
    body = yaml.dump(
        dict(document),
        Dumper=_Dumper,
        sort_keys=False,  # the order is the document's own: fixed fields, then sorted maps
        allow_unicode=True,
        default_flow_style=False,
        width=1_000_000,  # never fold a long line: a diff of the file shows the change
    )
    return HEADER + body


class _Loader(yaml.SafeLoader):
    """A mapping that repeats a key is an error, not its last value silently."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is repeated", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> dict[str, Any]:
    """The file's document, its shape checked (the values are the service's to check)."""
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError(f"not valid YAML: {error}") from None
    if document is None:
        document = {}
    _expect(isinstance(document, dict), "", "a mapping")
    _known(document, {"format", "environments", "agents"}, "")
    _expect(document.get("format", FORMAT) == FORMAT, "format", f"{FORMAT} (the only format there is)")
    environments = document.get("environments", [])
    _slugged(environments, "environments", ENVIRONMENT_KEYS, required=("name",))
    agents = document.get("agents", [])
    _slugged(agents, "agents", AGENT_KEYS, required=("name", "config"))
    for index, agent in enumerate(agents):
        where = f"agents[{index}]"
        _expect(isinstance(agent["config"], dict), f"{where}.config", "a mapping")
        variants = agent.get("variants", [])
        _slugged(variants, f"{where}.variants", VARIANT_KEYS, required=("variant_name",), reserved=BASE)
        for name in ("metadata", "active", "rules"):
            _expect(isinstance(agent.get(name, {}), dict), f"{where}.{name}", "a mapping")
        for environment, rules in agent.get("rules", {}).items():
            _expect(isinstance(rules, list), f"{where}.rules.{environment}", "a list of rules")
            for position, rule in enumerate(rules):
                path = f"{where}.rules.{environment}[{position}]"
                _expect(isinstance(rule, dict), path, "a mapping")
                _known(rule, RULE_KEYS, path)
    return document


def _expect(holds: bool, where: str, what: str) -> None:
    if not holds:
        raise ConfigError(f"{where or 'the file'} must be {what}")


def _known(entry: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(str(key) for key in entry if key not in keys)
    if unknown:
        raise ConfigError(
            f"{where or 'the file'}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(keys))})"
        )


def _slugged(
    entries: Any, where: str, keys: set[str], *, required: tuple[str, ...], reserved: str | None = None
) -> None:
    _expect(isinstance(entries, list), where, "a list")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        path = f"{where}[{index}]"
        _expect(isinstance(entry, dict), path, "a mapping")
        _known(entry, keys, path)
        for name in ("slug", *required):
            _expect(name in entry, f"{path}.{name}", "given")
        slug = entry["slug"]
        _expect(isinstance(slug, str) and slug != "", f"{path}.slug", "a non-empty string")
        _expect(slug != reserved, f"{path}.slug", f"other than {reserved!r} (reserved)")
        _expect(slug not in seen, f"{path}.slug", f"unique ({slug!r} is repeated)")
        seen.add(slug)


# ----------------------------------------------------------------------------- plan


def _canonical(value: Any) -> str:
    """Equal JSON values give equal strings: keys sorted, 1 and 1.0 alike (the service
    stores a number, not its spelling), true never equal to 1."""

    def numbers(item: Any) -> Any:
        if isinstance(item, bool) or not isinstance(item, int | float | dict | list):
            return item
        if isinstance(item, dict):
            return {key: numbers(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [numbers(inner) for inner in item]
        return float(item)

    return json.dumps(numbers(value), sort_keys=True, ensure_ascii=False)


def _same(a: Any, b: Any) -> bool:
    return _canonical(a) == _canonical(b)


def merge_patch(current: Any, desired: Any, depth: int) -> Any:
    """The JSON merge patch (RFC 7396) taking `current` to `desired`, merging `depth`
    levels of objects (below them a value is replaced whole, as the API does with a tool, a
    param or a variable); a key to remove is null."""
    if depth == 0 or not isinstance(current, dict) or not isinstance(desired, dict):
        return desired
    patch: dict[str, Any] = {}
    for key in current:
        if key not in desired:
            patch[key] = None
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
        elif not _same(current[key], value):
            patch[key] = merge_patch(current[key], value, depth - 1)
    return patch


@dataclass
class Change:
    """One write of the plan: what it changes, field by field, and the request that does it."""

    action: str  # create, update or delete
    what: str  # `agent support-bot`, `variant support-bot/concise`, ...
    method: str
    path: str
    body: Any = None
    params: dict[str, Any] | None = None
    guard: tuple[str, ...] | None = None  # whose version goes in If-Match
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)  # (path, before, after); absent: _NONE
    records: tuple[str, ...] | None = None  # whose version the answer gives
    bumps: tuple[str, ...] | None = None  # whose version the write moves by one besides (a deactivated variant)
    note: str = ""
    pruned: bool = False  # a removal of what the file leaves out: made with --prune only


_NONE = object()  # a field that is not there


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of each leaf; an empty object has none (its entries say what changes)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and any(isinstance(item, dict | list) for item in value):
        for index, inner in enumerate(value):
            yield from _leaves(inner, f"{path}[{index}]")
    else:
        yield path, value


def field_changes(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """Leaf by leaf: (path, before, after), `_NONE` for a side where it is absent (or null)."""
    old = dict(_leaves(before, "")) if before is not _NONE and before is not None else {}
    new = dict(_leaves(after, "")) if after is not _NONE and after is not None else {}
    changes = []
    for path in list(old) + [path for path in new if path not in old]:
        a, b = old.get(path, _NONE), new.get(path, _NONE)
        if a is _NONE or b is _NONE or not _same(a, b):
            changes.append((path, a, b))
    return changes


def _created(body: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """A new object's fields, without the empty ones (they are its defaults)."""
    return [change for change in field_changes(_NONE, body) if change[2] not in ("", None)]


def _agent_body(agent: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": agent["name"],
        "description": agent.get("description", ""),
        "metadata": agent.get("metadata", {}),
        "config": agent["config"],
        "params_schema": agent.get("params_schema"),
    }


def _variant_body(variant: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "variant_name": variant["variant_name"],
        "description": variant.get("description", ""),
        "metadata": variant.get("metadata", {}),
        "overrides": variant.get("overrides", {}),
    }


# How deep each field of a PATCH merges: metadata by key; a config by field, then a keyed
# field (params, tools, variables) by entry; everything else replaced whole.
AGENT_DEPTHS = {"metadata": 1, "config": 2}
VARIANT_DEPTHS = {"metadata": 1, "overrides": 2}


def _update(
    what: str,
    path: str,
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
    depths: Mapping[str, int],
    guard: tuple[str, ...],
) -> Change | None:
    patch = {}
    changes: list[tuple[str, Any, Any]] = []
    for name, value in desired.items():
        before = current.get(name)
        if not _same(before, value):
            patch[name] = merge_patch(before, value, depths.get(name, 0))
            changes += [(f"{name}.{p}" if p else name, a, b) for p, a, b in field_changes(before, value)]
    if not patch:
        return None
    return Change("update", what, "PATCH", path, patch, guard=guard, fields=changes, records=guard)


def plan(document: Mapping[str, Any], service: Service, *, prune: bool = False) -> list[Change]:
    """The writes that take the service to the file, in the order `apply` makes them."""
    environments: list[Change] = []
    agents: list[Change] = []
    variants: list[Change] = []
    activations: list[Change] = []
    rules: list[Change] = []
    removals: list[Change] = []  # with --prune: deactivations, emptied rule sets, then deletions
    deletions: dict[str, list[Change]] = {"variant": [], "agent": [], "environment": []}

    wanted_environments = {entry["slug"]: entry for entry in document.get("environments", [])}
    for slug, entry in wanted_environments.items():
        body = {"name": entry["name"], "description": entry.get("description", "")}
        current = service.environments.get(slug)
        if current is None:
            create = {"slug": slug, **body}
            environments.append(
                Change(
                    "create",
                    f"environment {slug}",
                    "POST",
                    "/v1/environments",
                    create,
                    fields=_created(create),
                    records=("environment", slug),
                )
            )
        else:
            change = _update(
                f"environment {slug}", f"/v1/environments/{segment(slug)}", current, body, {}, ("environment", slug)
            )
            if change:
                environments.append(change)
    known_environments = set(service.environments) | set(wanted_environments)
    for slug in sorted(set(service.environments) - set(wanted_environments) - PROTECTED_ENVIRONMENTS):
        deletions["environment"].append(
            Change(
                "delete",
                f"environment {slug}",
                "DELETE",
                f"/v1/environments/{segment(slug)}",
                guard=("environment", slug),
                pruned=True,
            )
        )

    wanted_agents = {entry["slug"]: entry for entry in document.get("agents", [])}
    for slug, entry in wanted_agents.items():
        if slug in service.archived:
            raise ConfigError(
                f"agent {slug!r} is archived on the service: unarchive it (POST /v1/agents/{slug}/unarchive) "
                "or purge it (DELETE /v1/agents/{slug}?purge=true) first"
            )
        base = f"/v1/agents/{segment(slug)}"
        body = _agent_body(entry)
        current = service.agents.get(slug)
        live_variants = service.variants.get(slug, {}) if current else {}
        if current is None:
            create = {"slug": slug, **{k: v for k, v in body.items() if v is not None}}
            agents.append(
                Change(
                    "create",
                    f"agent {slug}",
                    "POST",
                    "/v1/agents",
                    create,
                    fields=_created(create),
                    records=("agent", slug),
                )
            )
        else:
            # Only the config fields the file gives are managed (the others keep their value).
            managed = {**body, "config": body["config"]}
            live = {**current, "config": {k: v for k, v in current["config"].items() if k in body["config"]}}
            change = _update(f"agent {slug}", base, live, managed, AGENT_DEPTHS, ("agent", slug))
            if change:
                agents.append(change)

        wanted_variants = {variant["slug"]: variant for variant in entry.get("variants", [])}
        for variant_slug, variant in wanted_variants.items():
            key = ("variant", slug, variant_slug)
            vbody = _variant_body(variant)
            live_variant = live_variants.get(variant_slug)
            if live_variant is None:
                create = {"slug": variant_slug, **vbody}
                variants.append(
                    Change(
                        "create",
                        f"variant {slug}/{variant_slug}",
                        "POST",
                        f"{base}/variants",
                        create,
                        fields=_created(create),
                        records=key,
                    )
                )
            else:
                change = _update(
                    f"variant {slug}/{variant_slug}",
                    f"{base}/variants/{segment(variant_slug)}",
                    live_variant,
                    vbody,
                    VARIANT_DEPTHS,
                    key,
                )
                if change:
                    variants.append(change)
        for variant_slug in sorted(set(live_variants) - set(wanted_variants)):
            deletions["variant"].append(
                Change(
                    "delete",
                    f"variant {slug}/{variant_slug}",
                    "DELETE",
                    f"{base}/variants/{segment(variant_slug)}",
                    guard=("variant", slug, variant_slug),
                    pruned=True,
                )
            )

        # Activations: which variant each environment serves (null: none).
        by_id = {variant["id"]: variant_slug for variant_slug, variant in live_variants.items()}
        live_active = {
            environment: by_id.get(variant_id, variant_id)
            for environment, variant_id in (current or {}).get("active_variants", {}).items()
            if variant_id is not None
        }
        wanted_active = entry.get("active", {})
        for environment in sorted(set(wanted_active) | set(live_active)):
            now, then = live_active.get(environment), wanted_active.get(environment, _NONE)
            what = f"activation {slug} in {environment}"
            if then is _NONE or then is None:
                if now is None:
                    continue
                deactivate = Change(
                    "delete" if then is _NONE else "update",
                    what,
                    "POST",
                    f"{base}/variants/{segment(now)}/deactivate",
                    params={"environment": environment},
                    guard=("variant", slug, now),
                    records=("variant", slug, now),
                    fields=[("variant", now, _NONE)],
                    pruned=then is _NONE,
                )
                (removals if then is _NONE else activations).append(deactivate)
            elif then != now:
                activations.append(
                    Change(
                        "create" if now is None else "update",
                        what,
                        "POST",
                        f"{base}/variants/{segment(then)}/activate",
                        params={"environment": environment},
                        guard=("variant", slug, then),
                        records=("variant", slug, then),
                        bumps=("variant", slug, now) if now is not None else None,
                        fields=[("variant", _NONE if now is None else now, then)],
                    )
                )

        # Rule sets, replaced whole; the service matches a rule without id by its name.
        slugs = {variant["id"]: variant_slug for variant_slug, variant in live_variants.items()}
        wanted_rules = entry.get("rules", {})
        # An environment the service lacks and the file does not make: the API will say so.
        for environment in sorted(known_environments | set(wanted_rules)):
            rule_set = service.rules.get((slug, environment))
            now_rules = [_rule(rule, slugs) for rule in rule_set["rules"]] if rule_set else []
            if environment in wanted_rules:
                then_rules = [_rule_as_written(rule) for rule in wanted_rules[environment]]
            elif now_rules:
                then_rules = []
            else:
                continue
            if _same(now_rules, then_rules):
                continue
            pruned = environment not in wanted_rules
            change = Change(
                "delete" if pruned else "update",
                f"rules {slug} in {environment}",
                "PUT",
                f"{base}/rules",
                {"rules": then_rules},
                params={"environment": environment},
                guard=("rules", slug, environment),
                records=("rules", slug, environment),
                fields=field_changes({"rules": now_rules}, {"rules": then_rules}),
                pruned=pruned,
            )
            (removals if pruned else rules).append(change)
    for slug in sorted(set(service.agents) - set(wanted_agents)):
        deletions["agent"].append(
            Change(
                "delete",
                f"agent {slug}",
                "DELETE",
                f"/v1/agents/{segment(slug)}",
                guard=("agent", slug),
                note="archived: its history stays, and its slug stays taken",
                pruned=True,
            )
        )

    changes = environments + agents + variants + activations + rules
    if prune:
        changes += removals + deletions["variant"] + deletions["agent"] + deletions["environment"]
    return changes


def _rule_as_written(rule: Mapping[str, Any]) -> dict[str, Any]:
    serve = rule.get("serve")
    return {
        "name": rule.get("name"),
        "when": [_condition(c) if isinstance(c, dict) else c for c in rule.get("when") or []],
        "serve": serve if not isinstance(serve, dict) else {"variant": serve.get("variant"), **serve},
    }


def left_alone(document: Mapping[str, Any], service: Service) -> list[str]:
    """What the service has and the file does not: deleted only with `--prune`."""
    return [change.what for change in plan(document, service, prune=True) if change.pruned]


# ----------------------------------------------------------------------------- showing


SIGNS = {"create": "+", "update": "~", "delete": "-"}
SHOWN = 160  # characters of a value, then an ellipsis


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def describe(changes: list[Change], kept: list[str]) -> str:
    """The plan for people: one block per object, a line per field."""
    lines = []
    for change in changes:
        head = f"{SIGNS[change.action]} {change.action} {change.what}"
        lines.append(head + (f" ({change.note})" if change.note else ""))
        for path, before, after in change.fields:
            if before is _NONE:
                lines.append(f"    + {path}: {_show(after)}")
            elif after is _NONE:
                lines.append(f"    - {path}: {_show(before)}")
            else:
                lines.append(f"    ~ {path}: {_show(before)} -> {_show(after)}")
    counts = {action: sum(change.action == action for change in changes) for action in SIGNS}
    if changes:
        lines.append(
            f"\nPlan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."
        )
    else:
        lines.append("No changes: the service matches the file.")
    if kept:
        lines.append(f"Not in the file, left alone ({len(kept)}; --prune removes them): " + ", ".join(kept) + ".")
    return "\n".join(lines) + "\n"


def _problem(error: AgentVariantsError) -> str:
    problem = error.problem
    status = error.status or problem.get("status")
    text = f"{status} {problem.get('code') or ''}".strip() + f": {error}"
    for item in problem.get("errors") or []:
        text += f"\n    {item.get('param')}: {item.get('message')}"
    return text


# ----------------------------------------------------------------------------- apply


def _versions(service: Service) -> dict[tuple[str, ...], int]:
    versions: dict[tuple[str, ...], int] = {}
    for slug, environment_object in service.environments.items():
        versions["environment", slug] = environment_object["version"]
    for slug, agent_object in service.agents.items():
        versions["agent", slug] = agent_object["version"]
        for variant_slug, variant in service.variants.get(slug, {}).items():
            versions["variant", slug, variant_slug] = variant["version"]
    for (agent, environment), rule_set in service.rules.items():
        versions["rules", agent, environment] = rule_set["version"]
    return versions


def apply(client: httpx.Client, changes: list[Change], service: Service, *, say: Callable[[str], None] = print) -> None:
    """Make each change in order, each guarded by the version read (or our own last write's);
    the first refusal raises `Refused` with the service's message."""
    versions = _versions(service)
    for done, change in enumerate(changes):
        if_match = None
        if change.guard is not None:
            # A rule set of an agent or environment made by this run is version 0 (ETag "0").
            if_match = versions.get(change.guard, 0 if change.guard[0] == "rules" else None)
        call = Call.of(change.method, change.path, json=change.body, params=change.params, if_match=if_match)
        try:
            answer = send(client, call)
        except AgentVariantsError as error:
            why = _problem(error)
            if error.status == 412:
                why += "\n  It changed on the service after it was read: run plan again."
            raise Refused(
                f"apply stopped at `{change.action} {change.what}` ({done} of {len(changes)} changes made):\n  {why}"
            ) from error
        if change.records and isinstance(answer, dict) and "version" in answer:
            versions[change.records] = answer["version"]
        if change.bumps and change.bumps in versions:
            versions[change.bumps] += 1  # deactivated by this activation: +1, as any change of its own
        say(f"{SIGNS[change.action]} {change.action} {change.what}: done")


# ----------------------------------------------------------------------------- the commands

# Exit statuses: `plan` says "changes" with 2 (as `terraform plan -detailed-exitcode`), so
# an error is 1, never 2.
OK, FAILED, CHANGES = 0, 1, 2
URL_VARIABLE, KEY_VARIABLE = "AGENT_VARIANTS_URL", "AGENT_VARIANTS_KEY"
TIMEOUT_SECONDS = 30.0


def client_for(url: str, key: str | None) -> httpx.Client:
    headers = {"User-Agent": "agent-variants-config"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT_SECONDS)


def _read_file(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {name}: {error.strerror}") from None
    return load(text)


def run(
    command: str,
    *,
    url: str | None,
    key: str | None,
    file: str | None = None,
    output: str | None = None,
    prune: bool = False,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] = print,
) -> int:
    """`export`, `plan` or `apply`: its exit status; what it says goes to `out`, errors to `err`."""
    if not url:
        err(f"agent-variants: give the service's URL with --url or {URL_VARIABLE}")
        return FAILED
    try:
        document = None if command == "export" else _read_file(file or "-")
        with client_for(url, key) as client:
            service = read_service(client)
            if command == "export":
                text = dump(export(service))
                if output and output != "-":
                    Path(output).write_text(text, encoding="utf-8")
                else:
                    out(text.rstrip("\n"))
                return OK
            assert document is not None
            changes = plan(document, service, prune=prune)
            kept = [] if prune else left_alone(document, service)
            out(describe(changes, kept).rstrip("\n"))
            if command == "plan":
                return CHANGES if changes else OK
            if changes:
                out("")
                apply(client, changes, service, say=out)
                out(f"Applied {len(changes)} change{'s' if len(changes) != 1 else ''}.")
            return OK
    except (ConfigError, Refused) as error:
        err(f"agent-variants: {error}")
        return FAILED
    except AgentVariantsError as error:
        err(f"agent-variants: {_problem(error)}")
        return FAILED
    except httpx.HTTPError as error:
        err(f"agent-variants: cannot reach {url}: {error}")
        return FAILED
    except OSError as error:
        err(f"agent-variants: {error}")
        return FAILED
