"""Fixtures for migration tests: an empty database per test."""

from __future__ import annotations

import pytest


@pytest.fixture
def fresh_url(empty_url: str) -> str:
    """An empty database, made for this test and dropped after it."""
    return empty_url
