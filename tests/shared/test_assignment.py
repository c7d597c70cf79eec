"""Experiment assignment checked against the contract text, not against the module's own code.

Contract (api-v1.md, "Experiments"):
    bucket = int.from_bytes(sha256(f"{salt}:{subject}".encode()).digest()[:8], "big") % 10000
Arms own consecutive bucket ranges in arm order. With W = sum(weights), arm i first gets
floor(w_i * 10000 / W); the buckets left over go one each to the arms with the largest
remainders (w_i * 10000) mod W, ties to the lower arm index.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from services.shared.assignment import arm_sizes, assign, bounds, bucket

# ---------------------------------------------------------------- a reference, from the contract


def ref_bucket(salt: str, subject: str) -> int:
    digest = hashlib.sha256((salt + ":" + subject).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], byteorder="big") % 10000


def ref_sizes(weights: list[int]) -> list[int]:
    total = sum(weights)
    sizes = [w * 10000 // total for w in weights]
    remainders = [w * 10000 % total for w in weights]
    left = 10000 - sum(sizes)
    given_extra: set[int] = set()
    for _ in range(left):  # pick the largest remainder not yet served; the first index wins a tie
        best = None
        for i, r in enumerate(remainders):
            if i in given_extra:
                continue
            if best is None or r > remainders[best]:
                best = i
        given_extra.add(best)
        sizes[best] += 1
    return sizes


def ref_assign(salt: str, subject: str, weights: list[int]) -> int:
    b = ref_bucket(salt, subject)
    start = 0
    for arm, size in enumerate(ref_sizes(weights)):  # linear scan over consecutive ranges
        if start <= b < start + size:
            return arm
        start += size
    raise AssertionError("bucket outside every arm")


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize(
    ("weights", "sizes"),
    [
        ([1, 1], (5000, 5000)),
        ([1, 1, 1], (3334, 3333, 3333)),  # 3333 each, remainders 1,1,1: the one leftover to arm 0
        ([1, 2], (3333, 6667)),  # 3333 r1, 6666 r2: the leftover to the larger remainder (arm 1)
        ([2, 1], (6667, 3333)),
        ([1, 1, 1, 1, 1, 1], (1667, 1667, 1667, 1667, 1666, 1666)),  # 1666 r4 each: 4 leftovers, lowest first
        ([1, 1, 1, 1, 1, 1, 1], (1429, 1429, 1429, 1429, 1428, 1428, 1428)),  # 1428 r4: 4 leftovers
        ([3, 1, 3], (4286, 1428, 4286)),  # 4285 r5, 1428 r4, 4285 r5: ties at 5 go to arms 0 and 2
        ([1, 3, 3], (1428, 4286, 4286)),  # the tie at remainder 5 between arms 1 and 2, both served
        ([2, 3, 3, 3], (1818, 2728, 2727, 2727)),  # 1818 r2, 2727 r3 x3: one leftover -> arm 1 (lowest of the tie)
        ([1, 2, 7], (1000, 2000, 7000)),
        ([5, 3, 2], (5000, 3000, 2000)),
        ([10000, 1], (9999, 1)),  # 9999 r1, 0 r10000 -> arm 1 gets the leftover
        ([1] * 10, (1000,) * 10),
    ],
)
def test_hand_computed_sizes(weights, sizes):
    assert ref_sizes(weights) == list(sizes)  # the reference agrees with the arithmetic done by hand
    assert arm_sizes(weights) == sizes
    assert bounds(tuple(weights))[-1] == 10000


def test_hand_computed_buckets():
    # sha256("s:u") computed independently of the module (hashlib directly, then hand-reduced).
    digest = hashlib.sha256(b"s:u").hexdigest()
    expected = int(digest[:16], 16) % 10000
    assert bucket("s", "u") == expected
    # Non-ASCII subjects hash their UTF-8 bytes.
    assert bucket("salt", "é") == int(hashlib.sha256("salt:é".encode()).hexdigest()[:16], 16) % 10000


def test_bucket_edges_map_to_the_documented_arms():
    # [1, 2]: arm 0 owns buckets 0..3332, arm 1 owns 3333..9999.
    assert bounds((1, 2)) == (3333, 10000)
    rng = random.Random(7)
    seen = {0: False, 1: False}
    for _ in range(20000):
        subject = f"s{rng.random()}"
        b = ref_bucket("x", subject)
        arm = assign("x", subject, [1, 2])
        assert arm == (0 if b < 3333 else 1)
        seen[arm] = True
    assert all(seen.values())


# ---------------------------------------------------------------- properties

weights_st = st.lists(st.integers(1, 10000), min_size=1, max_size=10)


@settings(max_examples=500, deadline=None)
@given(weights=weights_st)
def test_sizes_sum_to_10000_and_each_is_floor_or_ceiling_of_the_share(weights):
    sizes = arm_sizes(weights)
    assert len(sizes) == len(weights)
    assert sum(sizes) == 10000
    total = sum(weights)
    for w, size in zip(weights, sizes, strict=True):
        exact = Fraction(w * 10000, total)
        floor = exact.numerator // exact.denominator
        assert size in (floor, floor + 1)
        if exact.denominator == 1:
            assert size == floor
    assert list(sizes) == ref_sizes(weights)


@settings(max_examples=1000, deadline=None)
@given(salt=st.text(max_size=40), subject=st.text(max_size=80), weights=weights_st)
def test_assign_equals_the_reference(salt, subject, weights):
    assert bucket(salt, subject) == ref_bucket(salt, subject)
    assert assign(salt, subject, weights) == ref_assign(salt, subject, weights)
    assert assign(salt, subject, tuple(weights)) == ref_assign(salt, subject, weights)


@settings(max_examples=200, deadline=None)
@given(salt=st.text(max_size=40), subject=st.text(max_size=80), weights=weights_st)
def test_assignment_is_deterministic(salt, subject, weights):
    first = assign(salt, subject, weights)
    assert 0 <= first < len(weights)
    assert all(assign(salt, subject, list(weights)) == first for _ in range(5))


def test_same_salt_and_subject_give_the_same_arm_repeatedly():
    weights = [1, 2, 7]
    rng = random.Random(11)
    subjects = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
    first = [assign("exp_fixed", s, weights) for s in subjects]
    for _ in range(10):
        assert [assign("exp_fixed", s, weights) for s in subjects] == first
    # A different salt reshuffles: not every subject keeps its arm.
    assert [assign("exp_other", s, weights) for s in subjects] != first


# ---------------------------------------------------------------- distribution

N = 100_000


@pytest.mark.parametrize("weights", [[1, 1], [1, 2, 7], [5, 3, 2], [1, 1, 1], [3, 1, 1, 5]])
def test_distribution_matches_weights(weights):
    rng = random.Random(f"assignment-{weights}")
    salt = f"exp_{rng.getrandbits(64):x}"
    counts = [0] * len(weights)
    for _ in range(N):
        subject = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        counts[assign(salt, subject, weights)] += 1
    total = sum(weights)
    for arm, (count, w) in enumerate(zip(counts, weights, strict=True)):
        assert abs(count / N - w / total) < 0.01, (arm, counts)
    expected = [N * size / 10000 for size in ref_sizes(weights)]
    result = chisquare(counts, f_exp=expected)
    assert result.pvalue > 0.001, (counts, expected, result)
