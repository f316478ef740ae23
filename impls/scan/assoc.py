"""Associative scan by the odd/even recursion (Blelloch 1990; the shape of jax.lax.associative_scan).

Combining (a_i, h_i) then (a_j, h_j) gives (a_j a_i, a_j h_i + h_j). Pairs are combined, the
half-length problem is solved recursively, and the even positions are filled in from it: any L,
no padding to a power of two, depth log2(L).
"""
import torch
from einops import rearrange

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from .interface import scan_from_core


def _interleave(even, odd, length):  # (b ceil(l/2) d), (b floor(l/2) d) -> (b l d)
    if odd.shape[1] < even.shape[1]:
        odd = torch.cat([odd, even[:, -1:]], dim=1)  # filler, sliced off below
    return rearrange(torch.stack([even, odd], dim=2), "b n two d -> b (n two) d")[:, :length]


def assoc_states(a, h):  # (b l d) -> (b l d)
    """States only: the recursion needs the pair-combined gates, never the gate prefix products."""
    length = a.shape[1]
    if length == 1:
        return h
    a_left, a_right = a[:, 0:length - 1:2], a[:, 1::2]  # pairs (2i, 2i+1)
    h_left, h_right = h[:, 0:length - 1:2], h[:, 1::2]
    H_odd = assoc_states(a_right * a_left, a_right * h_left + h_right)
    a_even, h_even = a[:, 2::2], h[:, 2::2]
    H_even = torch.cat([h[:, :1], a_even * H_odd[:, :a_even.shape[1]] + h_even], dim=1)
    return _interleave(H_even, H_odd, length)


def segmented_states(a, h, reset):  # (b l d), (b l d), (l,) bool -> (b l d)
    """assoc_states, restarted from zero before every step where `reset` is set (Blelloch's segmented
    scan): combining (r_i, a_i, h_i) then (r_j, a_j, h_j) gives r_i | r_j and, where r_j, (a_j, h_j)
    alone. The restart is a selection, not a zero gate: a NaN or inf state never crosses it."""
    length = a.shape[1]
    if length == 1:
        return h
    a_left, a_right = a[:, 0:length - 1:2], a[:, 1::2]
    h_left, h_right = h[:, 0:length - 1:2], h[:, 1::2]
    r_left, r_right = reset[0:length - 1:2], reset[1::2]
    joined = ~r_right[None, :, None]  # (1 l/2 1): the right one continues the left one
    H_odd = segmented_states(torch.where(joined, a_right * a_left, a_right),
                             torch.where(joined, a_right * h_left + h_right, h_right), r_left | r_right)
    a_even, h_even, r_even = a[:, 2::2], h[:, 2::2], reset[2::2]
    carried = a_even * H_odd[:, :a_even.shape[1]] + h_even
    H_even = torch.cat([h[:, :1], torch.where(r_even[None, :, None], h_even, carried)], dim=1)
    return _interleave(H_even, H_odd, length)


scan = scan_from_core(assoc_states, float16_in_float32=True)


def load():
    return ScanBackend(name="assoc", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description="odd/even associative scan in torch, any length")
