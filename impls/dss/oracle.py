"""The DSS reference: the float64 kernel convolved by the conv oracle, and the scale errors are judged on."""
import torch
from einops import einsum

from ..conv import conv_oracle
from .kernel import discretised_C, dss_kernel


def dss_oracle(u, Lambda, C):
    """y (B, L, H) in float64 from a complex128 kernel."""
    return conv_oracle(u.to(torch.float64), dss_kernel(Lambda.to(torch.complex128), C.to(torch.complex128), u.shape[1]))


def dss_error_scale(u, Lambda, C):
    """|u| convolved with sum_n |C'[h, n]| |exp(Lambda_n)|^l: what a rounding error in either mode is relative to."""
    Lambda, C = Lambda.detach().to(torch.complex128), C.detach().to(torch.complex128)
    positions = torch.arange(u.shape[1], dtype=torch.float64, device=u.device)
    decay = (Lambda.real[:, None] * positions[None, :]).exp()  # (n l)
    K_abs = einsum(discretised_C(Lambda, C).abs(), decay, "h n, n l -> l h")
    return conv_oracle(u.detach().abs().to(torch.float64), K_abs)
