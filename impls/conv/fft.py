"""FFT convolution as in the seed: rfft/irfft at length 2L along the sequence axis of (B, L, H).

Length 2L >= 2L-1 makes the circular convolution equal the linear one on the first L outputs.
"""
from torch.fft import irfft, rfft

from ..backend import ConvBackend
from ..validation import nonfinite

# A NaN or inf anywhere would reach every output through the transform, earlier ones included.
NONFINITE = "an FFT convolution spreads a NaN or inf to every output; use conv backend 'direct', which keeps causality"


def fft_conv(u, K):  # (b l h), (l h) -> (b l h)
    length = u.shape[1]
    n = 2 * length
    return irfft(rfft(u, n=n, dim=1) * rfft(K, n=n, dim=0), n=n, dim=1)[:, :length]


def finite_inputs(u, K):
    return nonfinite(NONFINITE, u=u, K=K)


def load():
    return ConvBackend(name="fft", kind="conv", fn=fft_conv, limits=finite_inputs, description="rfft/irfft at 2L along L (the seed's layout)")
