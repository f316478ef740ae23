"""The double-double primitives under the oracles, each against exact rational arithmetic: TwoSum and
TwoProduct are error-free (hi + lo is exactly the real result), the double-double add and multiply
are within their published bounds, and a result that is not finite is (that float64 result, 0)."""
import math
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from scanlab.impls.double_double import dd_add, dd_mul, quick_two_sum, two_prod, two_sum

U = 2.0 ** -53  # float64's unit roundoff


def doubles(least_exponent=-400, most_exponent=400):
    """Finite float64 values of either sign, their exponents spread evenly over a range."""
    return st.builds(lambda m, k, sign: sign * math.ldexp(m, k), st.floats(0.5, 1.0, exclude_max=True),
                     st.integers(least_exponent, most_exponent), st.sampled_from([1.0, -1.0]))


def double_doubles():
    """(hi, lo) pairs, normalised (hi is hi + lo rounded), lo from 2^-53 to 2^-80 of hi."""
    return st.builds(lambda x, m, k: two_sum(x, x * m * 2.0 ** -k), doubles(), st.floats(-1.0, 1.0), st.integers(53, 80))


def _exact(*parts):
    return sum(map(Fraction, parts), Fraction(0))


@settings(max_examples=200, deadline=None)
@given(doubles(), doubles())
def test_two_sum_is_error_free(a, b):
    s, e = two_sum(a, b)
    assert s == a + b and _exact(s, e) == _exact(a, b)


@settings(max_examples=200, deadline=None)
@given(doubles(), doubles())
def test_quick_two_sum_is_error_free_when_the_first_is_larger(a, b):
    a, b = max(a, b, key=abs), min(a, b, key=abs)
    s, e = quick_two_sum(a, b)
    assert s == a + b and _exact(s, e) == _exact(a, b)


@settings(max_examples=300, deadline=None)
@given(doubles(-480, 480), doubles(-480, 480))
@example(math.ldexp(0.9999999999999999, 997), -1.0 / 3)  # just below 2^997: Dekker's split would overflow
@example(math.ldexp(0.75, 1000), math.ldexp(0.6, -100))  # the scaled split, on a product that is finite
@example(1.0 + 2.0 ** -52, 1.0 - 2.0 ** -53)
def test_two_prod_is_error_free(a, b):
    p, e = two_prod(a, b)
    assert p == a * b and _exact(p, e) == Fraction(a) * Fraction(b)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.5, 1.0, exclude_max=True), st.integers(997, 1023), doubles(-200, -1))
def test_two_prod_splits_values_whose_splitter_product_would_overflow(m, k, b):
    a = math.ldexp(m, k)
    assume(math.isfinite(a * b) and abs(a * b) >= 2.0 ** -900)
    p, e = two_prod(a, b)
    assert _exact(p, e) == Fraction(a) * Fraction(b)


@settings(max_examples=200, deadline=None)
@given(double_doubles(), double_doubles())
def test_dd_add_is_within_3u2_of_the_exact_sum(x, y):
    exact = _exact(*x, *y)
    s, e = dd_add(*x, *y)
    assert abs(_exact(s, e) - exact) <= 3 * Fraction(U) ** 2 * abs(exact)
    assert s == float(_exact(s, e))  # normalised: hi is hi + lo rounded


@settings(max_examples=200, deadline=None)
@given(double_doubles(), double_doubles())
def test_dd_mul_is_within_7u2_of_the_exact_product(x, y):
    exact = _exact(*x) * _exact(*y)
    p, e = dd_mul(*x, *y)
    assert abs(_exact(p, e) - exact) <= 7 * Fraction(U) ** 2 * abs(exact)


BIG = 1.5 * 2.0 ** 1023


@pytest.mark.parametrize("name,op,args,hi", [
    ("two_sum overflow", two_sum, (BIG, BIG), math.inf),
    ("two_sum of inf", two_sum, (-math.inf, 1.0), -math.inf),
    ("quick_two_sum overflow", quick_two_sum, (BIG, BIG), math.inf),
    ("two_prod overflow", two_prod, (BIG, -4.0), -math.inf),
    ("two_prod of nan", two_prod, (math.nan, 2.0), math.nan),
    ("dd_add overflow", dd_add, (BIG, 1.0, BIG, 1.0), math.inf),
    ("dd_add of nan", dd_add, (math.nan, 0.0, 1.0, 0.0), math.nan),
    ("dd_mul overflow", dd_mul, (BIG, 1.0, 2.0, 0.0), math.inf),
    ("dd_mul of inf", dd_mul, (math.inf, 0.0, 3.0, 0.0), math.inf),
])
def test_a_result_that_is_not_finite_is_that_float64_result_and_zero(name, op, args, hi):
    got_hi, got_lo = op(*args)
    assert (got_hi == hi or math.isnan(hi) and math.isnan(got_hi)) and got_lo == 0.0, name
