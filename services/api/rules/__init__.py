"""Targeting rules (contract 1.1): per agent and environment, an ordered set; the first that holds serves."""
