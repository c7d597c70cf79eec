"""Slugs: the one slug function, and picking a free one when a derived slug is taken."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

from slugify import slugify as python_slugify

from services.shared.agent_config import BASE
from services.shared.identifiers import SLUG_MAX_LENGTH

# An experiment's arm that serves the variant active when the experiment starts (or the
# base config when none is).
LIVE = "live"
# Variants may not be called `base` (the agent's own config where a variant is expected) or
# `live` (the arm above).
RESERVED_VARIANT_SLUGS = frozenset({BASE, LIVE})


def slugify(name: str) -> str:
    """Lowercase kebab-case of `name`, transliterated, at most 64 characters, or "".
    The contract names it `services.api.app._slugify`, bound to this function."""
    return python_slugify(name, max_length=SLUG_MAX_LENGTH, lowercase=True)


def with_suffix(stem: str, n: int) -> str:
    """`stem-n`, the stem shortened (never ending in `-`) so the whole fits in 64."""
    suffix = f"-{n}"
    return stem[: SLUG_MAX_LENGTH - len(suffix)].rstrip("-") + suffix


def candidates(stem: str, *, reserved: frozenset[str] = frozenset()) -> Iterator[str]:
    """`stem`, `stem-2`, `stem-3`, ... skipping reserved slugs."""
    if stem not in reserved:
        yield stem
    n = 2
    while True:
        candidate = with_suffix(stem, n)
        if candidate not in reserved:
            yield candidate
        n += 1


async def first_free(
    stem: str,
    taken: Callable[[list[str]], Awaitable[set[str]]],
    *,
    reserved: frozenset[str] = frozenset(),
    batch: int = 32,
) -> str:
    """The first candidate slug not in use, asking `taken` about a batch at a time.

    Another request may take it before we insert; the insert then finds the conflict and
    the caller asks again.
    """
    pending = candidates(stem, reserved=reserved)
    while True:
        chunk = [next(pending) for _ in range(batch)]
        used = await taken(chunk)
        for slug in chunk:
            if slug not in used:
                return slug


async def insert_with_derived_slug(
    stem: str,
    *,
    taken: Callable[[list[str]], Awaitable[set[str]]],
    insert: Callable[[str], Awaitable[bool]],
    reserved: frozenset[str] = frozenset(),
) -> str:
    """Insert under the first free slug from `stem`; `insert` returns False when a racing
    request took that slug first (ON CONFLICT DO NOTHING), and the next one is tried."""
    while True:
        slug = await first_free(stem, taken, reserved=reserved)
        if await insert(slug):
            return slug
