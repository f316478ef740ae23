"""Causal depthwise convolution backends: every file here is one algorithm called as conv(u, K) -> y."""
import importlib

from ..registry import Registry
from .oracle import conv_oracle

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


