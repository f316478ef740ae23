"""flash-linear-attention's HGRN ops (`pip install -e ".[gpu]"`) behind scanlab's interface.

    fla_hgrn            fla.ops.hgrn.chunk_hgrn
    fla_hgrn_recurrent  fla.ops.hgrn.fused_recurrent_hgrn

Both compute h_t = exp(g_t) h_{t-1} + x_t with the gate in log space, g = log a, so they take
gates a > 0 only: an exact-zero gate (a state reset) becomes g = -inf and a negative one NaN, and
such inputs are refused before the call. h0 is folded into the first input rather than passed as
`initial_state`: chunk_hgrn's backward (fla 0.6.0) returns no gradient for it. The final state is
the last output. Triton autotuning needs a GPU driver, so neither runs under the interpreter.
"""
import importlib.util

import torch

from ..backend import HALF_DTYPES, ScanBackend
from .interface import SCAN_DOC, fold_initial_state


def _scan_with(op_name):
    def scan(a, kv, h0=None):
        from fla.ops import hgrn

        h, _ = getattr(hgrn, op_name)(fold_initial_state(a, kv, h0), torch.log(a))
        return h, h[:, -1]

    scan.__doc__ = SCAN_DOC
    return scan


def positive_gates(a, kv, h0):
    if a.numel() and not bool((a > 0).all()):
        return (f"gates enter in log space (g = log a), so every a must be > 0; got min a = {float(a.min()):.3g} "
                f"({int((a <= 0).sum())} of {a.numel()} gates <= 0)")
    return None


def _unavailable_reason():
    if importlib.util.find_spec("fla") is None:
        return "flash-linear-attention is not installed; pip install -e '.[gpu]'"
    return None


def _backend(name, op_name):
    return ScanBackend(name=name, kind="scan", fn=_scan_with(op_name), dtypes=(torch.float32,) + HALF_DTYPES,
                       devices=("cuda",), limits=positive_gates, unavailable_reason=_unavailable_reason(),
                       description=f"flash-linear-attention fla.ops.hgrn.{op_name} (gates in log space: a > 0)")


def load():
    return _backend("fla_hgrn", "chunk_hgrn")


def load_recurrent():
    return _backend("fla_hgrn_recurrent", "fused_recurrent_hgrn")
