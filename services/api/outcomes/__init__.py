"""Outcomes: what each run cost and how it went; usage totals and experiment results."""
