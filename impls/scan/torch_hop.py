"""torch._higher_order_ops.associative_scan, where the installed torch has it and it runs.

combine_mode='generic' runs eagerly on any device; 'pointwise' (faster, CUDA only) needs the
combine function to be traceable pointwise, which ours is, so CUDA inputs use it.
"""
import torch

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from .interface import scan_from_core


def _combine(left, right):
    a_left, h_left = left
    a_right, h_right = right
    return a_right * a_left, a_right * h_left + h_right


def hop_states(a, kv):  # (b l d) -> (b l d)
    from torch._higher_order_ops.associative_scan import associative_scan

    mode = "pointwise" if a.is_cuda else "generic"
    return associative_scan(_combine, (a, kv), dim=1, combine_mode=mode)[1]


scan = scan_from_core(hop_states)


def _probe():
    """None when a tiny scan runs and is right, else why not."""
    try:
        a = torch.full((1, 3, 1), 0.5)
        h = hop_states(a, torch.ones(1, 3, 1))
    except Exception as error:  # any failure of a private API means unavailable, with its reason
        return f"torch {torch.__version__}: associative_scan failed: {type(error).__name__}: {error}"
    if not torch.allclose(h.flatten(), torch.tensor([1.0, 1.5, 1.75])):
        return f"torch {torch.__version__}: associative_scan returned wrong values {h.flatten().tolist()}"
    return None


def load():
    return ScanBackend(name="torch_hop", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES, unavailable_reason=_probe(),
                       description="torch._higher_order_ops.associative_scan (generic on CPU, pointwise on CUDA)")
