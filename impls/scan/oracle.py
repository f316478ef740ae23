"""The scan oracle: the recurrence in double-double arithmetic, independent of every backend.

    h_t = a_t * h_{t-1} + kv_t,  h_{-1} = h0 (or 0);  a, kv (B, L, D), h0 (B, D)

Each step rounds to about 106 bits instead of 53, so after L steps the oracle's error is about
L * 2^-106 relative to the scan of magnitudes |a|, |kv|: 1e-28 at L = 16384, below the rounding
of its float64 result (2^-53 = 1.1e-16) by twelve orders. Its result is the double-double value
rounded to float64 (complex128 for complex inputs): a float64 backend is judged on its own error,
where the old oracle, the float64 `sequential` loop itself, recorded 0 against itself.

Gradients come from the adjoint recurrence, also in double-double (with torch's convention for
complex values, grad = upstream * conj(d out / d in)):

    lam_t = g_t + conj(a_{t+1}) lam_{t+1},  lam_{L-1} = g_{L-1} + g_last
    grad_kv_t = lam_t,  grad_a_t = lam_t conj(h_{t-1}),  grad_h0 = conj(a_0) lam_0

tests/test_oracle.py checks values and gradients against exact rational arithmetic (fractions).
"""
import numpy as np
import torch
from numba import njit, prange

from ..double_double import cdd_add, cdd_mul
from ..layouts import check_cu_seqlens, sequences


@njit(parallel=True, cache=True)
def _forward(a_re, a_im, kv_re, kv_im, h0_re, h0_im, h_re, h_re_lo, h_im, h_im_lo):  # (B, L, D), (B, D)
    batch, length, channels = a_re.shape
    for job in prange(batch * channels):
        b, d = job // channels, job % channels
        s, s_lo, si, si_lo = h0_re[b, d], 0.0, h0_im[b, d], 0.0
        for t in range(length):
            s, s_lo, si, si_lo = cdd_mul(a_re[b, t, d], 0.0, a_im[b, t, d], 0.0, s, s_lo, si, si_lo)
            s, s_lo, si, si_lo = cdd_add(s, s_lo, si, si_lo, kv_re[b, t, d], 0.0, kv_im[b, t, d], 0.0)
            h_re[b, t, d], h_re_lo[b, t, d], h_im[b, t, d], h_im_lo[b, t, d] = s, s_lo, si, si_lo


@njit(parallel=True, cache=True)
def _backward(a_re, a_im, h_re, h_re_lo, h_im, h_im_lo, h0_re, h0_im, g_re, g_im, g_last_re, g_last_im,
              grad_a_re, grad_a_im, grad_kv_re, grad_kv_im, grad_h0_re, grad_h0_im):
    batch, length, channels = a_re.shape
    for job in prange(batch * channels):
        b, d = job // channels, job % channels
        lam, lam_lo, lami, lami_lo = g_last_re[b, d], 0.0, g_last_im[b, d], 0.0
        for t in range(length - 1, -1, -1):
            if t < length - 1:  # conj(a_{t+1}) lam_{t+1}
                lam, lam_lo, lami, lami_lo = cdd_mul(a_re[b, t + 1, d], 0.0, -a_im[b, t + 1, d], 0.0,
                                                     lam, lam_lo, lami, lami_lo)
            lam, lam_lo, lami, lami_lo = cdd_add(lam, lam_lo, lami, lami_lo, g_re[b, t, d], 0.0, g_im[b, t, d], 0.0)
            grad_kv_re[b, t, d], grad_kv_im[b, t, d] = lam + lam_lo, lami + lami_lo
            if t > 0:
                p, p_lo, q, q_lo = h_re[b, t - 1, d], h_re_lo[b, t - 1, d], h_im[b, t - 1, d], h_im_lo[b, t - 1, d]
            else:
                p, p_lo, q, q_lo = h0_re[b, d], 0.0, h0_im[b, d], 0.0
            re, re_lo, im, im_lo = cdd_mul(lam, lam_lo, lami, lami_lo, p, p_lo, -q, -q_lo)
            grad_a_re[b, t, d], grad_a_im[b, t, d] = re + re_lo, im + im_lo
        re, re_lo, im, im_lo = cdd_mul(a_re[b, 0, d], 0.0, -a_im[b, 0, d], 0.0, lam, lam_lo, lami, lami_lo)
        grad_h0_re[b, d], grad_h0_im[b, d] = re + re_lo, im + im_lo


