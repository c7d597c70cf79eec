"""What each console page shows, read in one snapshot per page.

A page's figures must agree with each other (the variants listed and the slugs of the
pickers, the live config and the change an activation would make), so each function here
reads one page's data in `db.snapshot()`: one read-only REPEATABLE READ transaction, one
connection, no commit landing between two of its reads. The pages call these for reads and
the services for writes; this module uses the repositories and the pure shapes the services
use (`*_read`, `diffs`, `outcomes.figures`), so a page shows what the API returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import RowMapping, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.agents import repository as agent_rows
from services.api.agents.schemas import agent_read
from services.api.db import Database
from services.api.diffs import config_after, config_changes, resolved_values
from services.api.environments import repository as environment_rows
from services.api.exceptions import DomainError, NotFound
from services.api.experiments import repository as experiment_rows
from services.api.experiments.schemas import experiment_read
from services.api.outcomes import repository as outcome_rows
from services.api.outcomes.figures import results_of, usage_of
from services.api.resolution import plan as plans
from services.api.resolution.plan import Plan, arm_configs
from services.api.resolution.time_travel import resolve_at
from services.api.revisions import repository as revision_rows
from services.api.revisions.schemas import revision_read
from services.api.rollouts import figures as rollout_figures
from services.api.rollouts import repository as rollout_rows
from services.api.rules import repository as rule_rows
from services.api.rules.schemas import rule_set_read
from services.api.variants import repository as variant_rows
from services.api.variants.schemas import overrides_of, variant_read
from services.shared.agent_config import BASE, ResolvedAgentConfig, resolve_agent_config
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID, is_id

Slugs = list[tuple[str, str]]  # (id, slug) of every variant of an agent, by slug
# More than an installation may have (100, contract 1.1): the switcher lists them all.
MOST_ENVIRONMENTS = 1_000


@dataclass(frozen=True)
class Environment:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class Where:
    """The environment a page shows and changes (`chosen`), those its switcher offers
    (`choices`: every environment, production first; a bound key's own only), and the id of
    the one a URL that names none gets (`default`: production, or a bound key's)."""

    chosen: Environment
    choices: tuple[Environment, ...]
    default: str
    bound: bool

    @property
    def id(self) -> str:
        return self.chosen.id

    @property
    def slug(self) -> str:
        return self.chosen.slug

    def link(self, path: str, **params: Any) -> str:
        """A console URL that stays in the chosen environment (`?environment=` unless it is
        the default), with `params` (None ones left out) in its query."""
        query = {name: str(value) for name, value in params.items() if value is not None}
        if self.chosen.id != self.default:
            query["environment"] = self.chosen.slug
        return path + ("?" + urlencode(query) if query else "")


def _environment(row: RowMapping) -> Environment:
    return Environment(row["id"], row["slug"], row["name"])


@dataclass(frozen=True)
class Named:
    """The environment a request names (`ref`: a slug or an id, None for none) by a viewer
    whose key is `bound` to one (its id) or to none (None); not looked up yet: each page
    looks it up in its own snapshot (`_where`). The caller refuses a bound key naming another."""

    ref: str | None
    bound: str | None

    @property
    def lookup(self) -> str:
        """The reference to look up (services take it as is): the named one, else the default."""
        return self.ref or self.bound or PRODUCTION_ENVIRONMENT_ID

    def link(self, path: str) -> str:
        """A console URL in the same environment, before it is looked up (as `Where.link`)."""
        return path + (f"?{urlencode({'environment': self.ref})}" if self.ref is not None else "")


async def _where(conn: AsyncConnection, named: Named) -> Where:
    """The environment the page shows (404 `resource_missing`, `param` `environment`, for an
    unknown one) and the switcher's choices, read in the page's snapshot."""
    default = named.bound or PRODUCTION_ENVIRONMENT_ID
    chosen = _environment(await environment_rows.named(conn, named.lookup))
    if named.bound is not None:
        return Where(chosen, (chosen,), default, True)
    rows = await environment_rows.list_page(conn, after=None, limit=MOST_ENVIRONMENTS)
    # Newest first, production (the oldest) last: reversed, production first, then by age.
    return Where(chosen, tuple(_environment(row) for row in reversed(rows)), default, False)


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; `next_after` is the cursor of the next (None on the last)."""

    items: list[dict[str, Any]]
    next_after: str | None

    @classmethod
    def of(cls, items: list[dict[str, Any]], limit: int) -> Page:
        """From up to `limit + 1` items: the extra one only says there is a next page."""
        more = len(items) > limit
        return cls(items[:limit], items[limit - 1]["id"] if more else None)


def _page(rows: list[RowMapping], read: Callable[[RowMapping], dict[str, Any]], limit: int) -> Page:
    return Page.of([read(row) for row in rows], limit)


async def _agent(conn: AsyncConnection, ref: str, environment: str) -> dict[str, Any]:
    row = await agent_rows.get(conn, ref, environment_id=environment)
    if row is None:
        raise NotFound("Agent", ref)
    return agent_read(row)


async def _variant_row(conn: AsyncConnection, agent_id: str, ref: str, environment: str) -> RowMapping:
    row = await variant_rows.get(conn, agent_id, ref, environment_id=environment)
    if row is None:
        raise NotFound("Variant", ref)
    return row


# ------------------------------------------------------------------------------ agents


async def agents_page(db: Database, q: str, after: str | None, *, limit: int, named: Named) -> tuple[Page, Where]:
    """The agents whose name or slug holds `q`, newest first."""
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        rows = await agent_rows.search_page(conn, text=q, after=after, limit=limit + 1, environment_id=environment)
    return _page(rows, agent_read, limit), where


async def agent(db: Database, agent_ref: str, *, named: Named) -> tuple[dict[str, Any], Where]:
    """The agent object as seen from the environment (the edit form, and the pages that change it)."""
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        return await _agent(conn, agent_ref, environment), where


@dataclass(frozen=True)
class Arm:
    """An experiment's arm as it serves subjects: running, the config snapshotted at its
    start; a draft, the config it would snapshot were it started now."""

    arm: int
    weight: int
    share: float  # percent of the subjects, rounded to 0.1
    live: bool  # a `live` arm (the variant active at start)
    config: ResolvedAgentConfig  # what it serves: `variant_id`, `variant_slug`, the values
    changes: list[dict[str, Any]]  # what its subjects' config changes, for a confirmation


@dataclass(frozen=True)
class Split:
    """The agent's running experiment: who gets what while it runs. Requests with a subject
    get its arms (by weight); requests without one get the live config."""

    experiment: dict[str, Any]
    arms: list[Arm]


def _arms(
    stored: list[Mapping[str, Any]],
    configs: Sequence[ResolvedAgentConfig],
    changes: Callable[[ResolvedAgentConfig], list[dict[str, Any]]] = lambda _: [],
) -> list[Arm]:
    total = sum(arm["weight"] for arm in stored)
    return [
        Arm(
            arm["arm"],
            arm["weight"],
            round(100 * arm["weight"] / total, 1),
            bool(arm.get("live")),
            config,
            changes(config),
        )
        for arm, config in zip(stored, configs, strict=True)
    ]


async def _split(conn: AsyncConnection, agent: Mapping[str, Any], environment: str) -> Split | None:
    row = await experiment_rows.running(conn, agent["id"], environment_id=environment)
    if row is None:
        return None
    return Split(experiment_read(row), _arms(row["arms"], await arm_configs(conn, row, agent_slug=agent["slug"])))


@dataclass(frozen=True)
class AgentPage:
    agent: dict[str, Any]
    resolved: ResolvedAgentConfig  # the live config (every request's, or, while `split`, those without a subject)
    variants: Page
    slugs: Slugs  # every variant, paged or not (the clone picker)
    usage: dict[str, Any]  # the API's usage object
    split: Split | None  # the running experiment, if any
    plan: Plan  # who gets what in the environment: rules, split, the plain resolution
    preview: Preview | None  # what the previewed context gets, if one was asked
    where: Where  # the environment it shows, and the switcher's choices


@dataclass(frozen=True)
class Context:
    """A context to preview: a subject (None: none) and attributes (strings, as `attr.*`)."""

    subject: str | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class Preview:
    """What a context gets in the environment, and why: `kind` is "rule" (`index` into the
    plan's rules), "experiment" (`index`: the arm), "variant" (the active one) or "agent"
    (the base config)."""

    context: Context
    config: ResolvedAgentConfig
    kind: str
    index: int | None


def preview_of(plan: Plan, context: Context) -> Preview:
    """The config the context gets, picked by the resolution's own order (`Plan.pick`, the
    path every resolution of a context takes), and which step of it served."""
    picked = plan.pick(context.subject, context.attributes)
    config = plan.configs[picked]
    if picked < len(plan.rules):
        return Preview(context, config, "rule", picked)
    if picked < len(plan.rules) + len(plan.arms):
        return Preview(context, config, "experiment", picked - len(plan.rules))
    return Preview(context, config, "variant" if config.variant_id is not None else "agent", None)


async def agent_page(
    db: Database, agent_ref: str, after: str | None, *, limit: int, named: Named, context: Context | None = None
) -> AgentPage:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        resolved = await resolve_agent_config(conn, found["id"], environment=environment)
        rows = await variant_rows.list_page(
            conn, found["id"], after=after, limit=limit + 1, is_active=None, environment_id=environment
        )
        slugs = await variant_rows.slugs(conn, found["id"])
        usage = usage_of(await outcome_rows.usage_totals(conn, found["id"]))
        split = await _split(conn, found, environment)
        plan = await plans.build(conn, found["id"], environment)
    preview = preview_of(plan, context) if context is not None else None
    return AgentPage(found, resolved, _page(rows, variant_read, limit), slugs, usage, split, plan, preview, where)


# ---------------------------------------------------------------------------- variants


async def agent_and_variant(
    db: Database, agent_ref: str, variant_ref: str, *, named: Named
) -> tuple[dict[str, Any], dict[str, Any], Where]:
    """The agent and variant objects (for the pages that change the variant)."""
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        return found, variant_read(await _variant_row(conn, found["id"], variant_ref, environment)), where


@dataclass(frozen=True)
class VariantPage:
    agent: dict[str, Any]
    variant: dict[str, Any]
    preview: ResolvedAgentConfig  # the agent's config were this variant active
    live: ResolvedAgentConfig  # what the agent runs with now
    changes: list[dict[str, Any]]  # the preview against `against` (`diffs.config_changes`)
    against_error: str | None  # why there is nothing to compare with
    others: Slugs  # the comparison picker
    where: Where  # the environment it shows, and the switcher's choices
    running: dict[str, Any] | None = None  # the split running or paused in the environment (blocks a rollout's start)


async def variant_page(
    db: Database, agent_ref: str, variant_ref: str, against: str = "live", *, named: Named
) -> VariantPage:
    """The variant, its preview, the live config, and the preview's changes against
    `against`: "live", "base", another variant (id or slug) or a revision id."""
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        row = await _variant_row(conn, found["id"], variant_ref, environment)
        preview = await resolve_agent_config(conn, found["id"], variant=row["id"], environment=environment)
        live = await resolve_agent_config(conn, found["id"], environment=environment)
        changes: list[dict[str, Any]] = []
        against_error = None
        if against == "live":
            changes = config_changes(live.config(), preview.config())
        else:
            try:
                origin = await _against(conn, found, against, environment)
            except DomainError as error:  # not base, nor a variant, nor a revision of this agent
                against_error = error.detail
            else:
                changes = config_changes(origin, resolved_values(overrides_of(row), found["config"]))
        others = await variant_rows.slugs(conn, found["id"])
        running = await experiment_rows.running(conn, found["id"], environment_id=environment)
    return VariantPage(
        found,
        variant_read(row),
        preview,
        live,
        changes,
        against_error,
        others,
        where,
        experiment_read(running) if running is not None else None,
    )


async def _against(
    conn: AsyncConnection, agent: Mapping[str, Any], against: str, environment: str
) -> Mapping[str, Any]:
    """The resolved values a variant is compared with, as GET .../diff?against= reads them:
    the base config, the state right after a revision, or another variant."""
    if against == BASE:
        return agent["config"]
    if is_id("revision", against):
        revision = await revision_rows.get(conn, agent["id"], against)
        if revision is None:
            raise NotFound("Revision", against, param="against")
        return config_after(revision, await revision_rows.state_after(conn, revision))
    other = await variant_rows.get(conn, agent["id"], against, environment_id=environment)
    if other is None:
        raise NotFound("Variant", against, param="against")
    return resolved_values(overrides_of(other), agent["config"])


@dataclass(frozen=True)
class Activation:
    """What activating (or deactivating) a variant would change in what the agent runs."""

    agent: dict[str, Any]
    variant: dict[str, Any]
    live: ResolvedAgentConfig
    changes: list[dict[str, Any]]  # live -> after (`diffs.config_changes`); none when moot
    moot: bool  # already so: the action would change nothing
    split: Split | None  # a running experiment, whose arms the action does not change
    rules: int  # the environment's targeting rules, whose requests the action does not change
    where: Where  # the environment it shows, and the switcher's choices


async def activation(db: Database, agent_ref: str, variant_ref: str, *, activate: bool, named: Named) -> Activation:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        shown = variant_read(await _variant_row(conn, found["id"], variant_ref, environment))
        live = await resolve_agent_config(conn, found["id"], environment=environment)
        split = await _split(conn, found, environment)
        rule_set = await rule_rows.get(conn, found["id"], environment)
        rules = len(rule_set["rules"]) if rule_set is not None else 0
        moot = shown["is_active"] == activate
        if moot:
            return Activation(found, shown, live, [], moot, split, rules, where)
        after = await resolve_agent_config(
            conn, found["id"], variant=shown["id"] if activate else BASE, environment=environment
        )
    changes = config_changes(live.config(), after.config())
    return Activation(found, shown, live, changes, moot, split, rules, where)


# ----------------------------------------------------------------------------- history


@dataclass(frozen=True)
class Undone:
    """A change that was undone (the history's notice after an undo)."""

    revision: dict[str, Any]  # the revision reverted
    undo_id: str  # the `undo` revision that reverted it


@dataclass(frozen=True)
class HistoryPage:
    agent: dict[str, Any]
    revisions: Page
    next_undo: dict[str, Any] | None  # the revision an undo would revert now
    as_of: ResolvedAgentConfig | None  # what resolution returned at `at`
    as_of_error: str | None  # why it cannot say (the agent did not exist then)
    undone: Undone | None  # the revision `undone` names, if it is this agent's and undone
    where: Where  # the environment it shows, and the switcher's choices


async def history_page(
    db: Database,
    agent_ref: str,
    after: str | None,
    at: datetime | None,
    *,
    limit: int,
    named: Named,
    undone: str | None = None,
) -> HistoryPage:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        rows = await revision_rows.list_page(conn, found["id"], after=after, limit=limit + 1, target_id=None)
        undoable = await revision_rows.newest_undoable(conn, found["id"], environment_id=environment)
        as_of, as_of_error = None, None
        if at is not None:
            try:
                as_of = await resolve_at(conn, found["id"], at, environment=environment)
            except (DomainError, LookupError) as error:
                as_of_error = str(error)
        reverted = await revision_rows.get(conn, found["id"], undone) if undone else None
    return HistoryPage(
        found,
        _page(rows, revision_read, limit),
        revision_read(undoable) if undoable is not None else None,
        as_of,
        as_of_error,
        Undone(revision_read(reverted), reverted["undone_by_id"])
        if reverted is not None and reverted["undone_by_id"] is not None
        else None,
        where,
    )


async def next_undo(
    db: Database, agent_ref: str, *, named: Named
) -> tuple[dict[str, Any], dict[str, Any] | None, Where]:
    """The agent, and the revision an undo in the environment would revert now (its newest
    change made there or to shared definitions; None when nothing is left)."""
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        undoable = await revision_rows.newest_undoable(conn, found["id"], environment_id=environment)
    return found, revision_read(undoable) if undoable is not None else None, where


# ------------------------------------------------------------------------- experiments


@dataclass(frozen=True)
class ExperimentsPage:
    agent: dict[str, Any]
    experiments: Page
    slugs: Slugs  # the arm pickers
    where: Where  # the environment it shows, and the switcher's choices


async def experiments_page(
    db: Database, agent_ref: str, after: str | None, *, limit: int, named: Named
) -> ExperimentsPage:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        rows = await experiment_rows.list_page(
            conn, found["id"], after=after, limit=limit + 1, status=None, environment_id=environment
        )
        slugs = await variant_rows.slugs(conn, found["id"])
        now = await _now(conn)
        shown = [await _experiment(conn, row, now) for row in rows]
    return ExperimentsPage(found, Page.of(shown, limit), slugs, where)


async def _now(conn: AsyncConnection) -> datetime:
    """The database's clock now (what a rollout's `progress` is computed against)."""
    now: datetime = await conn.scalar(select(func.clock_timestamp()))  # type: ignore[assignment]  # never NULL
    return now


async def _experiment(conn: AsyncConnection, row: RowMapping, now: datetime) -> dict[str, Any]:
    """The experiment object as the API shows it: a started rollout's with its `progress`."""
    progress = None
    if row["kind"] == "rollout" and row["step"] is not None:
        progress = rollout_figures.progress(row, await rollout_rows.step_totals(conn, row["id"]), now)
    return experiment_read(row, progress)


# The most figures a guardrail chart draws: a long rollout's history is thinned evenly, its
# newest figures (those of a breach) always kept.
HISTORY_POINTS = 400
_HISTORY = text(
    "SELECT id, at, step, percent, guardrails FROM ("
    " SELECT id, at, step, percent, guardrails, row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS total"
    " FROM rollout_guardrail_history WHERE experiment_id = :experiment) AS h"
    " WHERE total <= :most OR n = total OR (n - 1) % CAST(ceil(total / CAST(:most AS float8)) AS bigint) = 0"
    " ORDER BY id"
)


@dataclass(frozen=True)
class Rollout:
    """What a rollout's page shows besides the experiment object (and its `progress`)."""

    now: datetime  # the instant `progress` was computed for
    history: list[dict[str, Any]]  # guardrail figures over time, oldest first: at, step, percent, guardrails
    variant: str  # the slug of the variant it rolls out (arm 1)
    live: str  # what arm 0 serves, in words: a variant's slug or "the base config"


@dataclass(frozen=True)
class ExperimentPage:
    agent: dict[str, Any]
    experiment: dict[str, Any]
    results: dict[str, Any]  # the API's results object (`outcomes.figures.results_of`)
    slugs: dict[str, str]  # variant id -> slug, to name the arms
    where: Where  # the environment it shows, and the switcher's choices
    rollout: Rollout | None = None  # a rollout's step, figures and history


async def experiment_page(db: Database, agent_ref: str, experiment_ref: str, *, named: Named) -> ExperimentPage:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        row = await experiment_rows.get(conn, found["id"], experiment_ref, environment_id=environment)
        if row is None:
            raise NotFound("Experiment", experiment_ref)
        aggregates = await outcome_rows.arm_aggregates(conn, row["id"])
        slugs = dict(await variant_rows.slugs(conn, found["id"]))
        now = await _now(conn)
        shown = await _experiment(conn, row, now)
        rollout = None
        if row["kind"] == "rollout":
            found_history = await conn.execute(_HISTORY, {"experiment": row["id"], "most": HISTORY_POINTS})
            history = [dict(one) for one in found_history.mappings()]
            live = await _live_words(conn, row, found["id"], environment, slugs)
            rollout = Rollout(now, history, slugs.get(row["arms"][1]["variant_id"], "a deleted variant"), live)
    return ExperimentPage(found, shown, results_of(row, aggregates), slugs, where, rollout)


async def _live_words(
    conn: AsyncConnection, row: RowMapping, agent_id: str, environment: str, slugs: dict[str, str]
) -> str:
    """What a rollout's arm 0 serves: the variant live at its start (a draft: live now)."""
    variant_id = row["arms"][0]["variant_id"]
    if row["status"] == "draft":
        variant_id = (await resolve_agent_config(conn, agent_id, environment=environment)).variant_id
    if variant_id is None:
        return "the base config"
    return f"variant {slugs.get(variant_id, 'a deleted variant')}"


@dataclass(frozen=True)
class ExperimentAction:
    """What starting (or stopping) an experiment would do: who gets what."""

    agent: dict[str, Any]
    experiment: dict[str, Any]
    live: ResolvedAgentConfig  # what requests without a subject get (and, once stopped, every request)
    # Start: each arm's config were it started now, and its changes from the live config.
    # Stop: each arm's snapshot, and its subjects' changes back to the live config.
    arms: list[Arm]
    running: dict[str, Any] | None  # the agent's running experiment (this one, or one that blocks a start)
    where: Where  # the environment it shows, and the switcher's choices


async def experiment_action(
    db: Database, agent_ref: str, experiment_ref: str, *, start: bool, named: Named
) -> ExperimentAction:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        row = await experiment_rows.get(conn, found["id"], experiment_ref, environment_id=environment)
        if row is None:
            raise NotFound("Experiment", experiment_ref)
        live = await resolve_agent_config(conn, found["id"], environment=environment)
        running = await experiment_rows.running(conn, found["id"], environment_id=environment)
        configs: Sequence[ResolvedAgentConfig]
        if row["status"] == "draft":
            # As the start would snapshot them: a `live` arm takes the variant active now.
            configs = [
                await resolve_agent_config(
                    conn,
                    found["id"],
                    variant=(live.variant_id if arm.get("live") else arm["variant_id"]) or BASE,
                    environment=environment,
                )
                for arm in row["arms"]
            ]
        else:
            configs = await arm_configs(conn, row, agent_slug=found["slug"])
        shown = await _experiment(conn, row, await _now(conn))
    if start and row["status"] == "draft":
        arms = _arms(row["arms"], configs, lambda arm: config_changes(live.config(), arm.config()))
    elif not start and row["status"] in ("running", "paused"):
        arms = _arms(row["arms"], configs, lambda arm: config_changes(arm.config(), live.config()))
    else:
        arms = _arms(row["arms"], configs)
    return ExperimentAction(found, shown, live, arms, experiment_read(running) if running is not None else None, where)


# ------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class RulesPage:
    agent: dict[str, Any]
    rule_set: dict[str, Any]  # the API's rule-set object in the environment
    slugs: Slugs  # what a rule may serve, besides the base config
    where: Where  # the environment it shows, and the switcher's choices


async def rules_page(db: Database, agent_ref: str, *, named: Named) -> RulesPage:
    async with db.snapshot() as conn:
        where = await _where(conn, named)
        environment = where.id
        found = await _agent(conn, agent_ref, environment)
        rule_set = rule_set_read(found["id"], where.slug, await rule_rows.get(conn, found["id"], environment))
        slugs = await variant_rows.slugs(conn, found["id"])
    return RulesPage(found, rule_set, slugs, where)
