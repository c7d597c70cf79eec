"""agent-variants for agents: resolve an agent's config locally, report outcomes, administer.

    from agent_variants import AgentVariants

    with AgentVariants("http://config:8000", api_key="avk_...") as client:
        config = client.resolve("support-bot", subject="user-42")   # from memory after the first call
        config = client.resolve("support-bot", "user-42", attributes={"plan": "pro"}, environment="staging")
        prompt = config.render(question="Where is my order?")         # the templates, variables checked
        reply = llm.chat.completions.create(**config.openai_chat_kwargs(prompt))  # or anthropic_messages_kwargs
        client.report("support-bot", config=config, input_tokens=812, output_tokens=164, latency_ms=1930)

`AsyncAgentVariants` has the same methods as coroutines. `ResolvedAgentConfig`, `assign`
and `first_match` (targeting rules) are the same objects the service uses (one definition,
here), so a config resolved locally from a bundle is exactly what the service would have answered.
"""

from agent_variants._version import __version__
from agent_variants.assignment import assign
from agent_variants.client import AsyncAgentVariants
from agent_variants.config import AgentNotFound, ResolvedAgentConfig, VariantNotFound
from agent_variants.errors import (
    AgentVariantsError,
    Conflict,
    Forbidden,
    IncompatibleConfig,
    NotFound,
    PreconditionFailed,
    RateLimited,
    RenderFailed,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from agent_variants.outcomes import ReportStats
from agent_variants.prompts import RenderedPrompt
from agent_variants.rules import first_match
from agent_variants.sync import AgentVariants

__all__ = [
    "AgentNotFound",
    "AgentVariants",
    "AgentVariantsError",
    "AsyncAgentVariants",
    "Conflict",
    "Forbidden",
    "IncompatibleConfig",
    "NotFound",
    "PreconditionFailed",
    "RateLimited",
    "RenderFailed",
    "RenderedPrompt",
    "ReportStats",
    "ResolvedAgentConfig",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "VariantNotFound",
    "__version__",
    "assign",
    "first_match",
]
