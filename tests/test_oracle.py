"""The oracles against exact rational arithmetic (fractions): the double-double scan and convolution
are what every backend is judged against, so they are checked against something exact."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scanlab.impls import conv_oracle, oracle
from scanlab.impls.conv.oracle import causal_conv_double_double
from scanlab.impls.scan.oracle import scan_double_double

EPS_DD = 2.0 ** -104  # a double-double step's relative rounding, with room for the complex products


def _exact(x):
    """A float64 tensor's values as Fractions (complex: (re, im) pairs), nested lists (B, L, D)."""
    return x.tolist() if not x.is_complex() else [[[(Fraction(v.real), Fraction(v.imag)) for v in row] for row in m]
                                                  for m in x.tolist()]


def _c(v):
    return v if isinstance(v, tuple) else (Fraction(v), Fraction(0))


def _mul(p, q):
    (a, b), (c, d) = _c(p), _c(q)
    return a * c - b * d, a * d + b * c


def _add(p, q):
    (a, b), (c, d) = _c(p), _c(q)
    return a + c, b + d


def _conj(p):
    a, b = _c(p)
    return a, -b


def _exact_scan(a, kv, h0):
    """h[b][t][d] as (re, im) Fractions, by the recurrence."""
    A, KV = _exact(a), _exact(kv)
    H0 = [m[0] for m in _exact(h0[:, None])] if h0 is not None else None
    batch, length, channels = a.shape
    out = []
    for b in range(batch):
        rows, state = [], [H0[b][d] if H0 is not None else 0 for d in range(channels)]
        for t in range(length):
            state = [_add(_mul(A[b][t][d], state[d]), KV[b][t][d]) for d in range(channels)]
            rows.append(state)
        out.append(rows)
    return out


def _inputs(draw_complex, length, seed, with_h0):
    g = torch.Generator().manual_seed(seed)
    dtype = torch.complex128 if draw_complex else torch.float64
    a = torch.rand(1, length, 2, generator=g, dtype=torch.float64) * 2 - 1
    kv = torch.randn(1, length, 2, generator=g, dtype=torch.float64) * torch.logspace(-3, 3, length, dtype=torch.float64)[None, :, None]
    h0 = torch.randn(1, 2, generator=g, dtype=torch.float64) if with_h0 else None
    if draw_complex:
        a = torch.polar(a.abs(), torch.rand(a.shape, generator=g, dtype=torch.float64) * 6.28)
        kv, h0 = kv.to(dtype) * 1j + kv.flip(1), None if h0 is None else h0.to(dtype) * (1 - 2j)
    return a, kv, h0


@settings(max_examples=25, deadline=None)
@given(complex_=st.booleans(), length=st.integers(1, 40), seed=st.integers(0, 2 ** 20), with_h0=st.booleans())
@example(complex_=False, length=1, seed=0, with_h0=True)
def test_the_scan_oracle_is_exact_to_double_double_rounding(complex_, length, seed, with_h0):
    a, kv, h0 = _inputs(complex_, length, seed, with_h0)
    (h_re, h_im), (lo_re, lo_im) = scan_double_double(a, kv, h0)
    exact = _exact_scan(a, kv, h0)
    scale = _exact_scan(a.abs(), kv.abs(), None if h0 is None else h0.abs())
    for b, t, d in np.ndindex(*a.shape):
        got = (Fraction(h_re[b, t, d]) + Fraction(lo_re[b, t, d]), Fraction(h_im[b, t, d]) + Fraction(lo_im[b, t, d]))
        err = max(abs(got[0] - exact[b][t][d][0]), abs(got[1] - exact[b][t][d][1]))
        assert err <= (t + 1) * EPS_DD * scale[b][t][d][0], (b, t, d)


