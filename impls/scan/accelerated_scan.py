"""accelerated-scan's kernels (`pip install -e ".[gpu]"`), layout (B, D, L), behind scanlab's interface.

    accelerated_scan         the `warp` CUDA kernel: L a power of two, 32 <= L <= 65536
    accelerated_scan_scalar  the `scalar` Triton kernel: any L

Both take float32, bfloat16 and float16 and run on CUDA only (`scalar` also under the Triton
interpreter). Neither takes h0 nor returns a final state: h0 is folded into the first input
(interface.fold_initial_state) and the final state is the last output. The (B, L, D) <-> (B, D, L)
layout changes are part of every call, as they are for a user holding (B, L, D) activations.
`warp` is compiled by torch's cpp_extension on its first call (minutes; the compile_s column).
"""
import importlib
import importlib.util
from dataclasses import replace

import torch
from einops import rearrange

from ..backend import HALF_DTYPES, ScanBackend
from .interface import SCAN_DOC, fold_initial_state
from .triton import INTERPRETER_NOTE, interpreted

WARP_LENGTHS = "a power of two from 32 to 65536"


def _scan_with(module):
    def scan(a, kv, h0=None):
        kernel = importlib.import_module(f"accelerated_scan.{module}").scan
        kv = fold_initial_state(a, kv, h0)
        h = kernel(rearrange(a, "b l d -> b d l").contiguous(), rearrange(kv, "b l d -> b d l").contiguous())
        h = rearrange(h, "b d l -> b l d")
        return h, h[:, -1]

    scan.__doc__ = SCAN_DOC
    return scan


def warp_limits(a, kv, h0):
    length = a.shape[1]
    if length & (length - 1) or not 32 <= length <= 65536:
        return f"the warp kernel takes L {WARP_LENGTHS}, got L = {length}; accelerated_scan_scalar takes any L"
    return None


def _unavailable_reason():
    if importlib.util.find_spec("accelerated_scan") is None:
        return "accelerated-scan is not installed; pip install -e '.[gpu]'"
    return None


def _backend(name, module, devices, limits, description):
    return ScanBackend(name=name, kind="scan", fn=_scan_with(module), dtypes=(torch.float32,) + HALF_DTYPES,
                       devices=devices, limits=limits, unavailable_reason=_unavailable_reason(),
                       description=description)


def load():
    return _backend("accelerated_scan", "warp", ("cuda",), warp_limits,
                    f"accelerated-scan `warp` CUDA kernel (L {WARP_LENGTHS}), (B, D, L) layout")


def load_scalar():
    backend = _backend("accelerated_scan_scalar", "scalar", ("cpu",) if interpreted() else ("cuda",), None,
                       "accelerated-scan `scalar` Triton kernel (any L), (B, D, L) layout")
    return replace(backend, device_note=INTERPRETER_NOTE)
