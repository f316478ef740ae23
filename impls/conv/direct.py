"""Direct causal depthwise convolution, y[b, t, h] = sum_{s<=t} K[t-s, h] u[b, s, h]: O(L^2) work.

Computed as a product with the lower-triangular Toeplitz matrix of K, a few channels at a time to
bound memory. conv1d was the first choice and lost: float64 conv1d took 4.3 s at L=1024 and 62 s
at L=4096 on this machine, and float32 conv1d was slowed 2-3.6x by subnormals in decaying kernels.
"""
import torch
from einops import einsum

from ..backend import ConvBackend

TOEPLITZ_ELEMENTS = 2 ** 24  # per block of channels: 128 MiB in float64


def direct_conv(u, K):  # (b l h), (l h) -> (b l h)
    length, channels = u.shape[1], u.shape[2]
    # subnormal taps change no output and slow every multiply-add that meets them; flushing them
    # must not zero their gradient (sum_t g_t u_{t-l} is not small), hence the detached difference
    flushed = K.masked_fill(K.abs() < torch.finfo(K.dtype).tiny, 0)
    K = K + (flushed - K).detach()
    positions = torch.arange(length, device=u.device)
    lag = positions[:, None] - positions[None, :]  # (t s)
    causal = lag >= 0
    # a NaN or inf in u would reach earlier outputs through the product's zeros (0 * inf = NaN):
    # then each product is formed and only the causal ones are summed, at B times the memory
    finite = bool(torch.isfinite(u).all())
    block = max(1, TOEPLITZ_ELEMENTS // (length * length * (1 if finite else u.shape[0])))
    outputs = []
    for start in range(0, channels, block):
        taps = K[:, start:start + block]  # (l hb)
        toeplitz = torch.where(causal[..., None], taps[lag.clamp_min(0)], 0)  # (t s hb)
        u_block = u[..., start:start + block]  # (b s hb)
        if finite:
            outputs.append(einsum(toeplitz, u_block, "t s h, b s h -> b t h"))
        else:
            products = toeplitz * u_block[:, None]  # (b t s hb)
            outputs.append(torch.where(causal[..., None], products, 0).sum(dim=2))
    return torch.cat(outputs, dim=-1)


def load():
    return ConvBackend(name="direct", kind="conv", fn=direct_conv,
                       description="Toeplitz product, O(L^2)")
