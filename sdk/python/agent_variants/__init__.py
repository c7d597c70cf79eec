"""agent-variants for agents: the resolved config and experiment assignment.

    from agent_variants import ResolvedAgentConfig, assign

`ResolvedAgentConfig` and `assign` are the same objects the service uses (one definition,
here), so a config resolved locally from a bundle is exactly what the service would have
answered. `AsyncAgentVariants.resolve` answers from a local copy of the agent's bundle that
a background watch keeps current.
"""

from agent_variants.assignment import assign
from agent_variants.client import AsyncAgentVariants
from agent_variants.config import AgentNotFound, ResolvedAgentConfig, VariantNotFound
from agent_variants.errors import (
    AgentVariantsError,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)

__all__ = [
    "AgentNotFound", "AgentVariantsError", "AsyncAgentVariants", "Conflict", "Forbidden", "NotFound",
    "PreconditionFailed", "RateLimited", "ResolvedAgentConfig", "Unauthorized", "Unavailable", "ValidationFailed",
    "VariantNotFound", "assign",
]
__version__ = "0.1.0"
