"""SQLAlchemy tables. Migrations are written by hand and checked against these by a test."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.shared.agent_config import INTEGER_FIELDS, KEYED_FIELDS, NUMBER_FIELDS, STRING_FIELDS
from services.shared.identifiers import PRODUCTION_ENVIRONMENT_ID

# Names match PostgreSQL's own defaults, so constraints can be found and dropped by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The metrics a rollout's step totals keep a count, sum and sum of squares of (success rate
# keeps `judged` and `successes`): score, latency_ms, cost_usd, output_tokens.
ROLLOUT_METRICS = ("score", "latency", "cost", "output")

# Ids sort by byte value, which is creation order for ULIDs whatever the database locale.
ID_TYPE = String(40, collation="C")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def config_checks() -> list[CheckConstraint]:
    """Range checks for the twelve fields: the database refuses what the API would.

    A NULL passes a CHECK, which is what "inherit" needs on variants.
    """
    checks = []
    for name, (low, high) in STRING_FIELDS.items():
        checks.append(CheckConstraint(f"char_length({name}) BETWEEN {low} AND {high}", name=f"{name}_length"))
    for name, (least, most) in {**NUMBER_FIELDS, **INTEGER_FIELDS}.items():
        checks.append(CheckConstraint(f"{name} BETWEEN {least} AND {most}", name=f"{name}_range"))
    return checks


def keyed_checks(*, variant: bool) -> list[CheckConstraint]:
    """The keyed fields (contract 1.1) are JSON objects (`params_unset` an array)."""
    checks = [CheckConstraint(f"jsonb_typeof({name}) = 'object'", name=f"{name}_object") for name in KEYED_FIELDS]
    if variant:
        checks.append(CheckConstraint("jsonb_typeof(params_unset) = 'array'", name="params_unset_array"))
    return checks


def _keyed_columns(*, variant: bool) -> dict[str, Any]:
    """`params`, `tools`, `variables` (empty: none; on a variant, none overridden), and on a
    variant `params_unset`, the base params it drops."""
    columns: dict[str, Any] = {
        name: mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb")) for name in KEYED_FIELDS
    }
    if variant:
        columns["params_unset"] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    return columns


def _config_columns(*, nullable: bool) -> dict[str, Any]:
    """The twelve config columns; nullable on variants, where NULL means "inherit"."""
    columns: dict[str, Any] = {}
    for name in STRING_FIELDS:
        columns[name] = mapped_column(Text, nullable=nullable)
    columns["temperature"] = mapped_column(Double, nullable=nullable)
    for name in INTEGER_FIELDS:
        kind = BigInteger if name == "token_budget" else Integer
        columns[name] = mapped_column(kind, nullable=nullable)
    return columns


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("slug"),
        *config_checks(),
        *keyed_checks(variant=False),
    )

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    locals().update(_config_columns(nullable=False))
    locals().update(_keyed_columns(variant=False))
    # A JSON Schema every servable resolved `params` must satisfy (contract 1.1), or none.
    params_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set while the agent is archived (a DELETE): 404 to every route but its history and unarchive.
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (
        UniqueConstraint("agent_id", "slug"),
        # Lists page through an agent's variants by id.
        Index("ix_variants_agent_id_id", "agent_id", "id"),
        CheckConstraint(
            "cloned_from_source IS NULL OR cloned_from_source IN ('base', 'variant')",
            name="cloned_from_source",
        ),
        *config_checks(),
        *keyed_checks(variant=True),
    )

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    variant_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    locals().update(_config_columns(nullable=True))
    locals().update(_keyed_columns(variant=True))
    # Where a clone came from; the source variant may be deleted later, so no foreign key.
    cloned_from_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cloned_from_variant_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Activation(Base):
    """Which variant of an agent is active in an environment (contract 1.1). The primary key
    is the single-active rule, enforced by the database under any concurrency: at most one
    row, so at most one active variant, per agent and environment."""

    __tablename__ = "activations"
    __table_args__ = (
        # A variant's `active_in`, and the cascade when a variant is deleted.
        Index("ix_activations_variant_id", "variant_id"),
        # "Is anything active in this environment?" (deleting an environment).
        Index("ix_activations_environment_id", "environment_id"),
    )

    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    # Cascade: only an environment with nothing active may be deleted (`environments.repository.in_use`).
    environment_id: Mapped[str] = mapped_column(
        ID_TYPE, ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    variant_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("variants.id", ondelete="CASCADE"))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Revision(Base):
    """One change to an agent or something it owns, written in the change's transaction."""

    __tablename__ = "revisions"
    __table_args__ = (
        CheckConstraint("target IN ('agent', 'variant', 'experiment', 'rule_set')", name="target"),
        # "The newest revision at or before T" per agent and per target, in the order the
        # queries sort by (created_at, then id), so each is one backward index step.
        Index("ix_revisions_agent_id_created_at_id", "agent_id", "created_at", "id"),
        Index("ix_revisions_target_id_created_at_id", "target_id", "created_at", "id"),
        Index("ix_revisions_agent_id_id", "agent_id", "id"),
        # An environment's changes (undo and time travel in it), newest first.
        Index("ix_revisions_agent_id_environment_id_created_at_id", "agent_id", "environment_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(ID_TYPE)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(Text, nullable=True)
    api_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The environment the change was made in; null for a change to shared definitions.
    environment_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    # The active variant in the change's environment right after it (production's for a
    # shared change), and in every environment: {environment id: variant id}, those with one.
    active_variant_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    active_variants: Mapped[dict[str, str]] = mapped_column(JSONB)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    # For an undo: the revision it reverted. On a reverted revision: the undo that did.
    reverts_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    undone_by_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    # clock_timestamp(), read after the agent's row lock is held: commit order per agent.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())


class IdempotencyKey(Base):
    """A POST's Idempotency-Key: the request's fingerprint and, once done, its response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("state IN ('in_flight', 'done')", name="state"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # Who holds the claim: a request that lost it (lease taken over) may not store or release.
    owner: Mapped[str] = mapped_column(String(32))
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB, nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # The results of the request's transactions, each saved in the transaction it belongs to
    # (a list, in order): a retry after its process died replays them instead of acting again.
    effects: Mapped[list[Any] | None] = mapped_column(JSONB, nullable=True)
    # In-flight claims older than this are abandoned (their process died) and can be retaken.
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Experiment(Base):
    """An A/B test of an agent's variants (or its base config), with weighted arms."""

    __tablename__ = "experiments"
    __table_args__ = (
        UniqueConstraint("agent_id", "slug"),
        CheckConstraint(
            "status IN ('draft', 'running', 'paused', 'stopped', 'completed', 'rolled_back')", name="status"
        ),
        CheckConstraint("kind IN ('experiment', 'rollout')", name="kind"),
        # At most one split running (or, a rollout, paused) per agent and environment,
        # enforced by the database.
        Index(
            "uq_experiments_one_running_per_agent_environment",
            "agent_id",
            "environment_id",
            unique=True,
            postgresql_where=text("status IN ('running', 'paused')"),
        ),
        # The scheduler's "which rollouts are due?" over the few that are live.
        Index(
            "ix_experiments_live_rollouts",
            "id",
            postgresql_where=text("kind = 'rollout' AND status IN ('running', 'paused')"),
        ),
        Index("ix_experiments_agent_id_id", "agent_id", "id"),
        Index("ix_experiments_environment_id", "environment_id"),
    )

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"))
    # Cascade: only an environment with no running experiment may be deleted.
    environment_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("environments.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    salt: Mapped[str] = mapped_column(Text)
    # [{"arm": 0, "variant_id": "var_..." | null, "weight": 1-10000}, ...], frozen once started.
    arms: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Contract 1.1: `experiment` (weighted arms) or `rollout` (one variant, step by step).
    kind: Mapped[str] = mapped_column(String(16), server_default="experiment")
    # A rollout's [{"percent", "hold_seconds"}], [{"metric", "max_degradation"}] and the
    # outcomes each guardrail needs per arm before it can pass or be breached.
    steps: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB, nullable=True)
    guardrails: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB, nullable=True)
    min_outcomes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The step in force (from 0) and since when; null before the start.
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Why it paused, stopped or rolled back, in words (`config_changed`, a guardrail's figures).
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Outcome(Base):
    """What one run of an agent cost and how it went. Append-only; variant, experiment and
    environment ids are kept as reported (no foreign keys: a variant or an environment may be
    deleted, its outcomes stay)."""

    __tablename__ = "outcomes"
    __table_args__ = (
        CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name="tokens"),
        CheckConstraint("latency_ms >= 0", name="latency_ms"),
        CheckConstraint("cost_usd >= 0", name="cost_usd"),
        # /usage groups an agent's outcomes by variant.
        Index("ix_outcomes_agent_id_variant_id", "agent_id", "variant_id"),
        # ... and the exact percentiles of an arm's latencies (arms of up to 100,000 outcomes).
        Index(
            "ix_outcomes_experiment_id_variant_id_latency_ms",
            "experiment_id",
            "variant_id",
            "latency_ms",
            postgresql_where=text("experiment_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"))
    variant_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    experiment_id: Mapped[str | None] = mapped_column(ID_TYPE, nullable=True)
    # The environment it was reported in (contract 1.1); outcomes stored before are production's.
    # A constant default: adding the column rewrote nothing (migration e5a7c9b1d3f6).
    environment_id: Mapped[str] = mapped_column(ID_TYPE, server_default=text(f"'{PRODUCTION_ENVIRONMENT_ID}'"))
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Double)
    cost_usd: Mapped[float | None] = mapped_column(Double, nullable=True)
    # Contract 1.1: an outcome reported without `cost_usd` gets it at ingestion from the served
    # model's catalog prices. This is that estimate, exact (`cost_usd` holds it as a double);
    # NULL when the outcome reported its own cost, or no price was known. Non-null marks the
    # outcome's cost as estimated.
    estimated_cost_usd: Mapped[Any] = mapped_column(Numeric, nullable=True)
    success: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    score: Mapped[float | None] = mapped_column(Double, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The step of its rollout in force when it arrived (null for other outcomes).
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)


class UsageTotal(Base):
    """An agent's outcomes summed per environment and variant, kept up to date by every batch
    in the same transaction (so /usage is exact the moment a 202 returns), so that usage
    costs one row per environment and variant to read, however many outcomes there are.
    `variant_key` is the variant id, or "" for the base config (a primary key cannot hold
    null)."""

    __tablename__ = "usage_totals"

    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    # As on outcomes: no foreign key, totals before contract 1.1 are production's.
    environment_id: Mapped[str] = mapped_column(
        ID_TYPE, primary_key=True, server_default=text(f"'{PRODUCTION_ENVIRONMENT_ID}'")
    )
    variant_key: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    outcomes: Mapped[int] = mapped_column(BigInteger)
    # Sums of up to 2**62 per outcome: beyond what a bigint holds after a few of them.
    input_tokens: Mapped[int] = mapped_column(Numeric(40, 0))
    output_tokens: Mapped[int] = mapped_column(Numeric(40, 0))
    # The known costs, summed exactly (reported ones as their 15-digit decimals, estimated ones
    # as estimated), and the part of it that was estimated (migration c8e0a2b4d6f9).
    cost_usd: Mapped[Any] = mapped_column(Numeric, server_default="0")
    estimated_cost_usd: Mapped[Any] = mapped_column(Numeric, server_default="0")


class ExperimentArmTotal(Base):
    """An experiment's outcomes summed per arm (per variant id, "" for the base config), so
    that results read one row per arm however many outcomes there are.

    Kept by statement triggers on `outcomes` (migration a7d9f1b3c5e8), in the transaction
    that inserts or deletes the rows, whoever does: the API's COPY, a purge's cascade, a
    hand-written INSERT. Scores count clamped to +-1e12, and their sums are exact: each
    double is converted to numeric exactly, so the mean and variance computed from these
    sums are those of the stored scores (`outcomes.figures`)."""

    __tablename__ = "experiment_arm_totals"

    experiment_id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    variant_key: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    outcomes: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(Numeric(40, 0))
    output_tokens: Mapped[int] = mapped_column(Numeric(40, 0))
    judged: Mapped[int] = mapped_column(BigInteger)  # outcomes that report `success`
    successes: Mapped[int] = mapped_column(BigInteger)
    scored: Mapped[int] = mapped_column(BigInteger)  # outcomes that report `score`
    score_sum: Mapped[Any] = mapped_column(Numeric)  # exact: unbounded scale
    score_sumsq: Mapped[Any] = mapped_column(Numeric)
    # As in `UsageTotal`, kept by their own triggers (`outcomes_cost_*`, migration c8e0a2b4d6f9).
    cost_usd: Mapped[Any] = mapped_column(Numeric, server_default="0")
    estimated_cost_usd: Mapped[Any] = mapped_column(Numeric, server_default="0")
    # The other moments results' always-valid intervals need, kept by `outcomes_moments_*`
    # (migration d9f1b3c5e7a0): latencies (clamped to [0, 1e12]; their count is `outcomes`) and
    # output tokens summed, and squared, as their numeric casts give them; `costed` counts the
    # outcomes whose cost `cost_usd` sums, and `cost_usd_sumsq` sums its squares.
    latency_ms_sum: Mapped[Any] = mapped_column(Numeric, server_default="0")
    latency_ms_sumsq: Mapped[Any] = mapped_column(Numeric, server_default="0")
    output_tokens_sumsq: Mapped[Any] = mapped_column(Numeric, server_default="0")
    costed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_usd_sumsq: Mapped[Any] = mapped_column(Numeric, server_default="0")


class RolloutStepTotal(Base):
    """A rollout's outcomes summed per arm and step (the step in force when each arrived):
    each metric's count, sum and sum of squares, what a guardrail's confidence sequence
    (`services.shared.stats`) is computed from. Written with the outcomes, in their
    transaction (`outcomes.service`)."""

    __tablename__ = "rollout_step_totals"

    experiment_id: Mapped[str] = mapped_column(
        ID_TYPE, ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    arm: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    judged: Mapped[int] = mapped_column(BigInteger, server_default="0")
    successes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    locals().update(
        {
            f"{metric}_{part}": mapped_column(kind, nullable=False, server_default="0")
            for metric in ROLLOUT_METRICS
            for part, kind in (("n", BigInteger), ("sum", Double), ("sumsq", Double))
        }
    )


class RolloutGuardrailHistory(Base):
    """A rollout's guardrails' figures over time (`GET .../guardrail_history`)."""

    __tablename__ = "rollout_guardrail_history"
    __table_args__ = (Index("ix_rollout_guardrail_history_experiment_id_at", "experiment_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("experiments.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    step: Mapped[int] = mapped_column(Integer)
    percent: Mapped[int] = mapped_column(Integer)
    guardrails: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class ExperimentLatencyBin(Base):
    """How many of an arm's latencies fall in each bin of DDSketch's logarithmic mapping at
    1% relative accuracy (`bin` is its key; zeros are the smallest integer, infinities and
    NaN the largest): the latency percentiles of arms beyond 100,000 outcomes. Kept by the
    same triggers as `ExperimentArmTotal`."""

    __tablename__ = "experiment_latency_bins"

    experiment_id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    variant_key: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """A credential: a name, a scope and the SHA-256 of its secret (never the secret).

    Revoked keys stay, so a revision's `api_key` name always names exactly one key.
    A key bound to an environment (contract 1.1) works in that environment only.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_environment_id", "environment_id"),
        UniqueConstraint("name"),
        UniqueConstraint("secret_hash"),
        CheckConstraint("scope IN ('resolve', 'read', 'write', 'admin')", name="scope"),
        CheckConstraint("char_length(name) BETWEEN 1 AND 64", name="name_length"),
        CheckConstraint("octet_length(secret_hash) = 32", name="secret_hash_length"),
    )

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Null: unbound (every environment). No cascade, and no SET NULL: an environment a live
    # key is bound to is in use (`environments.repository.in_use` refuses its deletion), and
    # a live key must never end up unbound, with more access, because its environment went.
    # Deleting an environment unbinds only the keys that no longer work (revoked, expired).
    environment_id: Mapped[str | None] = mapped_column(ID_TYPE, ForeignKey("environments.id"), nullable=True)


class Environment(Base):
    """Where a config is served (contract 1.1): `production`, made by the migration with a
    fixed id, and up to 99 more. Activations, rule sets, experiments and bound API keys
    refer to one."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("slug"),)

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    # Never changes: requests name environments by slug (`?environment=staging`).
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RuleSet(Base):
    """An agent's targeting rules in one environment (contract 1.1), replaced whole. A row
    exists once the set has been written; `rules` always hold ids, and name the variants they
    serve by id (`base` for the base config)."""

    __tablename__ = "rule_sets"
    __table_args__ = (Index("ix_rule_sets_environment_id", "environment_id"),)

    agent_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    # Cascade: only empty sets can be left when an environment is deleted (`environments.repository.in_use`).
    environment_id: Mapped[str] = mapped_column(
        ID_TYPE, ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsoleSession(Base):
    """A console sign-in: the browser holds a random token, we keep its SHA-256 (never the
    API key's secret). It lasts while its key does: revoking the key ends it."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        CheckConstraint("octet_length(token_hash) = 32", name="token_hash_length"),
        Index("ix_console_sessions_api_key_id", "api_key_id"),
    )

    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    # Null while auth is disabled (nobody signs in then).
    api_key_id: Mapped[str | None] = mapped_column(
        ID_TYPE, ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# The model catalog's bounds (contract 1.1, "Models"): a provider as the contract spells it,
# a name as long as an agent's `model_name` may be, limits within the config fields' ranges.
MODEL_PROVIDER_RE = "^[a-z0-9][a-z0-9._-]{0,63}$"
MODEL_NAME_MAX = 256
MODEL_CONTEXT_WINDOW_MAX = 100_000_000  # an agent's `context_window` at most
MODEL_MAX_OUTPUT_TOKENS_MAX = 10_000_000  # an agent's `max_tokens` at most


class Model(Base):
    """A model of the catalog (contract 1.1, "Models"): its limits and prices, seeded from a
    dated, cited source (`catalog.seed`) or written by an admin (`PUT`, `source` `api`). A
    write that can change what is served checks a catalogued model's limits; outcomes
    without a cost get one from its prices."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("provider", "name"),
        CheckConstraint(f"provider ~ '{MODEL_PROVIDER_RE}'", name="provider_format"),
        CheckConstraint(f"char_length(name) BETWEEN 1 AND {MODEL_NAME_MAX}", name="name_length"),
        CheckConstraint(f"context_window BETWEEN 1 AND {MODEL_CONTEXT_WINDOW_MAX}", name="context_window_range"),
        CheckConstraint(
            f"max_output_tokens BETWEEN 1 AND {MODEL_MAX_OUTPUT_TOKENS_MAX}", name="max_output_tokens_range"
        ),
        CheckConstraint("input_usd_per_mtok >= 0", name="input_usd_per_mtok_range"),
        CheckConstraint("output_usd_per_mtok >= 0", name="output_usd_per_mtok_range"),
    )

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    provider: Mapped[str] = mapped_column(Text)
    # May hold `/` (`meta-llama/Llama-3.1-8B-Instruct`).
    name: Mapped[str] = mapped_column(Text)
    context_window: Mapped[int | None] = mapped_column(Integer, nullable=True)  # tokens, input and output
    max_output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # US dollars per million tokens, exact (NULL: unknown).
    input_usd_per_mtok: Mapped[Any] = mapped_column(Numeric, nullable=True)
    output_usd_per_mtok: Mapped[Any] = mapped_column(Numeric, nullable=True)
    # Where the row came from: `genai-prices 0.2.5 (prices of 2026-12-06)`, or `api`.
    source: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelSeed(Base):
    """Each source the catalog was seeded from, once: a later start finds it here and seeds
    nothing, so a model an admin deleted stays deleted until a new source is installed."""

    __tablename__ = "model_seeds"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    inserted: Mapped[int] = mapped_column(Integer)  # the models it added (those missing then)
    seeded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def table_of(model: type[Base]) -> Table:
    """A model's table, typed as the `Table` it is (`__table__` is typed as any FromClause),
    for the Core statements the repositories build."""
    return cast(Table, model.__table__)


class Webhook(Base):
    """A subscription: changes matching `events` (exact, `prefix.*`, `*`) are POSTed to
    `url`, signed with `secret` (Standard Webhooks' `whsec_...`)."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONB)
    description: Mapped[str] = mapped_column(Text, server_default="")
    # Kept to sign with (an HMAC needs it), shown once at creation and at rotation.
    secret: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written in the change's own transaction and
    sent by the dispatcher (`scheduler.webhooks`) until delivered, or failed after 24 hours.
    `message_id` is the `webhook-id` every attempt carries, so receivers can drop repeats."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
        Index("ix_webhook_deliveries_agent_id", "agent_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("webhooks.id", ondelete="CASCADE"))
    # The agent it is about: a purge erases its pending payloads with it.
    agent_id: Mapped[str | None] = mapped_column(ID_TYPE, ForeignKey("agents.id", ondelete="CASCADE"), nullable=True)
    message_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
