"""Environments (contract 1.1): where a config is served, `production` and up to 99 more."""
