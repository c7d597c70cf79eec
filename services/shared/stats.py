"""Confidence intervals, p-values and always-valid confidence sequences from aggregates, in pure Python."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

# An aggregate from SQL arrives as int (bigint), Decimal (numeric) or float (double precision); avg and
# var_samp of too few rows arrive as None (NULL).
Number = int | float | Decimal

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

# --- Standard normal -------------------------------------------------------------------------------------------

# Acklam's rational approximation of the normal quantile (relative error 1.15e-9 before refinement).
_ACKLAM_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
             1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_ACKLAM_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
             6.680131188771972e01, -1.328068155288572e01)  # fmt: skip
_ACKLAM_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
             -2.549671348850036e00, 4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_ACKLAM_P_LOW = 0.02425


def normal_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z; erfc keeps the lower tail precise."""
    return 0.5 * math.erfc(-x / _SQRT2)


def normal_sf(x: float) -> float:
    """P(Z > x) for a standard normal Z, precise in the upper tail."""
    return 0.5 * math.erfc(x / _SQRT2)


def normal_ppf(p: float) -> float:
    """The x with P(Z <= x) = p, for 0 < p < 1, to about 1e-15 relative."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p > 0.5:
        return -_normal_lower_ppf(1.0 - p)  # 1 - p is exact here (Sterbenz)
    return _normal_lower_ppf(p)


def _normal_lower_ppf(p: float) -> float:
    """normal_ppf for 0 < p <= 0.5, where the answer is <= 0 and normal_cdf is precise."""
    if p < _ACKLAM_P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        c, d = _ACKLAM_C, _ACKLAM_D
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0
        )
    else:
        q = p - 0.5
        r = q * q
        a, b = _ACKLAM_A, _ACKLAM_B
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
        )
    # One Halley step triples the correct digits: 1e-9 becomes the limit of erfc itself.
    e = normal_cdf(x) - p
    u = e / math.exp(-0.5 * x * x - _LOG_SQRT_2PI)
    return x - u / (1.0 + 0.5 * x * u)


def _critical_value(confidence: float) -> float:
    """Two-sided normal critical value, 1.959963984540054 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return -_normal_lower_ppf((1.0 - confidence) / 2.0)


# --- Regularized incomplete beta --------------------------------------------------------------------------------

# Terms of Stirling's series for lgamma(x) - [(x - 1/2) ln x - x + ln sqrt(2 pi)]; with x >= 10 the
# first omitted term is below 2e-18.
_STIRLING = (1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188, 691 / 360360, 1 / 156, 3617 / 122400)


def _stirling_correction(x: float) -> float:
    r = 1.0 / x
    r2 = r * r
    acc = 0.0
    for coefficient in reversed(_STIRLING):
        acc = coefficient - r2 * acc
    return r * acc


def _log_beta(a: float, b: float) -> float:
    """ln B(a, b). With df = 1e7, lgamma(a) is ~7e7, so lgamma(a + b) - lgamma(a) would lose 8 digits;
    for large arguments we take that difference from Stirling's series instead."""
    small, big = min(a, b), max(a, b)
    if big < 10.0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    log_ratio = (  # lgamma(big + small) - lgamma(big)
        small * math.log(big)
        + (big + small - 0.5) * math.log1p(small / big)
        - small
        + _stirling_correction(big + small)
        - _stirling_correction(big)
    )
    return math.lgamma(small) - log_ratio


