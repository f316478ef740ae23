"""Associative scan by the odd/even recursion (Blelloch 1990; the shape of jax.lax.associative_scan).

Combining (a_i, h_i) then (a_j, h_j) gives (a_j a_i, a_j h_i + h_j). Pairs are combined, the
half-length problem is solved recursively, and the even positions are filled in from it: any L,
no padding to a power of two, depth log2(L).
"""
import torch
from einops import rearrange

from ..backend import ALL_DTYPES, ScanBackend
from .interface import scan_from_core


def _interleave(even, odd, length):  # (b ceil(l/2) d), (b floor(l/2) d) -> (b l d)
    if odd.shape[1] < even.shape[1]:
        odd = torch.cat([odd, even[:, -1:]], dim=1)  # filler, sliced off below
    return rearrange(torch.stack([even, odd], dim=2), "b n two d -> b (n two) d")[:, :length]


def _prefixes(a, h, need_gates):
    length = a.shape[1]
    if length == 1:
        return a, h
    a_left, a_right = a[:, 0:length - 1:2], a[:, 1::2]  # pairs (2i, 2i+1)
    h_left, h_right = h[:, 0:length - 1:2], h[:, 1::2]
    A_odd, H_odd = _prefixes(a_right * a_left, a_right * h_left + h_right, need_gates=True)
    a_even, h_even = a[:, 2::2], h[:, 2::2]
    n = a_even.shape[1]
    H_even = torch.cat([h[:, :1], a_even * H_odd[:, :n] + h_even], dim=1)
    A = None
    if need_gates:
        A = _interleave(torch.cat([a[:, :1], a_even * A_odd[:, :n]], dim=1), A_odd, length)
    return A, _interleave(H_even, H_odd, length)


def assoc_states(a, kv):  # (b l d) -> (b l d)
    return _prefixes(a, kv, need_gates=False)[1]


scan = scan_from_core(assoc_states)


def load():
    return ScanBackend(name="assoc", kind="scan", fn=scan, dtypes=ALL_DTYPES,
                       description="odd/even associative scan in torch, any length")
