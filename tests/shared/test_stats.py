"""services.shared.stats checked against SciPy and statsmodels on fixed data sets and random samples (no database)."""

from __future__ import annotations

import math
import statistics
import warnings
from decimal import Decimal

import numpy as np
import pytest
import scipy.stats
from hypothesis import example, given
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from services.shared.stats import (
    mean_interval,
    normal_cdf,
    normal_ppf,
    normal_sf,
    t_cdf,
    t_ppf,
    t_sf,
    two_proportion_z_test,
    welch_from_moments,
    wilson_interval,
)

Z_95 = 1.959963984540054


def close(expected: float) -> object:
    """Agreement to 9 significant digits: both sides are double precision with ~1e-15 error, so this
    only leaves room for the references' own rounding (numpy sums, boost's incomplete beta)."""
    return pytest.approx(expected, rel=1e-9, abs=1e-12)


def assert_finite(result: object) -> None:
    values = result if isinstance(result, tuple) else (result,)
    assert all(isinstance(v, float) and math.isfinite(v) for v in values), result


def moments(values: list[float]) -> tuple[int, float | None, float | None]:
    """(count, avg, var_samp) as SQL gives them for a double precision column: NULL (None) for the mean
    of no values and the variance of fewer than 2. fmean divides the correctly rounded sum by n, as NumPy
    does for the exact sums below; statistics' variance is exact rational arithmetic rounded once, as
    close as a float gets to var_samp."""
    n = len(values)
    mean = statistics.fmean(values) if n else None
    return n, mean, float(statistics.variance(values)) if n >= 2 else None


def decimal_moments(values: list[Decimal]) -> tuple[int, Decimal, Decimal]:
    """(count, avg, var_samp) of a numeric column: Decimal arithmetic, 28 significant digits."""
    n = len(values)
    mean = sum(values) / n
    return n, mean, sum((v - mean) ** 2 for v in values) / (n - 1)


def quiet(call):  # SciPy warns on the degenerate samples whose nan we are checking for
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return call()


# --- Proportions -----------------------------------------------------------------------------------------------

PROPORTIONS = [
    (0, 1), (1, 1), (0, 2), (1, 2), (2, 2), (1, 3), (0, 5), (2, 5), (5, 5),
    (37, 120), (500, 1000), (999, 1000),
    (0, 100_000), (1, 100_000), (3, 100_000), (50_123, 100_000), (99_997, 100_000), (99_999, 100_000),
    (100_000, 100_000),
]  # fmt: skip


@pytest.mark.parametrize(("successes", "n"), PROPORTIONS)
@pytest.mark.parametrize("confidence", [0.95, 0.8, 0.99, 0.999])
def test_wilson_interval_matches_statsmodels(successes: int, n: int, confidence: float) -> None:
    ours = wilson_interval(successes, n, confidence)
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    assert_finite(ours)
    assert ours == (close(low), close(high))
    assert 0.0 <= ours[0] <= successes / n <= ours[1] <= 1.0


def test_wilson_interval_bounds_at_the_extremes_are_exact() -> None:
    assert wilson_interval(0, 100_000)[0] == 0.0
    assert wilson_interval(100_000, 100_000)[1] == 1.0
    assert wilson_interval(0, 0) is None


ARM_PAIRS = [
    (1, 2, 0, 3), (2, 3, 1, 2), (2, 5, 3, 5), (1, 5, 0, 2),
    (37, 120, 25, 118),
    (50, 100, 50, 100),  # identical arms: p = 1
    (70, 100, 30, 100),  # very different: p ~ 1e-8
    (900, 1000, 100, 1000),  # p underflows to ~0 in both
    (10, 10, 0, 10),  # all successes against all failures: pooled 1/2, defined
    (120, 100_000, 100, 100_000), (3, 100_000, 0, 100_000),
    (99_990, 100_000, 99_950, 100_000), (100_000, 100_000, 99_999, 100_000),
    (5_123, 10_000, 49_876, 100_000),
]  # fmt: skip


@pytest.mark.parametrize(("s1", "n1", "s2", "n2"), ARM_PAIRS)
def test_two_proportion_z_test_matches_statsmodels(s1: int, n1: int, s2: int, n2: int) -> None:
    ours = two_proportion_z_test(s1, n1, s2, n2)
    _, reference = proportions_ztest([s1, s2], [n1, n2])
    assert_finite(ours)
    assert ours == close(reference)


