"""The agent config: its twelve fields, the three keyed ones (`params`, `tools`,
`variables`, contract 1.1), the cross-field rule, and `ResolvedAgentConfig`.

`ResolvedAgentConfig` is what an agent runs with: the active variant's overrides coalesced
over the agent's base config. This module is its one definition: the service imports it
from here (`services.shared.agent_config` re-exports it), and so does the SDK. Standard
library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# The twelve fields, in the contract's order.
CONFIG_FIELDS: tuple[str, ...] = (
    "model_provider",
    "model_name",
    "system_prompt",
    "user_prompt_template",
    "prompt_version",
    "temperature",
    "max_tokens",
    "context_window",
    "input_token_limit",
    "token_budget",
    "timeout_seconds",
    "max_retries",
)

# Fields that are strings, with their (min, max) length in characters.
STRING_FIELDS: dict[str, tuple[int, int]] = {
    "model_provider": (1, 64),
    "model_name": (1, 256),
    "system_prompt": (0, 200_000),
    "user_prompt_template": (0, 200_000),
    "prompt_version": (0, 64),
}
# Numeric fields with their inclusive (min, max).
NUMBER_FIELDS: dict[str, tuple[float, float]] = {"temperature": (0.0, 2.0)}
INTEGER_FIELDS: dict[str, tuple[int, int]] = {
    "max_tokens": (1, 10_000_000),
    "context_window": (0, 100_000_000),  # 0 = unspecified
    "input_token_limit": (0, 100_000_000),  # 0 = none
    "token_budget": (0, 10_000_000_000),  # 0 = none
    "timeout_seconds": (1, 86_400),
    "max_retries": (0, 100),
}
# What an agent gets for a field its create request leaves out (None = required).
DEFAULTS: dict[str, Any] = {
    "model_provider": None,
    "model_name": None,
    "system_prompt": "",
    "user_prompt_template": "",
    "prompt_version": "",
    "temperature": 1.0,
    "max_tokens": 1024,
    "context_window": 0,
    "input_token_limit": 0,
    "token_budget": 0,
    "timeout_seconds": 60,
    "max_retries": 2,
}

# Contract 1.1's keyed fields, resolved by top-level key: a variant's entry replaces the
# base's entry whole (no deep merge). A variant may also drop base params (`params_unset`)
# and base tools (an entry of exactly `{"disabled": true}`).
KEYED_FIELDS: tuple[str, ...] = ("params", "tools", "variables")
# Every field of a resolved config, in `ResolvedAgentConfig`'s order.
RESOLVED_FIELDS: tuple[str, ...] = CONFIG_FIELDS + KEYED_FIELDS
DISABLED_TOOL: dict[str, Any] = {"disabled": True}
PARAMS_MAX_KEYS = 64
PARAMS_MAX_BYTES = 64 * 1024
TOOLS_MAX = 128
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
TOOL_DESCRIPTION_MAX = 4096

# The name that stands for the agent's own base config where a variant is expected
# (`clone_from`, previews, experiment arms); no variant may take it as its slug.
BASE = "base"

# The fields the cross-field rule involves, in the order errors name them.
CONSISTENCY_FIELDS: tuple[str, ...] = ("context_window", "input_token_limit", "max_tokens")

# Contract 1.1 adds "rule" (a targeting rule served it) and "rollout" (a rollout's arm did).
Source = Literal["agent", "variant", "preview", "experiment", "rule", "rollout"]


class AgentNotFound(LookupError):
    """No agent has that id or slug."""

    def __init__(self, agent: str) -> None:
        super().__init__(f"Agent '{agent}' not found")
        self.agent = agent


class VariantNotFound(LookupError):
    """The agent has no variant with that id or slug."""

    def __init__(self, variant: str) -> None:
        super().__init__(f"Variant '{variant}' not found")
        self.variant = variant


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedAgentConfig:
    """What an agent runs with: overrides coalesced over the base config."""

    agent_id: str
    variant_id: str | None
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
    # Contract 1.1's keyed fields: further model parameters, tool definitions by name (each
    # `{"description", "parameters", "strict"?}`), and the declared template variables.
    # Empty by default, so a config built from the twelve alone is still whole.
    params: Mapping[str, Any] = field(default_factory=dict)
    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Additions after the contract's fields, each with a default.
    agent_slug: str | None = None
    variant_slug: str | None = None
    source: Source = "agent"
    experiment_id: str | None = None
    arm: int | None = None
    # Contract 1.1: the environment it was resolved in (its slug), and the targeting rule
    # that served it (None unless one did), so `report()` attributes outcomes to what ran.
    environment: str | None = None
    rule_id: str | None = None
    # The values that came from the variant rather than the agent: field names, and
    # `params.<key>`, `tools.<name>`, `variables.<name>` for the keyed fields' entries.
    overridden: frozenset[str] = field(default_factory=frozenset)

    # Dicts make the dataclass unhashable; nothing hashes a config, and equality still works.
    __hash__ = None  # type: ignore[assignment]

    @property
    def provenance(self) -> dict[str, str]:
        """Where each value came from: "agent", or "variant" ("experiment" when an
        experiment's arm chose the variant). The twelve fields by name, then each param,
        tool and variable as `params.<key>`, `tools.<name>`, `variables.<name>`."""
        other = "experiment" if self.source == "experiment" else "variant"
        names = [*CONFIG_FIELDS, *(f"{kind}.{key}" for kind in KEYED_FIELDS for key in getattr(self, kind))]
        return {name: (other if name in self.overridden else "agent") for name in names}

    def config(self) -> dict[str, Any]:
        """The resolved values as a plain dict: the twelve, then `params`, `tools`, `variables`."""
        return {f: getattr(self, f) for f in RESOLVED_FIELDS}

    def render(self, /, **variables: object) -> RenderedPrompt:
        """Both templates rendered with these variables, checked against `self.variables`
        (contract 1.1, **Render**: the rules of the service's `POST .../render`). Raises
        `RenderFailed` (a `ValidationFailed`) naming each bad variable (`variables.<name>`)."""
        return prompts.render_templates(self.system_prompt, self.user_prompt_template, self.variables, variables)

    def openai_chat_kwargs(self, rendered: RenderedPrompt) -> dict[str, Any]:
        """The keyword arguments of OpenAI's `client.chat.completions.create(**kwargs)`
        (`clients.openai_chat_kwargs` says what goes in)."""
        return clients.openai_chat_kwargs(rendered, **self._request_fields())

    def anthropic_messages_kwargs(self, rendered: RenderedPrompt) -> dict[str, Any]:
        """The keyword arguments of Anthropic's `client.messages.create(**kwargs)`; raises
        `IncompatibleConfig` for a temperature above 1 (`clients.anthropic_messages_kwargs`)."""
        return clients.anthropic_messages_kwargs(rendered, **self._request_fields())

    def client_options(self) -> dict[str, Any]:
        """`{"timeout": timeout_seconds, "max_retries"}`, which belong to the client, not the
        request: `llm.with_options(**config.client_options()).chat.completions.create(...)`."""
        return clients.client_options(timeout_seconds=self.timeout_seconds, max_retries=self.max_retries)

    def _request_fields(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "tools": self.tools,
            "params": self.params,
        }


def coalesce(overrides: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The twelve values: each override that is set (not None), else the base's."""
    resolved = {}
    for name in CONFIG_FIELDS:
        value = overrides.get(name)
        resolved[name] = base[name] if value is None else value
    return resolved


def coalesce_keyed(
    overrides: Mapping[str, Any], base: Mapping[str, Any]
) -> tuple[dict[str, dict[str, Any]], frozenset[str]]:
    """The keyed fields resolved, and which entries the variant gave (`params.top_p`, ...).

    `base` holds the agent's `params`, `tools`, `variables`; `overrides` a variant's, plus
    `params_unset`. A variant's entry replaces the base's whole; `params_unset` drops base
    params (a param the variant sets itself stays); a `{"disabled": true}` tool drops the
    base's tool of that name. Missing fields count as empty."""
    resolved: dict[str, dict[str, Any]] = {}
    given: set[str] = set()
    unset = set(overrides.get("params_unset") or ())
    for kind in KEYED_FIELDS:
        own = overrides.get(kind) or {}
        dropped = unset if kind == "params" else set()
        merged = {key: value for key, value in (base.get(kind) or {}).items() if key not in dropped}
        for key, value in own.items():
            if kind == "tools" and value == DISABLED_TOOL:
                merged.pop(key, None)
                continue
            merged[key] = value
            given.add(f"{kind}.{key}")
        resolved[kind] = merged
    return resolved, frozenset(given)


def consistency_violation(config: Mapping[str, Any]) -> str | None:
    """Why a resolved config breaks the cross-field rule, or None when it holds.

    When `context_window > 0`, `input_token_limit + max_tokens <= context_window`.
    """
    window = config["context_window"]
    if window <= 0:
        return None
    needed = config["input_token_limit"] + config["max_tokens"]
    if needed <= window:
        return None
    return (
        f"input_token_limit ({config['input_token_limit']}) + max_tokens ({config['max_tokens']})"
        f" = {needed} exceeds context_window ({window})"
    )


# Rendering and the model clients' requests live in their own modules, which never import
# this one; imported last so the class above stays this module's first word.
from agent_variants import clients, prompts  # noqa: E402
from agent_variants.prompts import RenderedPrompt  # noqa: E402
