"""Revisions: the history of an agent, and what is built on it (undo, restore, time travel)."""