@pytest.mark.parametrize(
    ("s1", "n1", "s2", "n2"),
    [(0, 0, 1, 2), (1, 2, 0, 0), (0, 0, 0, 0), (0, 10, 0, 20), (10, 10, 20, 20), (0, 100_000, 0, 100_000)],
)
def test_two_proportion_z_test_without_variance_is_none(s1: int, n1: int, s2: int, n2: int) -> None:
    assert two_proportion_z_test(s1, n1, s2, n2) is None
    if n1 and n2:  # where statsmodels gets that far, its answer is 0/0
        assert math.isnan(quiet(lambda: proportions_ztest([s1, s2], [n1, n2])[1]))


# --- Means -------------------------------------------------------------------------------------------------------

MODERATE = [12, 15, 9, 11, 14, 13, 10, 12, 16, 8, 11, 13, 12, 14, 9, 10, 15, 13, 11, 12,
            17, 7, 12, 13, 11, 10, 14, 12, 13, 11]  # fmt: skip
# Dyadic values around 1e6: their sums are exact in floats and their variance is exact before its one
# rounding, so any error beyond the mean's own rounding (shared with NumPy's) is the code's.
LARGE_OFFSET = [1_000_000.25, 999_999.5, 1_000_001.0, 1_000_000.75, 999_999.75,
                1_000_000.0, 1_000_000.5, 999_998.75, 1_000_001.25, 1_000_000.0]  # fmt: skip
SAMPLES = {
    "two": [1, 2],
    "three": [3, 5, 4],
    "five": [2.5, -1.0, 0.25, 7.75, 3.0],
    "negative_ties": [-3, -3, 0, 2, 2, 2, 7, -1],
    "moderate": MODERATE,
    "shifted": [20, 23, 17, 19, 22, 21, 18, 20, 24, 16, 19, 21, 20, 22, 17, 18, 23, 21, 19, 20],
    "large_offset": LARGE_OFFSET,
    "large_offset_b": [1_000_000.5, 1_000_001.25, 1_000_000.75, 1_000_002.0, 1_000_001.0, 1_000_000.25],
    "huge_spread": [-4.5e6, 3.25e6, 1.0e6, -2.0e6, 7.5e6, 0.0, 1.5e6],
    "constant": [4, 4, 4, 4],
    "constant_other": [6, 6, 6],
    # 1000 values from a fixed congruential rule: large n with ties and negatives.
    "long": [(i * 37) % 101 - 50 for i in range(1000)],
    "long_shifted": [(i * 53) % 97 - 45 for i in range(1200)],
}


@pytest.mark.parametrize("name", [k for k in SAMPLES if not k.startswith("constant")])
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.999])
def test_mean_interval_matches_scipy(name: str, confidence: float) -> None:
    values = SAMPLES[name]
    ours = mean_interval(*moments(values), confidence=confidence)
    n = len(values)
    low, high = scipy.stats.t.interval(
        confidence, n - 1, loc=np.mean(values), scale=np.std(values, ddof=1) / math.sqrt(n)
    )
    assert_finite(ours)
    assert ours == (close(low), close(high))


def test_mean_interval_large_offset_keeps_its_digits() -> None:
    # Variance 5/6 around 1e9: bounds agreeing to 9 digits would still allow an error of 1 in a half
    # width of 1.45, so the width itself must be right to the last bits that floats around 1e9 carry.
    values = [1e9 + 0.5, 1e9 - 0.5, 1e9 + 1.0, 1e9 - 1.0]
    n = len(values)
    mean = np.mean(values)
    half = scipy.stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / 2
    expected = (mean - half, mean + half)
    as_float = mean_interval(*moments(values))
    # What a numeric column returns for the same scores: Decimal avg and var_samp (0.8333...3, 28 digits).
    as_decimal = mean_interval(*decimal_moments([Decimal(v) for v in values]))
    for low, high in (as_float, as_decimal):
        assert_finite((low, high))
        assert (low, high) == (close(expected[0]), close(expected[1]))
        assert high - low == pytest.approx(2 * half, rel=0, abs=2 * math.ulp(1e9))
        assert (low + high) / 2 == mean


