"""Rollouts (contract 1.1): a variant shipped step by step, guarded by outcomes."""
