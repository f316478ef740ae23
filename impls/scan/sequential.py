"""A plain loop over L, in the input's precision (the oracle is impls/scan/oracle.py, in double-double)."""
import torch

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from ..layouts import REVERSE, VARLEN, sequences
from .interface import SCAN_DOC, scan_from_core


def sequential_states(a, kv):  # (b l d) -> (b l d)
    # unbind, not a[:, t]: the backward of indexing materialises a full (b l d) zero tensor per
    # step (O(L^2) traffic: minutes at L = 16384); unbind's backward is one stack
    h = torch.zeros_like(kv[:, 0])
    states = []
    for a_t, kv_t in zip(a.unbind(1), kv.unbind(1)):
        h = a_t * h + kv_t
        states.append(h)
    return torch.stack(states, dim=1)


dense_scan = scan_from_core(sequential_states)


def scan(a, kv, h0=None, *, reverse=False, cu_seqlens=None):
    """The loop in either direction, each packed sequence from its own h0[i]: both layouts native."""
    if not reverse and cu_seqlens is None:
        return dense_scan(a, kv, h0)
    spans = [(0, a.shape[1])] if cu_seqlens is None else sequences(cu_seqlens)
    a_steps, kv_steps = a.unbind(1), kv.unbind(1)
    states, lasts = [None] * a.shape[1], []
    for i, (start, end) in enumerate(spans):
        if h0 is None:
            h = torch.zeros_like(kv[:, 0] if cu_seqlens is None else kv[:1, 0])  # (rows d)
        else:
            h = h0 if cu_seqlens is None else h0[i:i + 1]
        for t in (range(end - 1, start - 1, -1) if reverse else range(start, end)):
            h = a_steps[t] * h + kv_steps[t]
            states[t] = h
        lasts.append(h)
    return torch.stack(states, dim=1), lasts[0] if cu_seqlens is None else torch.cat(lasts)


scan.__doc__ = SCAN_DOC


def load():
    return ScanBackend(name="sequential", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description="plain loop over L in the input's precision", native_layouts=(REVERSE, VARLEN))