PAIRS = [
    ("two", "three"),
    ("three", "five"),
    ("five", "negative_ties"),
    ("moderate", "shifted"),  # very different: p ~ 1e-11
    ("moderate", "moderate"),  # identical arms: p = 1
    ("large_offset", "large_offset_b"),
    ("huge_spread", "five"),
    ("long", "long_shifted"),
    ("long", "three"),
    ("constant", "three"),  # one arm without variance is still a test
    ("negative_ties", "constant_other"),
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_welch_from_moments_matches_scipy(first: str, second: str) -> None:
    a, b = SAMPLES[first], SAMPLES[second]
    ours = welch_from_moments(*moments(a), *moments(b))
    from_data = quiet(lambda: scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)  # warns on a constant arm
    from_stats = scipy.stats.ttest_ind_from_stats(
        np.mean(a), np.std(a, ddof=1), len(a), np.mean(b), np.std(b, ddof=1), len(b), equal_var=False
    ).pvalue
    assert_finite(ours)
    assert ours == close(from_data)
    assert ours == close(from_stats)


def test_welch_from_moments_large_offset_keeps_its_digits() -> None:
    # Two arms of a numeric column around 1e9 whose means differ by 0.4 with sd ~0.3: each Decimal avg
    # rounded to a float is off by up to 6e-8, which would move p in its 6th digit. The test does not
    # depend on the offset, so SciPy gets the data with 1e9 taken off exactly.
    a = [Decimal(v) for v in ("1000000000.1", "999999999.7", "1000000000.4", "999999999.9", "1000000000.2")]
    b = [Decimal(v) for v in ("1000000000.6", "1000000000.3", "1000000000.9", "1000000000.5")]
    ours = welch_from_moments(*decimal_moments(a), *decimal_moments(b))
    offset = Decimal(1_000_000_000)
    reference = scipy.stats.ttest_ind([float(v - offset) for v in a], [float(v - offset) for v in b], equal_var=False)
    assert_finite(ours)
    assert ours == close(reference.pvalue)


# --- Degenerate input: None, never NaN -------------------------------------------------------------------------


def test_no_data_gives_none() -> None:
    assert wilson_interval(0, 0) is None
    assert mean_interval(*moments([])) is None  # (0, None, None): avg and var_samp of no rows are NULL
    assert mean_interval(*moments([5.0])) is None  # one value has no spread to build an interval from
    assert mean_interval(1, 5.0, 0.0) is None  # not even if a variance is supplied
    assert two_proportion_z_test(0, 0, 3, 10) is None
    assert welch_from_moments(*moments([]), *moments([3, 4, 5])) is None
    assert welch_from_moments(*moments([4]), *moments([3, 4, 5])) is None
    assert welch_from_moments(*moments([3, 4, 5]), *moments([4])) is None


def test_zero_variance() -> None:
    assert mean_interval(*moments([2, 2, 2])) == (2.0, 2.0)
    # A constant float sample whose mean is not exact: var_samp is 0, the interval the rounded mean.
    assert mean_interval(*moments([0.1, 0.1, 0.1])) == (0.10000000000000002, 0.10000000000000002)
    # A float variance rounded slightly below 0 (or -0.0): clamp, don't take sqrt(<0).
    assert mean_interval(3, 0.1, -1e-18) == (0.1, 0.1)
    assert mean_interval(3, 0.1, -0.0) == (0.1, 0.1)
    assert welch_from_moments(3, 2.0, -1e-18, 4, 3.0, -0.0) is None
    # A constant numeric column: Decimal in, floats out.
    as_decimal = mean_interval(3, Decimal("2.5"), Decimal(0))
    assert_finite(as_decimal)
    assert as_decimal == (2.5, 2.5)
    assert welch_from_moments(*moments([2, 2, 2]), *moments([2, 2, 2, 2])) is None  # equal constants: t = 0/0
    assert welch_from_moments(*moments([2, 2, 2]), *moments([3, 3, 3, 3])) is None  # different constants: t = inf


def test_all_successes_and_all_failures() -> None:
    assert wilson_interval(0, 7) == (0.0, close(proportion_confint(0, 7, method="wilson")[1]))
    assert wilson_interval(7, 7) == (close(proportion_confint(7, 7, method="wilson")[0]), 1.0)
    assert two_proportion_z_test(0, 7, 0, 9) is None
    assert two_proportion_z_test(7, 7, 9, 9) is None
    assert two_proportion_z_test(7, 7, 0, 9) == close(proportions_ztest([7, 0], [7, 9])[1])


@pytest.mark.parametrize(
    "call",
    [
        lambda: wilson_interval(3, 2),
        lambda: wilson_interval(-1, 2),
        lambda: wilson_interval(1, 2, confidence=1.0),
        lambda: mean_interval(-1, 0.0, 0.0),
        lambda: mean_interval(3, 1.0, 1.0, confidence=1.0),
        lambda: mean_interval(3, math.nan, 1.0),
        lambda: mean_interval(3, 1.0, math.inf),
        lambda: mean_interval(3, Decimal("NaN"), Decimal(1)),
        lambda: two_proportion_z_test(5, 4, 1, 2),
        lambda: welch_from_moments(-1, 0.0, 0.0, 3, 1.0, 1.0),
        lambda: welch_from_moments(3, math.nan, 1.0, 3, 1.0, 1.0),
        lambda: welch_from_moments(3, 1.0, 1.0, 3, 1.0, math.inf),
        lambda: t_sf(1.0, 0.0),
        lambda: t_ppf(1.0, 3.0),
        lambda: normal_ppf(0.0),
    ],
)
def test_impossible_input_raises(call) -> None:
    with pytest.raises(ValueError):
        call()


# --- Distributions -----------------------------------------------------------------------------------------------

DFS = [1, 1.5, 2, 3.7, 10, 29.3, 100, 1e4, 1e7]
TS = [0.0, 0.1, -0.1, 1.0, -1.0, 2.5, -2.5, 10.0, -10.0, 50.0, -50.0]


@pytest.mark.parametrize("df", DFS)
@pytest.mark.parametrize("t", TS)
def test_t_cdf_and_sf_match_scipy(df: float, t: float) -> None:
    # Relative agreement even in the far tails (sf(50) at df = 1e4 underflows to 0 in both).
    assert t_cdf(t, df) == pytest.approx(scipy.stats.t.cdf(t, df), rel=1e-12, abs=1e-300)
    assert t_sf(t, df) == pytest.approx(scipy.stats.t.sf(t, df), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("df", DFS)
@pytest.mark.parametrize("p", [1e-12, 1e-6, 0.001, 0.025, 0.1, 0.3, 0.5, 0.7, 0.9, 0.975, 0.999, 1 - 1e-9])
def test_t_ppf_matches_scipy(df: float, p: float) -> None:
    ours = t_ppf(p, df)
    assert ours == pytest.approx(scipy.stats.t.ppf(p, df), rel=1e-12, abs=1e-300)
    assert t_cdf(ours, df) == pytest.approx(p, rel=1e-12)


def test_t_quantile_approaches_the_normal_one() -> None:
    last = math.inf
    for df in [1, 10, 100, 1e4, 1e7, 1e12]:
        q = t_ppf(0.975, df)
        assert Z_95 < q < last  # heavier tails, thinning as df grows
        last = q
    assert t_ppf(0.975, 1e7) == pytest.approx(Z_95, abs=1e-6)
    assert t_ppf(0.975, math.inf) == Z_95


@pytest.mark.parametrize("p", [1e-300, 1e-20, 1e-5, 0.02425, 0.025, 0.3, 0.5, 0.7, 0.975, 1 - 1e-12])
def test_normal_matches_scipy(p: float) -> None:
    x = normal_ppf(p)
    assert x == pytest.approx(scipy.stats.norm.ppf(p), rel=1e-14, abs=1e-300)
    assert normal_cdf(x) == pytest.approx(p, rel=1e-13)
    assert normal_sf(-x) == pytest.approx(p, rel=1e-13)


def test_critical_value_at_95_percent() -> None:
    # (1 - 0.95) / 2 is 0.025000000000000022, whose quantile rounds to Z_95; 0.025's is one ulp above.
    assert wilson_interval(0, 1) == (0.0, close(Z_95**2 / (1 + Z_95**2)))
    assert -normal_ppf((1 - 0.95) / 2) == Z_95
    assert -normal_ppf(0.025) == pytest.approx(Z_95, rel=1e-15)


# --- Random samples ---------------------------------------------------------------------------------------------

samples = st.lists(st.integers(min_value=-20, max_value=20), max_size=12)


@given(samples, samples)
@example([1, 2], [5])
@example([3, 3, 3], [3, 3])
@example([3, 3, 3], [4, 4])
@example([0, 0, 1], [-20, 20, 20, -20, 0])
def test_welch_from_moments_agrees_with_scipy_on_random_samples(a: list[int], b: list[int]) -> None:
    ours = welch_from_moments(*moments(a), *moments(b))
    reference = quiet(lambda: scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)
    if len(a) >= 2 and len(b) >= 2 and len(set(a)) == 1 and len(set(b)) == 1:
        # Two constant arms: SciPy's t is 0/0 (nan) or +-inf (p = 0.0); we give no p-value either way.
        assert ours is None
        assert math.isnan(reference) or reference == 0.0
        return
    assert (ours is None) == bool(np.isnan(reference))
    if ours is not None:
        assert_finite(ours)
        assert ours == close(reference)


@given(samples)
@example([7])
@example([2, 2])
def test_mean_interval_agrees_with_scipy_on_random_samples(values: list[int]) -> None:
    ours = mean_interval(*moments(values))
    n = len(values)
    reference = quiet(
        lambda: scipy.stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=np.std(values, ddof=1) / math.sqrt(n))
    )
    if n >= 2 and len(set(values)) == 1:
        # SciPy refuses scale 0 (nan); the interval of a constant sample is the point itself.
        assert all(np.isnan(reference))
        assert ours == (float(values[0]), float(values[0]))
        return
    assert (ours is None) == bool(np.isnan(reference[0]))
    if ours is not None:
        assert_finite(ours)
        assert ours == (close(reference[0]), close(reference[1]))
