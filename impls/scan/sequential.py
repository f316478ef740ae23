"""A plain loop over L, in the input's precision (the oracle is impls/scan/oracle.py, in double-double)."""
import torch

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from .interface import scan_from_core


def sequential_states(a, kv):  # (b l d) -> (b l d)
    # unbind, not a[:, t]: the backward of indexing materialises a full (b l d) zero tensor per
    # step (O(L^2) traffic: minutes at L = 16384); unbind's backward is one stack
    h = torch.zeros_like(kv[:, 0])
    states = []
    for a_t, kv_t in zip(a.unbind(1), kv.unbind(1)):
        h = a_t * h + kv_t
        states.append(h)
    return torch.stack(states, dim=1)


scan = scan_from_core(sequential_states)


def load():
    return ScanBackend(name="sequential", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description="plain loop over L in the input's precision")
