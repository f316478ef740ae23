"""A plain loop over L: the oracle every other backend is checked against."""
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


def wide_dtype(dtype):
    return torch.complex128 if dtype.is_complex else torch.float64


def oracle(a, kv, h0=None):
    """The reference: the sequential scan computed in float64 (complex128 for complex inputs)."""
    wide = wide_dtype(a.dtype)
    return scan(a.to(wide), kv.to(wide), None if h0 is None else h0.to(wide))


def load():
    return ScanBackend(name="sequential", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description="plain loop over L; the oracle (in float64 via impls.scan.oracle)")