def _parts(tensor):
    """(re, im) float64 numpy arrays, C-contiguous, of a real or complex tensor."""
    wide = tensor.detach().cpu().to(torch.complex128)
    return np.ascontiguousarray(wide.real.numpy()), np.ascontiguousarray(wide.imag.numpy())


def _tensor(re, im, complex_out, device):
    out = torch.complex(torch.from_numpy(re), torch.from_numpy(im)) if complex_out else torch.from_numpy(re)
    return out.to(device)


def scan_double_double(a, kv, h0=None):
    """(h, h_lo): the states as float64 parts hi + lo, each (re, im) numpy arrays (B, L, D)."""
    (a_re, a_im), (kv_re, kv_im) = _parts(a), _parts(kv)
    batch, _, channels = a_re.shape
    h0_re, h0_im = _parts(h0) if h0 is not None else (np.zeros((batch, channels)), np.zeros((batch, channels)))
    h_re, h_re_lo, h_im, h_im_lo = (np.empty_like(a_re) for _ in range(4))
    _forward(a_re, a_im, kv_re, kv_im, h0_re, h0_im, h_re, h_re_lo, h_im, h_im_lo)
    return (h_re, h_im), (h_re_lo, h_im_lo)


class _Oracle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, kv, h0):
        (h_re, h_im), (h_re_lo, h_im_lo) = scan_double_double(a, kv, h0)
        complex_out = a.is_complex()
        ctx.save_for_backward(a, h0)
        ctx.states = (h_re, h_re_lo, h_im, h_im_lo)
        h = _tensor(h_re + h_re_lo, h_im + h_im_lo, complex_out, a.device)
        return h, h[:, -1].clone()

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        a, h0 = ctx.saved_tensors
        (a_re, a_im), (g_re, g_im), (gl_re, gl_im) = _parts(a), _parts(grad_h), _parts(grad_last)
        batch, _, channels = a_re.shape
        h0_re, h0_im = _parts(h0) if h0 is not None else (np.zeros((batch, channels)), np.zeros((batch, channels)))
        grads = [np.empty_like(a_re) for _ in range(4)] + [np.empty_like(h0_re) for _ in range(2)]
        _backward(a_re, a_im, *ctx.states, h0_re, h0_im, g_re, g_im, gl_re, gl_im, *grads)
        complex_out = a.is_complex()
        grad_a, grad_kv, grad_h0 = (_tensor(grads[i], grads[i + 1], complex_out, a.device) for i in (0, 2, 4))
        return grad_a, grad_kv, grad_h0 if h0 is not None else None


def oracle(a, kv, h0=None, *, reverse=False, cu_seqlens=None):
    """(h, h_last) in float64 (complex128 for complex inputs), with autograd, from the double-double scan.

    reverse, cu_seqlens as every backend takes them (impls/layouts.py), computed here directly: each
    packed sequence is its own double-double scan from its own h0[i] (a reverse one on its steps in
    reverse order, an exact reindexing), never the zero-gate adapter the backends may use."""
    wide = torch.complex128 if a.is_complex() else torch.float64
    a, kv = a.to(wide), kv.to(wide)
    h0 = None if h0 is None else h0.to(wide)
    if cu_seqlens is None:
        return _dense(a, kv, h0, reverse)
    check_cu_seqlens(cu_seqlens, a, kv)
    states, lasts = [], []
    for i, (start, end) in enumerate(sequences(cu_seqlens)):
        first = None if h0 is None else h0[i:i + 1]  # (1 d)
        if end == start:
            lasts.append(a.new_zeros(a.shape[2]) if first is None else first[0].clone())
            continue
        h, h_last = _dense(a[:, start:end], kv[:, start:end], first, reverse)
        states.append(h)
        lasts.append(h_last[0])
    h = torch.cat(states, dim=1) if states else a.new_empty(a.shape)
    return h, torch.stack(lasts) if lasts else a.new_zeros(0, a.shape[2])


def _dense(a, kv, h0, reverse):
    if a.shape[1] == 0:
        batch, _, channels = a.shape
        wide = a.dtype
        return a.new_empty(a.shape), torch.zeros(batch, channels, dtype=wide, device=a.device) if h0 is None else h0.clone()
    if reverse:
        h, h_last = _Oracle.apply(a.flip(1), kv.flip(1), h0)
        return h.flip(1), h_last
    return _Oracle.apply(a, kv, h0)
