"""The DSS convolution kernel, step 1 with zero-order hold.

    K[l, h] = Re( sum_n C[h, n] * (exp(Lambda_n) - 1) / Lambda_n * exp(Lambda_n * l) ),  l = 0..L-1

It materialises exp(Lambda_n * l) as an (N, L) complex matrix: N * L * 8 bytes in complex64
(16 MiB at N=512, L=4096), the memory the recurrent mode does without.
"""
import torch
from einops import einsum

from ..validation import require_rank, require_same

COMPLEX_FOR = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def check_dss_parameters(Lambda, C):
    require_rank("Lambda", Lambda, 1, "(N,)")
    require_rank("C", C, 2, "(H, N)")
    for name, value in (("Lambda", Lambda), ("C", C)):
        if not value.is_complex():
            raise TypeError(f"{name} must be complex (complex64 or complex128), got {value.dtype}")
    if C.shape[1] != Lambda.shape[0]:
        raise ValueError(f"C must have shape (H, N) with N = {Lambda.shape[0]} to match Lambda; got {tuple(C.shape)}")
    require_same("dtype", "C", C, "Lambda", Lambda)
    require_same("device", "C", C, "Lambda", Lambda)
    growth = float(Lambda.detach().real.max()) if Lambda.numel() else 0.0
    if growth > 0:
        raise ValueError(f"Lambda must have Re(Lambda) <= 0 (a kernel that decays or holds; a growing one "
                         f"overflows to NaN at long L); got max Re(Lambda) = {growth:.3g}")


def discretised_C(Lambda, C):  # (n), (h n) -> (h n)
    """C (exp(Lambda) - 1) / Lambda, with its limit C at Lambda = 0 (value and gradient finite there)."""
    zero = Lambda == 0
    safe = torch.where(zero, torch.ones_like(Lambda), Lambda)
    return C * torch.where(zero, torch.ones_like(Lambda), torch.expm1(safe) / safe)


def dss_kernel(Lambda, C, L):
    """K (L, H), real, from complex Lambda (N,) and C (H, N)."""
    check_dss_parameters(Lambda, C)
    if isinstance(L, bool) or not isinstance(L, int) or L < 0:
        raise ValueError(f"L must be a non-negative int, got {L!r}")
    positions = torch.arange(L, device=Lambda.device, dtype=Lambda.real.dtype)
    powers = (Lambda[:, None] * positions[None, :]).exp()  # (n l)
    return einsum(discretised_C(Lambda, C), powers, "h n, n l -> l h").real
