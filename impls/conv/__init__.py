"""Causal depthwise convolution backends: every file here is one algorithm called as conv(u, K) -> y."""
import importlib

import torch

from ..backend import Registry

ORACLE_DIRECT_MAX_LEN = 2048  # direct float64 beyond this costs seconds to minutes; fft64 is used instead

REGISTRY = Registry("conv", {
    name: (lambda name=name: importlib.import_module(f"{__name__}.{name}").load())
    for name in ("direct", "fft", "fft_fast")
})


def conv_backends():
    """name -> backend, for every convolution backend usable in this environment."""
    return REGISTRY.available()


def all_conv_backends():
    return REGISTRY.all()


def get_conv_backend(name):
    return REGISTRY.get(name)


def conv_oracle(u, K):
    """The reference: float64, direct up to ORACLE_DIRECT_MAX_LEN, float64 FFT beyond.

    The two agree to ~1e-15 relative to |K| * |u| where both are affordable (tests/test_conv.py).
    """
    u, K = u.to(torch.float64), K.to(torch.float64)
    name = "direct" if u.shape[1] <= ORACLE_DIRECT_MAX_LEN else "fft"
    return get_conv_backend(name)(u, K)