@settings(max_examples=15, deadline=None)
@given(complex_=st.booleans(), length=st.integers(1, 12), seed=st.integers(0, 2 ** 20), with_h0=st.booleans())
def test_the_scan_oracle_gradients_are_the_correctly_rounded_exact_ones(complex_, length, seed, with_h0):
    """From the definition, not the adjoint recurrence the oracle runs: with upstream g (for h) and
    g_last (for h_last), dkv_s = sum_{t>=s} G_t conj(prod_{s<r<=t} a_r), da_s = dkv_s conj(h_{s-1})."""
    a, kv, h0 = _inputs(complex_, length, seed, with_h0)
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).to(a.dtype)
    leaves = [t.clone().requires_grad_() for t in (a, kv) + ((h0,) if with_h0 else ())]
    h, h_last = oracle(*leaves)
    grads = torch.autograd.grad((h, h_last), leaves, (g, g[:, -1] * 2))
    A, G, H = _exact(a), _exact(g), _exact_scan(a, kv, h0)
    H0 = [m[0] for m in _exact(h0[:, None])] if with_h0 else None
    grad_h0 = grads[2] if with_h0 else None
    for d in range(a.shape[2]):
        upstream = [G[0][t][d] for t in range(length)]
        upstream[-1] = _add(upstream[-1], _mul(G[0][-1][d], 2))
        for s in range(length):
            total, decay = (0, 0), (Fraction(1), Fraction(0))
            for t in range(s, length):
                if t > s:
                    decay = _mul(decay, _conj(A[0][t][d]))
                total = _add(total, _mul(upstream[t], decay))
            previous = H[0][s - 1][d] if s > 0 else (H0[0][d] if with_h0 else 0)
            for got, want in ((grads[1][0, s, d], total), (grads[0][0, s, d], _mul(total, _conj(previous)))):
                got = complex(got)
                for part, exact in ((got.real, want[0]), (got.imag, want[1])):
                    assert abs(Fraction(part) - exact) <= math.ulp(float(exact)) + Fraction(2) ** -1000, (s, d)
            if s == 0 and with_h0:  # dh0 = dkv_0 conj(a_0)
                want, got = _mul(total, _conj(A[0][0][d])), complex(grad_h0[0, d])
                for part, exact in ((got.real, want[0]), (got.imag, want[1])):
                    assert abs(Fraction(part) - exact) <= math.ulp(float(exact)) + Fraction(2) ** -1000, d


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 40), seed=st.integers(0, 2 ** 20))
def test_the_convolution_oracle_is_the_correctly_rounded_exact_sum(length, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(2, length, 2, generator=g, dtype=torch.float64) * 1e3
    K = torch.randn(length, 2, generator=g, dtype=torch.float64) * torch.logspace(0, -8, length, dtype=torch.float64)[:, None]
    y = causal_conv_double_double(u, K)
    U, Kf = u.tolist(), K.tolist()
    for b, t, h in np.ndindex(*u.shape):
        exact = sum(Fraction(Kf[t - s][h]) * Fraction(U[b][s][h]) for s in range(t + 1))
        # one rounding of the double-double sum to float64, plus its own error far below it
        assert abs(Fraction(float(y[b, t, h])) - exact) <= math.ulp(float(exact)), (b, t, h)


def test_the_convolution_oracle_gradients_are_the_exact_sums():
    g = torch.Generator().manual_seed(5)
    u, K = (torch.randn(2, 9, 2, generator=g, dtype=torch.float64), torch.randn(9, 2, generator=g, dtype=torch.float64))
    up = torch.randn(2, 9, 2, generator=g, dtype=torch.float64)
    leaves = [u.clone().requires_grad_(), K.clone().requires_grad_()]
    grad_u, grad_K = torch.autograd.grad(conv_oracle(*leaves), leaves, up)
    U, Kf, G = u.tolist(), K.tolist(), up.tolist()
    for b, s, h in np.ndindex(2, 9, 2):
        exact = sum(Fraction(Kf[t - s][h]) * Fraction(G[b][t][h]) for t in range(s, 9))
        assert abs(Fraction(float(grad_u[b, s, h])) - exact) <= math.ulp(float(exact))
    for lag, h in np.ndindex(9, 2):
        exact = sum(Fraction(G[b][t][h]) * Fraction(U[b][t - lag][h]) for b in range(2) for t in range(lag, 9))
        assert abs(Fraction(float(grad_K[lag, h])) - exact) <= math.ulp(float(exact))


def test_the_float64_loop_now_has_a_measurable_error():
    """The old oracle was the float64 `sequential` loop itself; against the double-double one it errs."""
    from scanlab.impls import get_scan_backend

    a, kv, _ = _inputs(False, 2000, 3, False)
    h, _ = get_scan_backend("sequential")(a, kv)
    assert 0 < float((h - oracle(a, kv)[0]).abs().max())


@pytest.mark.parametrize("with_h0", [False, True])
def test_the_scan_oracle_of_an_empty_sequence_ends_in_its_initial_state(with_h0):
    a = torch.empty(2, 0, 3, dtype=torch.complex128)
    h0 = torch.full((2, 3), 1 - 2j, dtype=torch.complex128) if with_h0 else None
    h, h_last = oracle(a, a, h0)
    assert h.shape == (2, 0, 3) and h_last.dtype == torch.complex128
    assert torch.equal(h_last, h0 if with_h0 else torch.zeros(2, 3, dtype=torch.complex128))
