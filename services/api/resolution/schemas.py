"""The resolved config as the HTTP API shows it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from services.shared.agent_config import CONFIG_FIELDS, ResolvedAgentConfig


class ResolvedRead(BaseModel):
    object: Literal["resolved_agent_config"]
    agent_id: str
    agent_slug: str
    variant_id: str | None
    variant_slug: str | None
    source: Literal["agent", "variant", "preview", "experiment"]
    experiment_id: str | None
    arm: int | None
    model_provider: str
    model_name: str
    system_prompt: str
    user_prompt_template: str
    prompt_version: str
    temperature: float
    max_tokens: int
    context_window: int
    input_token_limit: int
    token_budget: int
    timeout_seconds: int
    max_retries: int
    provenance: dict[str, Literal["agent", "variant", "experiment"]] | None = None


class BundleArm(BaseModel):
    arm: int
    weight: int
    variant_id: str | None
    resolved: ResolvedRead


class BundleExperiment(BaseModel):
    id: str
    salt: str
    arms: list[BundleArm]


class BundleRead(BaseModel):
    """What a client needs to resolve any subject itself: the plain resolution and, while
    an experiment runs, every arm's (with `provenance`). `etag` is a hash of the content."""

    object: Literal["resolution_bundle"]
    agent_id: str
    agent_slug: str
    etag: str
    resolved: ResolvedRead
    experiment: BundleExperiment | None


def to_body(resolved: ResolvedAgentConfig, *, explain: bool) -> dict[str, Any]:
    """The resolved config as the API shows it: a `ResolvedRead`, the one shape the routes
    return and OpenAPI shows, as JSON-ready values; `provenance` only when `explain`."""
    extra: dict[str, Any] = {"provenance": resolved.provenance} if explain else {}
    return ResolvedRead(
        object="resolved_agent_config",
        agent_id=resolved.agent_id,
        agent_slug=resolved.agent_slug,
        variant_id=resolved.variant_id,
        variant_slug=resolved.variant_slug,
        source=resolved.source,
        experiment_id=resolved.experiment_id,
        arm=resolved.arm,
        **{name: getattr(resolved, name) for name in CONFIG_FIELDS},
        **extra,
    ).model_dump(exclude_unset=True)
