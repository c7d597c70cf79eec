"""Property tests of the one slug function and of collision suffixes (no database)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.api.app import _slugify
from services.api.slugs import with_suffix

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX = 64

# Names as people type them: any Unicode (letters, marks, symbols, spaces), plus
# ASCII-heavy ones so long, mostly-kept names (which hit the length cap) come up often.
names = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="ascii"), max_size=200),
    st.text(alphabet=st.sampled_from("abcXYZ019 -_.'"), min_size=50, max_size=150),
)
# What `with_suffix` gets: a slug that was derived from a name, so never empty.
stems = st.from_regex(r"\A[a-z0-9]{1,12}(-[a-z0-9]{1,12}){0,8}\Z").filter(lambda s: len(s) <= MAX)


@given(names)
@example("Ünïcödé Bot")
@example("-" * 100)
@example("a-" * 40)
@example("x" * 63 + " y")
def test_slug_is_empty_or_kebab_case_within_the_cap(name):
    slug = _slugify(name)
    assert slug == "" or SLUG.match(slug), slug
    assert slug == slug.lower()
    assert len(slug) <= MAX
    assert not slug.endswith("-")
    assert not slug.startswith("-")


@given(names)
def test_slug_is_deterministic(name):
    assert _slugify(name) == _slugify(name)
    assert _slugify(str(name)) == _slugify(name)  # an equal string, not the same object


@given(names)
def test_a_derived_slug_is_its_own_slug(name):
    """A derived slug is a valid explicit slug: slugifying it again changes nothing."""
    slug = _slugify(name)
    assert _slugify(slug) == slug


@given(
    st.lists(st.from_regex(r"\A[a-z0-9]{1,10}\Z"), min_size=1, max_size=5),
    st.sampled_from([" ", "  ", " - ", "_", "."]),
)
def test_plain_ascii_words_become_the_words_joined_by_hyphens(words, separator):
    assert _slugify(separator.join(words)) == "-".join(words)


@given(st.from_regex(r"\A[a-z0-9]{1,10}\Z"))
def test_case_does_not_matter(word):
    assert _slugify(word.upper()) == _slugify(word) == word


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Ünïcödé Bot", "unicode-bot"),
        ("Support Bot", "support-bot"),
        ("  Hello,   World!  ", "hello-world"),
        ("GPT-4o mini (v2)", "gpt-4o-mini-v2"),
        ("Crème Brûlée", "creme-brulee"),
        ("", ""),
        ("!!!", ""),
        ("---", ""),
        ("x" * 100, "x" * 64),
        ("a" * 63 + " b", "a" * 63),  # cut at 64 would end in "-": the hyphen goes
    ],
)
def test_examples(name, slug):
    assert _slugify(name) == slug


@given(stems, st.integers(min_value=2, max_value=10**9))
@example("x" * 64, 2)
@example("a" * 61 + "-b", 2)  # the cut would end in "-"
@example("a" * 62 + "-b", 10)
def test_suffixed_slug_fits_is_valid_and_ends_with_the_number(stem, n):
    slug = with_suffix(stem, n)
    assert len(slug) <= MAX
    assert SLUG.match(slug), slug
    assert slug.endswith(f"-{n}")
    # The stem is only shortened, never changed otherwise.
    assert stem.startswith(slug[: -len(f"-{n}")])


@given(stems, st.integers(min_value=2, max_value=10**6))
def test_suffix_keeps_the_whole_stem_when_it_fits(stem, n):
    suffix = f"-{n}"
    if len(stem) + len(suffix) <= MAX:
        assert with_suffix(stem, n) == stem + suffix
    else:
        assert len(with_suffix(stem, n)) <= MAX


@given(stems, st.integers(min_value=2, max_value=10**6), st.integers(min_value=2, max_value=10**6))
def test_different_numbers_give_different_slugs(stem, n, m):
    if n != m:
        assert with_suffix(stem, n) != with_suffix(stem, m)