_CF_EPS = 1e-15
_CF_TINY = 1e-300
# The fraction needs O(sqrt(max(a, b))) terms near the mean of the beta distribution.
_CF_MAX_TERMS = 10_000


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) by the modified Lentz method (Numerical Recipes `betacf`)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_TERMS + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),  # even step
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),  # odd step
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) >= _CF_TINY else _CF_TINY)
            c = 1.0 + aa / c
            if abs(c) < _CF_TINY:
                c = _CF_TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _beta_inc(a: float, b: float, x: float, y: float) -> tuple[float, float]:
    """(I_x(a, b), 1 - I_x(a, b)) where y = 1 - x is passed separately so it keeps its precision.
    The part the fraction computes is exact to ~1e-15 relative, the other one to ~1e-16 absolute."""
    if x <= 0.0:
        return 0.0, 1.0
    if y <= 0.0:
        return 1.0, 0.0
    log_x = math.log(x) if x < 0.5 else math.log1p(-y)
    log_y = math.log(y) if y < 0.5 else math.log1p(-x)
    front = math.exp(a * log_x + b * log_y - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        lower = front * _beta_continued_fraction(a, b, x) / a
        return lower, 1.0 - lower
    upper = front * _beta_continued_fraction(b, a, y) / b
    return 1.0 - upper, upper


# Temme's expansion (DiDonato & Morris 1992, BGRAT; Boost's beta_small_b_large_a_series) for I_x(a, 1/2)
# with large a and x near 1. There the continued fraction starts from 1 - x (a + 1/2) / (a + 1), a
# cancellation that costs ~eps * a: 4e-10 relative at df = 1e7, 3e-8 at df = 1e9.
_BGRAT_MIN_A = 100.0  # the expansion is asymptotic in a; at a >= 100 it converges in < 10 terms
_BGRAT_MAX_Y = 0.1  # further from x = 1 the fraction is well conditioned and the expansion slow


def _bgrat_coefficients(b: float, count: int) -> tuple[float, ...]:
    """p_n of D&M eq. 9.4; they depend on b only."""
    p = [1.0]
    for n in range(1, count):
        acc = sum((m * b - n) * p[n - m] / math.factorial(2 * m + 1) for m in range(1, n))
        p.append(acc / n + (b - 1.0) / math.factorial(2 * n + 1))
    return tuple(p)


_BGRAT_P = _bgrat_coefficients(0.5, 30)


def _beta_inc_half_large_a(a: float, x: float, y: float) -> float:
    """I_x(a, 1/2) for a >= _BGRAT_MIN_A and y = 1 - x <= _BGRAT_MAX_Y."""
    b = 0.5
    t = a + (b - 1.0) / 2.0
    log_x = math.log1p(-y)
    u = -t * log_x
    # Q(1/2, u) = erfc(sqrt u) and h = u^b e^-u / Gamma(b) are carried unscaled (D&M divide J by h),
    # so a large u underflows to 0 gracefully instead of giving 0/0.
    scale = math.exp(math.lgamma(b) - _log_beta(a, b) - b * math.log(t))  # Gamma(a+b) / Gamma(a) / t^b
    h = math.exp(b * math.log(u) - u - math.lgamma(b))
    j = math.erfc(math.sqrt(u))
    total = scale * j
    half_log_x_sq = (0.5 * log_x) ** 2
    log_x_power = 1.0
    t4 = 4.0 * t * t
    b2n = b
    for p_n in _BGRAT_P[1:]:
        j = (b2n * (b2n + 1.0) * j + (u + b2n + 1.0) * log_x_power * h) / t4
        log_x_power *= half_log_x_sq
        b2n += 2.0
        term = scale * p_n * j
        total += term
        if abs(term) <= 1e-17 * total:
            break
    return total


# --- Student's t -------------------------------------------------------------------------------------------------


def _check_df(df: float) -> None:
    if not df > 0.0:  # also rejects NaN
        raise ValueError(f"degrees of freedom must be > 0, got {df!r}")


def _t_tails(t_abs: float, df: float) -> tuple[float, float]:
    """(P(T > |t|), P(T < |t|)), each precise, for t_abs >= 0.

    P(T > |t|) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    if t_abs <= 1e150:
        s = t_abs * t_abs / df
        if s == 0.0:
            return 0.5, 0.5
        x, y = 1.0 / (1.0 + s), s / (1.0 + s)
    else:  # t^2 would overflow; the heavy tail of small df is still far from 0 out here
        r = df / t_abs / t_abs
        x, y = r / (1.0 + r), 1.0 / (1.0 + r)
    if 0.5 * df >= _BGRAT_MIN_A and y <= _BGRAT_MAX_Y:
        whole = _beta_inc_half_large_a(0.5 * df, x, y)
        rest = 1.0 - whole  # whole <= ~0.92 here, so this loses nothing
    else:
        whole, rest = _beta_inc(0.5 * df, 0.5, x, y)
    return 0.5 * whole, 0.5 + 0.5 * rest


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df > 0 degrees of freedom (need not be an integer)."""
    _check_df(df)
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(df):
        return normal_sf(t)
    tail, body = _t_tails(abs(t), df)
    return tail if t >= 0.0 else body


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df > 0 degrees of freedom."""
    return t_sf(-t, df)


def _t_pdf(t: float, df: float) -> float:
    return math.exp(-_log_beta(0.5 * df, 0.5) - 0.5 * math.log(df) - 0.5 * (df + 1.0) * math.log1p(t * t / df))


def _t_isf(q: float, df: float) -> float:
    """The t > 0 with P(T > t) = q, for 0 < q < 0.5.

    Newton's method on ln P(T > t) against ln t, which is close to a straight line in both the heavy
    (df = 1) and the near-normal (df = 1e7) tail, kept inside a bracket that falls back to bisection."""
    if math.isinf(df):
        return -_normal_lower_ppf(q)
    # t has heavier tails than the normal, so the normal quantile is a lower bound.
    lo = -_normal_lower_ppf(q)
    hi = 2.0 * lo
    while t_sf(hi, df) > q:
        lo, hi = hi, 2.0 * hi
    t = lo
    for _ in range(200):
        sf = t_sf(t, df)
        if sf == q:
            return t
        if sf > q:
            lo = t
        else:
            hi = t
        density = _t_pdf(t, df)
        if sf > 0.0 and density > 0.0:
            t_next = t * math.exp((math.log(sf) - math.log(q)) * sf / (density * t))
        else:
            t_next = math.nan
        if not lo < t_next < hi:
            t_next = math.sqrt(lo * hi)
        if abs(t_next - t) <= 1e-15 * t or hi - lo <= 1e-15 * hi:
            return t_next
        t = t_next
    return t


def t_ppf(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1 and df > 0, to about 1e-14 relative."""
    _check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_isf(p, df)
    return _t_isf(1.0 - p, df)  # 1 - p is exact here (Sterbenz)


# --- Aggregates --------------------------------------------------------------------------------------------------


def _check_count(successes: int, n: int) -> None:
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def _check_finite(*values: Number) -> None:
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"aggregate is not finite: {value!r}")


