"""Scan backends: every file here is one algorithm exporting the same `scan(a, kv, h0=None)`."""
import importlib

from ..backend import ScanBackend
from ..registry import Registry
from ..jax_bridge import import_jax
from .oracle import oracle


def _module_loader(module, factory="load"):
    return lambda: getattr(importlib.import_module(f"{__name__}.{module}"), factory)()


def _jax_loader(module):
    def load():
        _, missing = import_jax()
        if missing:
            return ScanBackend(name=module, kind="scan", fn=None, unavailable_reason=missing)
        return importlib.import_module(f"{__name__}.{module}").load()

    return load


REGISTRY = Registry("scan", {
    "sequential": _module_loader("sequential"),
    "assoc": _module_loader("assoc"),
    "heinsen": _module_loader("heinsen"),
    "chunked": _module_loader("chunked"),
    "torch_hop": _module_loader("torch_hop"),
    "native": _module_loader("native"),
    "heinsen_chunked": _module_loader("heinsen_chunked"),
    "triton": _module_loader("triton"),
    "accelerated_scan": _module_loader("accelerated_scan"),
    "accelerated_scan_scalar": _module_loader("accelerated_scan", "load_scalar"),
    "fla_hgrn": _module_loader("fla_hgrn"),
    "fla_hgrn_recurrent": _module_loader("fla_hgrn", "load_recurrent"),
    "jax_assoc": _jax_loader("jax_assoc"),
    "jax_scan": _jax_loader("jax_scan"),
})


def scan_backends():
    """name -> backend, for every scan backend usable in this environment."""
    return REGISTRY.available()


def all_scan_backends():
    """name -> backend, unavailable ones included (their unavailable_reason says why)."""
    return REGISTRY.all()


def get_scan_backend(name):
    return REGISTRY.get(name)


__all__ = ["scan_backends", "all_scan_backends", "get_scan_backend", "oracle"]
