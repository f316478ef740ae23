"""FFT convolution at the next 7-smooth length >= 2L-1, along a contiguous last axis.

Two changes from `fft`: pocketfft (torch's CPU FFT) is fastest on lengths whose prime factors are
2, 3, 5 and 7, and 2L-1 needs less padding than 2L; and the FFT runs over the contiguous axis,
which was 1.5x faster than the seed's strided one here. Whether that pays after the two
transposes is what the perf sweep measures.
"""
from einops import rearrange
from torch.fft import irfft, rfft

from ..backend import ConvBackend
from .fft import finite_inputs


def next_fast_len(n):
    """Smallest 2^a 3^b 5^c 7^d >= n."""
    best = 1 << max(0, (n - 1).bit_length())
    power7 = 1
    while power7 < best:
        power5 = power7
        while power5 < best:
            power3 = power5
            while power3 < best:
                candidate = power3 << max(0, (-(-n // power3) - 1).bit_length())  # times the least power of 2
                best = min(best, candidate)
                power3 *= 3
            power5 *= 5
        power7 *= 7
    return best


def fft_fast_conv(u, K):  # (b l h), (l h) -> (b l h)
    length = u.shape[1]
    n = next_fast_len(2 * length - 1)
    u_f = rfft(rearrange(u, "b l h -> b h l").contiguous(), n=n)
    K_f = rfft(rearrange(K, "l h -> h l").contiguous(), n=n)
    y = irfft(u_f * K_f, n=n)[..., :length]  # (b h l)
    return rearrange(y, "b h l -> b l h").contiguous()


def load():
    return ConvBackend(name="fft_fast", kind="conv", fn=fft_fast_conv, limits=finite_inputs,
                       description="rfft/irfft at the next 7-smooth length >= 2L-1, contiguous axis")