def _check_sizes(*counts: int) -> None:
    if any(n < 0 for n in counts):
        raise ValueError(f"counts must be >= 0, got {', '.join(map(str, counts))}")


def _finite_pair(low: float, high: float) -> tuple[float, float]:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise OverflowError("interval bounds overflow a float")
    return low, high


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion, within [0, 1]; None when n == 0 (no trials, no rate)."""
    _check_count(successes, n)
    if n == 0:
        return None
    z = _critical_value(confidence)
    p = successes / n
    z2_n = z * z / n
    denom = 1.0 + z2_n
    center = (p + 0.5 * z2_n) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + 0.25 * z2_n / n) / denom
    # At 0% or 100% the bound is exactly 0 or 1 in theory; don't let rounding show 1e-17 or 0.99999...
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def mean_interval(
    n: int, mean: Number | None, variance: Number | None, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Student t interval for the mean of n values from their mean and sample variance (n - 1), as
    SQL's `avg` and `var_samp` give them (both computed stably by PostgreSQL, so no digits are lost
    to the spread being small against the mean).

    None when n < 2 or an aggregate is None: one value has no sample variance. (mean, mean) when all
    values are equal."""
    _check_sizes(n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n < 2 or mean is None or variance is None:
        return None
    _check_finite(mean, variance)
    mean = float(mean)  # a Decimal from a numeric column; float arithmetic from here on
    # Below 0 only when the variance itself was rounded (a float aggregate); no spread then.
    variance = max(0.0, float(variance))
    if variance == 0.0:
        return mean, mean
    half = _t_isf((1.0 - confidence) / 2.0, n - 1) * math.sqrt(variance / n)
    return _finite_pair(mean - half, mean + half)


def two_proportion_z_test(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled z-test that arm (s1 of n1) and control (s2 of n2) share one rate.

    None when an arm has no trials, or when every trial in both arms failed (or every one succeeded):
    the pooled variance is then 0 and z = 0/0. Both rates are equal there, but p = 1.0 would claim a
    test was run; with no variance there is nothing to test."""
    _check_count(s1, n1)
    _check_count(s2, n2)
    if n1 == 0 or n2 == 0:
        return None
    pooled_successes, pooled_n = s1 + s2, n1 + n2
    if pooled_successes in (0, pooled_n):
        return None
    pooled = pooled_successes / pooled_n
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    z = (s1 / n1 - s2 / n2) / se
    return math.erfc(abs(z) / _SQRT2)  # = 2 * P(Z > |z|), precise for small p-values


def welch_from_moments(
    n1: int, mean1: Number | None, var1: Number | None, n2: int, mean2: Number | None, var2: Number | None
) -> float | None:
    """Two-sided p-value of Welch's unequal-variance t-test, from each arm's count, mean and sample
    variance (SQL's `count`, `avg`, `var_samp`).

    None when an arm has fewer than 2 values or an aggregate is None (no variance), or when both arms
    have zero variance: t is then +-inf or 0/0, and a p-value of 0 from two constant samples would be
    a claim the data can't carry."""
    _check_sizes(n1, n2)
    if n1 < 2 or n2 < 2 or mean1 is None or var1 is None or mean2 is None or var2 is None:
        return None
    _check_finite(mean1, var1, mean2, var2)
    var1, var2 = max(0.0, float(var1)), max(0.0, float(var2))
    v1, v2 = var1 / n1, var2 / n2
    se2 = v1 + v2
    if se2 == 0.0:
        return None
    # The difference is taken exactly and rounded once: two Decimal means around 1e9 from a numeric
    # column, rounded to floats first, would keep only ~7 digits of a difference of 1. (For float
    # means this is the same as mean1 - mean2.)
    try:
        difference = float(Fraction(mean1) - Fraction(mean2))
    except OverflowError:  # past the float range; only |t| is used below
        difference = math.inf
    t = difference / math.sqrt(se2)
    if math.isnan(t):
        raise OverflowError("difference of means overflows a float")
    # Welch–Satterthwaite df, written with shares of se2 so squaring huge variances can't overflow.
    w1, w2 = v1 / se2, v2 / se2
    df = 1.0 / (w1 * w1 / (n1 - 1) + w2 * w2 / (n2 - 1))
    tail, _ = _t_tails(abs(t), df)
    return min(1.0, 2.0 * tail)


# --- Always-valid comparisons (asymptotic confidence sequences) -------------------------------------------------
#
# Rollout guardrails are checked after every batch of outcomes and experiment results are read whenever anyone
# looks, so a fixed-sample interval would be wrong far more often than its level says (each look is another
# chance). A confidence sequence covers the true difference at every sample size at once, with probability
# 1 - alpha asymptotically: Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas, "Time-uniform central limit theory and
# asymptotic confidence sequences", Ann. Statist. 52(6), 2024, Theorem 2.2 (arXiv:2103.06476). Its half-width after
# t observations with estimated variance s^2 is
#     sqrt( s^2 * 2(t rho^2 + 1) / (t^2 rho^2) * ln( sqrt(t rho^2 + 1) / alpha ) ),
# tightest near t = N* for rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N*; the contract ("Splits: experiments
# and rollouts", **The rule**) writes it with V = s^2 / t, the variance of the estimate.

# Which way is better, per guardrail metric: +1 higher, -1 lower.
DIRECTIONS: dict[str, int] = {
    "success_rate": 1,
    "score_mean": 1,
    "latency_ms_mean": -1,
    "cost_usd_mean": -1,
    "output_tokens_mean": -1,
}
BINARY_METRICS = frozenset({"success_rate"})
GUARDRAIL_ALPHA = 0.05  # split evenly across a rollout's guardrails
RESULTS_ALPHA = 0.05
RESULTS_N_STAR = 10_000


@dataclass(frozen=True, slots=True)
class Moments:
    """One arm's values of one metric in one stratum (a rollout step): count, sum and sum of squares.

    Merged with `+`; for a success rate the values are 0 and 1, so `total` = `squares` = successes
    (`Moments.of_successes`). Sums are floats or ints (summed as they come), or exact (Decimal from a
    numeric column, Fraction): exact ones give the mean and variance exactly, rounded once."""

    n: int = 0
    total: Number | Fraction = 0
    squares: Number | Fraction = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> Moments:
        n, total, squares = 0, 0.0, 0.0
        for value in values:
            n += 1
            total += value
            squares += value * value
        return cls(n, total, squares)

    @classmethod
    def of_successes(cls, successes: int, n: int) -> Moments:
        _check_count(successes, n)
        return cls(n, successes, successes)

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.squares + other.squares)  # type: ignore[operator]

    def mean(self) -> float:
        return float(Fraction(self.total) / self.n) if _exact(self.total) else float(self.total) / self.n

    def variance(self, *, binary: bool) -> float:
        """The variance the rule uses, for n >= 2: the sample variance (n - 1), or for a success rate
        p~(1 - p~) with p~ = (s + 1)/(n + 2), which is never 0 (all successes still carry some doubt)."""
        if binary:
            p = (float(self.total) + 1.0) / (self.n + 2)
            return p * (1.0 - p)
        if _exact(self.total) or _exact(self.squares):  # exact sums: cancel exactly, round once
            s = Fraction(self.total)
            return max(0.0, float((Fraction(self.squares) - s * s / self.n) / (self.n - 1)))
        total = float(self.total)
        return max(0.0, (float(self.squares) - total * total / self.n) / (self.n - 1))


def _exact(value: Number | Fraction) -> bool:
    return isinstance(value, Decimal | Fraction)


def _finite(m: Moments) -> bool:
    """Whether the sums are finite numbers (a numeric sum can be NaN or infinite, a float beyond range)."""
    try:
        return math.isfinite(m.total) and math.isfinite(m.squares)
    except OverflowError:  # a Fraction or Decimal beyond the float range
        return False


@dataclass(frozen=True, slots=True)
class Sequential:
    """A stratified difference (arm 1 - arm 0, oriented by the caller) with its always-valid half-width."""

    estimate: float
    half_width: float
    n: int  # outcomes in the strata used (both arms)

    @property
    def cs(self) -> tuple[float, float]:
        return self.estimate - self.half_width, self.estimate + self.half_width


def half_width(variance: float, n: int, *, alpha: float, n_star: float) -> float:
    """h = sqrt( V * 2(N rho^2 + 1)/(N rho^2) * ln( sqrt(N rho^2 + 1)/alpha ) ), with V the variance of the
    estimate after N observations and rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N* (Waudby-Smith et al. 2024,
    Thm 2.2, rho tuned to be tightest at N*)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not n_star > 0 or n < 1:
        raise ValueError(f"need N* > 0 and N >= 1, got {n_star!r} and {n!r}")
    log_alpha = math.log(alpha)
    rho2 = (-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / n_star
    t = n * rho2
    return math.sqrt(variance * 2.0 * (t + 1.0) / t * (math.log(math.sqrt(t + 1.0)) - log_alpha))


def stratified_difference(
    arm1: Sequence[Moments], arm0: Sequence[Moments], *, binary: bool, alpha: float, n_star: float, sign: int = 1
) -> Sequential | None:
    """sign * (mean1 - mean0) over strata (aligned by index; a missing one is empty), each weighted by its
    share N_k/N of the outcomes, over the strata where each arm has at least 2 outcomes:
    d = sum (N_k/N) d_k, V = sum (N_k/N)^2 (s1^2/n1 + s0^2/n0). Stratifying by step keeps a metric that
    drifts for everyone while the arms' shares change out of the difference. None without such a stratum,
    or when a sum is not finite (rows stored past the API's bounds)."""
    used = [
        (one, zero)
        for one, zero in itertools.zip_longest(arm1, arm0, fillvalue=Moments())
        if one.n >= 2 and zero.n >= 2
    ]
    if not used or not all(_finite(one) and _finite(zero) for one, zero in used):
        return None
    total = sum(one.n + zero.n for one, zero in used)
    estimate = variance = 0.0
    for one, zero in used:
        weight = (one.n + zero.n) / total
        estimate += weight * (one.mean() - zero.mean())
        variance += weight * weight * (one.variance(binary=binary) / one.n + zero.variance(binary=binary) / zero.n)
    estimate *= sign
    if not (math.isfinite(estimate) and math.isfinite(variance)):
        return None
    return Sequential(estimate, half_width(variance, total, alpha=alpha, n_star=n_star), total)


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A guardrail's figures as the contract's `progress.guardrails[]` shows them. `estimate` and `cs` are in
    the rule's orientation: arm 1 - arm 0, negated for lower-is-better metrics, so a negative value is worse
    (a latency 30 ms higher in arm 1 is an estimate of -30). None until a step has 2 outcomes in each arm."""

    metric: str
    max_degradation: float
    estimate: float | None
    cs: tuple[float, float] | None
    n: tuple[int, int]  # outcomes carrying the metric since start, arm 0 and arm 1
    breached: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "max_degradation": self.max_degradation,
            "estimate": self.estimate,
            "cs": list(self.cs) if self.cs is not None else None,
            "n": list(self.n),
            "breached": self.breached,
        }


def guardrail(
    metric: str,
    arm0: Sequence[Moments],
    arm1: Sequence[Moments],
    *,
    max_degradation: float,
    min_outcomes: int,
    guardrails: int = 1,
) -> Guardrail:
    """The contract's rule for one guardrail of a rollout: `arm0[k]`, `arm1[k]` are the arms' outcomes
    carrying the metric that arrived while step k was in force, since start (steps and pauses never reset
    them). alpha = 0.05 / guardrails, N* = 10 * min_outcomes. Breached when both arms have at least
    `min_outcomes` such outcomes and the whole sequence lies below -max_degradation (d + h < -max_degradation):
    with probability about 1 - alpha a rollout whose true degradation is at most max_degradation is never
    rolled back, however often it is checked."""
    if metric not in DIRECTIONS:
        raise ValueError(f"unknown guardrail metric {metric!r}")
    if guardrails < 1 or min_outcomes < 1:
        raise ValueError("need at least one guardrail and min_outcomes >= 1")
    n = (sum(m.n for m in arm0), sum(m.n for m in arm1))
    found = stratified_difference(
        arm1,
        arm0,
        binary=metric in BINARY_METRICS,
        alpha=GUARDRAIL_ALPHA / guardrails,
        n_star=10 * min_outcomes,
        sign=DIRECTIONS[metric],
    )
    if found is None:
        return Guardrail(metric, max_degradation, None, None, n, False)
    low, high = found.cs
    breached = min(n) >= min_outcomes and high < -max_degradation
    return Guardrail(metric, max_degradation, found.estimate, (low, high), n, breached)


def sequential_cs(arm: Moments, control: Moments, *, binary: bool) -> tuple[float, float] | None:
    """An experiment arm's always-valid 95% interval for arm - control (not negated), for results: the
    rule's construction with one stratum (experiments have no steps), alpha = 0.05 and N* = 10,000.
    None below 2 values in either arm."""
    found = stratified_difference([arm], [control], binary=binary, alpha=RESULTS_ALPHA, n_star=RESULTS_N_STAR)
    return found.cs if found is not None else None
