"""agent-variants for agents: the resolved config and experiment assignment.

    from agent_variants import ResolvedAgentConfig, assign

`ResolvedAgentConfig` and `assign` are the same objects the service uses (one definition,
here), so a config resolved locally from a bundle is exactly what the service would have
answered. The client (resolve from a pushed local copy, report outcomes) comes next.
"""

from agent_variants.assignment import assign
from agent_variants.config import AgentNotFound, ResolvedAgentConfig, VariantNotFound

__all__ = ["AgentNotFound", "ResolvedAgentConfig", "VariantNotFound", "assign"]
__version__ = "0.1.0"
