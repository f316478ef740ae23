"""torch._higher_order_ops.associative_scan, where the installed torch has it and it runs.

combine_mode='generic' runs eagerly on any device. On CUDA the backend runs combine_mode='pointwise'
under torch.compile (the mode meant for GPUs: the combine, pointwise as ours is, is fused into one
generated Triton scan). Each device is probed with a tiny scan; a device whose probe fails is
dropped from `devices`, with the error in `device_note`. Reverse scans use its own reverse=True,
which gave silently wrong results for some shapes in earlier torch (pytorch #137943): the layout
properties (harness/check/layout_agreement.py) check it against the oracle.
"""
import functools

import torch

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from ..layouts import REVERSE
from .interface import scan_from_core


def _combine(left, right):
    a_left, h_left = left
    a_right, h_right = right
    return a_right * a_left, a_right * h_left + h_right


def _states(a, kv, mode, reverse=False):  # (b l d) -> (b l d)
    from torch._higher_order_ops.associative_scan import associative_scan

    return associative_scan(_combine, (a, kv), dim=1, reverse=reverse, combine_mode=mode)[1]


@functools.cache
def _compiled_pointwise(reverse):
    return torch.compile(functools.partial(_states, mode="pointwise", reverse=reverse), dynamic=False)


def hop_states(a, kv, reverse=False):  # (b l d) -> (b l d)
    if a.is_cuda:
        return _compiled_pointwise(reverse)(a, kv)
    return _states(a, kv, "generic", reverse)


scan = scan_from_core(hop_states, float16_in_float32=True, reverse_core=functools.partial(hop_states, reverse=True))


def _probe(device):
    """None when a tiny scan runs on `device` and is right, else why not."""
    try:
        a = torch.full((1, 3, 1), 0.5, device=device)
        h = hop_states(a, torch.ones(1, 3, 1, device=device)).cpu()
    except Exception as error:  # any failure of a private API means unavailable, with its reason
        return f"torch {torch.__version__}: associative_scan failed on {device}: {type(error).__name__}: {error}"
    if not torch.allclose(h.flatten(), torch.tensor([1.0, 1.5, 1.75])):
        return f"torch {torch.__version__}: associative_scan returned wrong values on {device}: {h.flatten().tolist()}"
    return None


def load():
    cpu_problem = _probe("cpu")
    cuda_problem = _probe("cuda") if torch.cuda.is_available() else None
    devices = ("cpu",) + (("cuda",) if torch.cuda.is_available() and cuda_problem is None else ())
    return ScanBackend(name="torch_hop", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES, devices=devices,
                       unavailable_reason=cpu_problem, device_note=cuda_problem or "",
                       description="torch._higher_order_ops.associative_scan (generic on CPU, pointwise under "
                                   "torch.compile on CUDA)", native_layouts=(REVERSE,))
