"""flash-linear-attention's HGRN ops (`pip install -e ".[gpu]"`) behind scanlab's interface.

    fla_hgrn            fla.ops.hgrn.chunk_hgrn
    fla_hgrn_recurrent  fla.ops.hgrn.fused_recurrent_hgrn

Both compute h_t = exp(g_t) h_{t-1} + x_t with the gate in log space, g = log a, so they take
gates a > 0 only: an exact-zero gate (a state reset) becomes g = -inf and a negative one NaN, and
such inputs are refused before the call. h0 is folded into the first input rather than passed as
`initial_state`: chunk_hgrn's backward (fla 0.6.0) returns no gradient for it. The final state is
the last output. Triton autotuning needs a GPU driver, so neither runs under the interpreter.
Packed sequences: fused_recurrent_hgrn takes fla's own cu_seqlens (each sequence from its
initial_state row, a state no zero gate could reset in log space); chunk_hgrn takes none.
"""
import importlib.util

import torch

from ..backend import HALF_DTYPES, ScanBackend
from ..layouts import VARLEN
from .interface import SCAN_DOC, fold_initial_state


def _scan_with(op_name):
    def scan(a, kv, h0=None):
        from fla.ops import hgrn

        h, _ = getattr(hgrn, op_name)(fold_initial_state(a, kv, h0), torch.log(a))
        return h, h[:, -1]

    scan.__doc__ = SCAN_DOC
    return scan


def _recurrent_scan(a, kv, h0=None, *, cu_seqlens=None):
    """fused_recurrent_hgrn, whose own cu_seqlens runs packed sequences (fla 0.6.0; it has no reverse):
    each from its own initial_state row, which its backward differentiates."""
    if cu_seqlens is None:
        return _dense_recurrent(a, kv, h0)
    from fla.ops.hgrn import fused_recurrent_hgrn

    return fused_recurrent_hgrn(kv, torch.log(a), initial_state=h0, output_final_state=True,
                                cu_seqlens=cu_seqlens.long())


_dense_recurrent = _scan_with("fused_recurrent_hgrn")
_recurrent_scan.__doc__ = SCAN_DOC


def positive_gates(a, kv, h0):
    if a.numel() and not bool((a > 0).all()):
        return (f"gates enter in log space (g = log a), so every a must be > 0; got min a = {float(a.min()):.3g} "
                f"({int((a <= 0).sum())} of {a.numel()} gates <= 0)")
    return None


def _unavailable_reason():
    if importlib.util.find_spec("fla") is None:
        return "flash-linear-attention is not installed; pip install -e '.[gpu]'"
    return None


def _backend(name, op_name, fn, native_layouts=()):
    return ScanBackend(name=name, kind="scan", fn=fn, dtypes=(torch.float32,) + HALF_DTYPES,
                       devices=("cuda",), limits=positive_gates, unavailable_reason=_unavailable_reason(),
                       description=f"flash-linear-attention fla.ops.hgrn.{op_name} (gates in log space: a > 0)",
                       native_layouts=native_layouts)


def load():  # chunk_hgrn takes no cu_seqlens: packed rows go through the adapter, whose zero gates it refuses
    return _backend("fla_hgrn", "chunk_hgrn", _scan_with("chunk_hgrn"))


def load_recurrent():
    return _backend("fla_hgrn_recurrent", "fused_recurrent_hgrn", _recurrent_scan, native_layouts=(VARLEN,))
