"""Agents: the base config and what identifies an agent."""
