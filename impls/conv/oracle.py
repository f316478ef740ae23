"""The convolution oracle: the direct causal sum in double-double, independent of every backend.

    y[b, t, h] = sum_{s <= t} K[t - s, h] u[b, s, h]

Each product is formed exactly (TwoProduct) and added to a double-double sum, so the result is the
exact sum rounded to float64 up to L * 2^-106 relative to sum |K| |u| (tests/test_oracle.py checks
it against fractions). Gradients, with upstream g:

    grad_u[b, s, h] = sum_{t >= s} K[t - s, h] g[b, t, h]  (the same sum on reversed sequences)
    grad_K[l, h] = sum_b sum_{t >= l} g[b, t, h] u[b, t - l, h]

It costs B * H * L^2 / 2 multiply-adds of about 40 flops: callers judging large shapes sample
channels (harness/check/verify.py), which convolutions keep independent.
"""
import numpy as np
import torch
from einops import rearrange
from numba import njit, prange

from ..double_double import dd_add, two_prod


@njit(parallel=True, cache=True)
def _causal_sum(u, K, y):  # u (B, H, L), K (H, L), out y (B, H, L)
    batch, channels, length = u.shape
    for job in prange(batch * channels):
        b, h = job // channels, job % channels
        for t in range(length):
            s, s_lo = 0.0, 0.0
            for j in range(t + 1):
                p, e = two_prod(K[h, t - j], u[b, h, j])
                s, s_lo = dd_add(s, s_lo, p, e)
            y[b, h, t] = s + s_lo


@njit(parallel=True, cache=True)
def _kernel_gradient(g, u, grad_K):  # g, u (B, H, L), out grad_K (H, L)
    batch, channels, length = u.shape
    for job in prange(channels * length):
        h, lag = job // length, job % length
        s, s_lo = 0.0, 0.0
        for b in range(batch):
            for t in range(lag, length):
                p, e = two_prod(g[b, h, t], u[b, h, t - lag])
                s, s_lo = dd_add(s, s_lo, p, e)
        grad_K[h, lag] = s + s_lo


def _channels_last_to_numpy(tensor, pattern):
    return np.ascontiguousarray(rearrange(tensor.detach().cpu().to(torch.float64), pattern).numpy())


def causal_conv_double_double(u, K):
    """y (B, L, H) in float64 from u (B, L, H) and K (L, H), without autograd."""
    u_, K_ = _channels_last_to_numpy(u, "b l h -> b h l"), _channels_last_to_numpy(K, "l h -> h l")
    y = np.empty_like(u_)
    _causal_sum(u_, K_, y)
    return rearrange(torch.from_numpy(y), "b h l -> b l h").to(u.device)


class _Oracle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, K):
        ctx.save_for_backward(u, K)
        return causal_conv_double_double(u, K)

    @staticmethod
    def backward(ctx, grad_y):
        u, K = ctx.saved_tensors
        grad_u = causal_conv_double_double(grad_y.flip(1), K).flip(1)
        g, u_ = _channels_last_to_numpy(grad_y, "b l h -> b h l"), _channels_last_to_numpy(u, "b l h -> b h l")
        grad_K = np.empty(g.shape[1:])
        _kernel_gradient(g, u_, grad_K)
        return grad_u, rearrange(torch.from_numpy(grad_K), "h l -> l h").to(K.device)


def conv_oracle(u, K):
    """y (B, L, H) in float64, with autograd, for u (B, L, H) and K (L_K >= L, H) of any real dtype."""
    u, K = u.to(torch.float64), K[: u.shape[1]].to(torch.float64)
    if u.numel() == 0:
        return u * K
    return _Oracle.apply(u, K)
