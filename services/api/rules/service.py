"""Rule-set use cases: read an agent's targeting rules in an environment, replace them whole.

Rules are stored with their ids, and name what they serve by id (`base`, or a variant's
id): a variant's slug may change, the rule keeps serving that variant. Resolution does not
read them yet (a later slice of issue 18); a change is announced all the same, so caches
and watch streams of the agent stay right once it does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.consistency import check_model_limits, check_resolved
from services.api.db import Database
from services.api.environments import repository as environments
from services.api.exceptions import DomainError, FieldError, InconsistentConfig, NotFound, conflicts_reported_as
from services.api.rules import repository
from services.api.rules.schemas import RuleIn, RuleSetReplace, rule_set_read
from services.api.variants import repository as variants
from services.api.variants.schemas import overrides_of
from services.api.writes import announce
from services.api.writes.context import NO_CONTEXT, WriteContext
from services.api.writes.locks import LockedAgent, find_agent, lock_agent
from services.api.writes.revisions import record
from services.shared.agent_config import BASE
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, new_id


async def get_rule_set(db: Database, agent_ref: str, environment_ref: str) -> dict[str, Any]:
    """The agent's set in the environment (version 0 and no rules when never written)."""
    async with db.read() as conn:
        agent = await find_agent(conn, agent_ref)
        environment = await environments.named(conn, environment_ref)
        return rule_set_read(agent.id, environment["slug"], await repository.get(conn, agent.id, environment["id"]))


async def replace_rule_set(
    db: Database, agent_ref: str, environment_ref: str, data: RuleSetReplace, *, context: WriteContext = NO_CONTEXT
) -> dict[str, Any]:
    """Replace the agent's set in the environment. Each rule's served config passes the
    write-time checks (422 `inconsistent_config` naming `rules[i].serve`), each variant named
    exists (404, `rules[i].serve.variant`). An identical set changes nothing (no version,
    no revision); otherwise the set's version moves (the agent's does not) and a revision
    `rule_set`/`rules` records the set before and after."""

    async def unit(conn: AsyncConnection) -> dict[str, Any]:
        agent = await lock_agent(conn, agent_ref)
        environment = await environments.hold(conn, environment_ref)
        before = rule_set_read(agent.id, environment["slug"], await repository.get(conn, agent.id, environment["id"]))
        context.check_version(before["version"], what="rule set")
        rules = await stored_rules(conn, agent, data.rules, current=before["rules"])
        if rules == before["rules"]:
            return before
        after = await replace(conn, agent, environment, rules, before=before, action="rules", context=context)
        await announce.agent_changed(conn, agent.id, environment)
        return after

    return await db.transaction(unit)


async def stored_rules(
    conn: AsyncConnection, agent: LockedAgent, rules: list[RuleIn], *, current: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rules as they are stored: each with an id (its own; else the current rule's of the
    same name, unless another rule sent that id; else a new one), serving `base` or a
    variant's id, after the write-time checks."""
    sent_ids = {rule.id for rule in rules if rule.id is not None}
    ids_by_name = {rule["name"]: rule["id"] for rule in current}
    stored: list[dict[str, Any]] = []
    refused: dict[type[DomainError], list[FieldError]] = {}
    for index, rule in enumerate(rules):
        kept = ids_by_name.get(rule.name)
        rule_id = rule.id or (kept if kept is not None and kept not in sent_ids else new_id("rule"))
        served, overrides = await _served(conn, agent, rule.serve.variant, param=f"rules[{index}].serve.variant")
        try:
            check_resolved(agent.config, overrides=overrides, params_schema=agent.params_schema)
            # Contract 1.1, "Models": the catalogued model's limits.
            await check_model_limits(conn, [(agent.config, overrides, f"config rule {index} serves")])
        except DomainError as error:
            # Named by the rule: the token rule's violation, or each field's problem.
            found = error.errors or []
            message = (
                found[0].message
                if isinstance(error, InconsistentConfig)
                else "; ".join(f"{one.param}: {one.message}" for one in found) or error.detail
            )
            refused.setdefault(type(error), []).append(FieldError(f"rules[{index}].serve", message))
        stored.append(
            {
                "id": rule_id,
                "name": rule.name,
                "when": [condition.model_dump(exclude_none=True) for condition in rule.when],
                "serve": {"variant": served},
            }
        )
    for kind, errors in refused.items():  # the first kind a rule met, every rule of that kind named
        what = (
            "breaks the rule input_token_limit + max_tokens <= context_window"
            if kind is InconsistentConfig
            else "cannot be served"
        )
        raise kind(
            f"The config a rule serves {what}: " + "; ".join(f"{one.param}: {one.message}" for one in errors),
            errors=errors,
        )
    return stored


async def _served(conn: AsyncConnection, agent: LockedAgent, ref: str, *, param: str) -> tuple[str, dict[str, Any]]:
    """What a rule serves as stored (`base` or the variant's id) and its overrides."""
    if ref == BASE:
        return BASE, {}
    # A variant is a shared definition: which environment it is seen from changes nothing here.
    variant = await variants.get(conn, agent.id, ref, environment_id=PRODUCTION_ENVIRONMENT_ID)
    if variant is None:
        raise NotFound("Variant", ref, param=param)
    return variant["id"], overrides_of(variant)


async def replace(
    conn: AsyncConnection,
    agent: LockedAgent,
    environment: RowMapping,
    rules: list[dict[str, Any]],
    *,
    before: dict[str, Any],
    action: str,
    context: WriteContext,
    reverts_id: str | None = None,
) -> dict[str, Any]:
    """Write the set (one version up) and record the revision; announces nothing (the use
    case does)."""
    at = agent.at
    await repository.put(conn, agent.id, environment["id"], rules, version=before["version"] + 1, at=at)
    after = rule_set_read(agent.id, environment["slug"], await repository.get(conn, agent.id, environment["id"]))
    await record(
        conn,
        agent_id=agent.id,
        target="rule_set",
        target_id=environment["id"],
        action=action,
        before=before,
        after=after,
        context=context,
        at=at,
        environment_id=environment["id"],
        shared=False,
        reverts_id=reverts_id,
    )
    return after


async def revert(
    conn: AsyncConnection,
    agent: LockedAgent,
    environment_id: str,
    rules: list[dict[str, Any]],
    *,
    action: str,
    context: WriteContext,
    reverts_id: str | None = None,
    on_conflict: type[DomainError] | None = None,
) -> None:
    """Put back a set recorded earlier (undo): its rules as they were, checked again (a
    variant it serves may be gone, or no longer pass with today's base config)."""
    try:
        with conflicts_reported_as(on_conflict):
            environment = await environments.hold(conn, environment_id)
            again = [RuleIn.model_validate(rule) for rule in rules]
            stored = await stored_rules(conn, agent, again, current=[])
    except NotFound as error:  # the environment or a served variant is gone
        if on_conflict is None:
            raise
        raise on_conflict(error.detail) from None
    current = rule_set_read(agent.id, environment["slug"], await repository.get(conn, agent.id, environment_id))
    await replace(
        conn, agent, environment, stored, before=current, action=action, context=context, reverts_id=reverts_id
    )
