"""Double-double arithmetic (a value is hi + lo, about 106 significant bits) for the oracles.

Error-free transformations: TwoSum (Knuth) and TwoProduct (Dekker's split, as numba exposes no
fused multiply-add), then the accurate double-double add and multiply of Hida, Li and Bailey's QD
library. Complex values are (re, im) pairs of double-doubles. Where a float64 result is not
finite (overflow, NaN inputs), the pair is (that result, 0): IEEE semantics, not the NaN that
inf - inf inside the transformations would give.

Every function is numba-compiled and inlined into the oracles' loops (impls/scan/oracle.py,
impls/conv/oracle.py); tests/test_oracle.py checks them against exact rational arithmetic.
"""
import math

from numba import njit

_SPLITTER = 134217729.0  # 2^27 + 1: splits a double into two halves of 26 bits
_SPLIT_LIMIT = 2.0 ** 996  # above this the splitter's product would overflow


@njit(inline="always")
def two_sum(a, b):
    s = a + b
    if not math.isfinite(s):
        return s, 0.0
    v = s - a
    return s, (a - (s - v)) + (b - v)


@njit(inline="always")
def quick_two_sum(a, b):  # |a| >= |b|
    s = a + b
    if not math.isfinite(s):
        return s, 0.0
    return s, b - (s - a)


@njit(inline="always")
def _split(a):
    if abs(a) > _SPLIT_LIMIT:
        c = _SPLITTER * (a * 2.0 ** -28)
        hi = c - (c - a * 2.0 ** -28)
        return hi * 2.0 ** 28, a - hi * 2.0 ** 28
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


@njit(inline="always")
def two_prod(a, b):
    p = a * b
    if not math.isfinite(p):
        return p, 0.0
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


@njit(inline="always")
def dd_add(a_hi, a_lo, b_hi, b_lo):
    s, e = two_sum(a_hi, b_hi)
    if not math.isfinite(s):
        return s, 0.0
    t, f = two_sum(a_lo, b_lo)
    e += t
    s, e = quick_two_sum(s, e)
    e += f
    return quick_two_sum(s, e)


@njit(inline="always")
def dd_mul(a_hi, a_lo, b_hi, b_lo):
    p, e = two_prod(a_hi, b_hi)
    if not math.isfinite(p):
        return p, 0.0
    e += a_hi * b_lo + a_lo * b_hi
    return quick_two_sum(p, e)


@njit(inline="always")
def cdd_mul(ar, arl, ai, ail, br, brl, bi, bil):
    """(ar + i ai)(br + i bi) in double-double: (re, re_lo, im, im_lo)."""
    p_hi, p_lo = dd_mul(ar, arl, br, brl)
    q_hi, q_lo = dd_mul(ai, ail, bi, bil)
    r_hi, r_lo = dd_mul(ar, arl, bi, bil)
    s_hi, s_lo = dd_mul(ai, ail, br, brl)
    re, re_lo = dd_add(p_hi, p_lo, -q_hi, -q_lo)
    im, im_lo = dd_add(r_hi, r_lo, s_hi, s_lo)
    return re, re_lo, im, im_lo


@njit(inline="always")
def cdd_add(ar, arl, ai, ail, br, brl, bi, bil):
    re, re_lo = dd_add(ar, arl, br, brl)
    im, im_lo = dd_add(ai, ail, bi, bil)
    return re, re_lo, im, im_lo
