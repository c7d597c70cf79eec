"""Webhooks (contract 1.1): subscriptions to changes, delivered signed and at least once."""
