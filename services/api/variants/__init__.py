"""Variants: named, slugged sets of overrides of an agent's config, one of them active."""
