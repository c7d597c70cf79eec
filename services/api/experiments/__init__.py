"""Experiments: A/B tests that split an agent's traffic between variants."""
