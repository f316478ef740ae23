"""The bandwidth floor: the fastest pass over memory that moves what a scan must move.

forward           read a, kv; write h                        torch.mul(x, y)                 3 tensors
forward+backward  the forward, then read dh, a, h and        torch.mul(x, y), then one fused  8 tensors
                  write dkv, da                              pass reading 3 and writing 2
copy              the device's copy bandwidth: one tensor    dst.copy_(src)                  2 tensors
                  read, one written (CUDA sweeps)

Every backend allocates its outputs, so the floor does too: a fresh large allocation is page-faulted
in on first touch, and at L = 16384 (64 MiB a tensor) that costs this machine more than the arithmetic
(reports: `x floor (prealloc)`). The preallocated variant writes into buffers made once, and is kept
as a second column. torch has no elementwise op with two outputs, so the 3-in/2-out pass is a small
numba kernel (numba is there for the `native` backend); without numba, and on CUDA, it is two
torch ops moving 6 tensors, and the floor's byte count says so.
"""
from dataclasses import dataclass
from typing import Callable

import torch


def stream_kernel():
    """The fused 3-in/2-out kernel (compiled on first call); None without numba."""
    try:
        from .floor_kernel import three_in_two_out
    except ImportError:
        return None
    return three_in_two_out


@dataclass
class FloorPass:
    run: Callable[[], None]
    tensors: int  # (B, L, D) tensors read or written per call


def _fresh_or(outputs, like):
    return outputs if outputs is not None else (torch.empty_like(like), torch.empty_like(like))


def _backward_pass(g, x, z, outputs):
    """Read g, x, z once; write two tensors (fresh ones, or `outputs` when preallocated)."""
    kernel = stream_kernel() if g.device.type == "cpu" else None
    if kernel is None:
        def run():
            p, q = _fresh_or(outputs, g)
            torch.add(g, x, out=p)
            torch.mul(g, z, out=q)
        return run, 6

    from ...impls.scan.native import use_torch_thread_count

    flat = [t.view(-1).numpy() for t in (g, x, z)]

    def run():
        use_torch_thread_count()
        p, q = _fresh_or(outputs, g)
        kernel(*flat, p.view(-1).numpy(), q.view(-1).numpy())
    return run, 5


def copy_pass(x):
    """One device-to-device copy of a (B, L, D) tensor into a buffer made once: the copy bandwidth."""
    out = torch.empty_like(x)
    return FloorPass(lambda: out.copy_(x), 2)


def floor_pass(x, y, mode, preallocated=False):
    """The floor for `mode` on two (B, L, D) tensors of the case's shape and dtype."""
    if mode != "forward+backward":
        if preallocated:
            out = torch.empty_like(x)
            return FloorPass(lambda: torch.mul(x, y, out=out), 3)
        return FloorPass(lambda: torch.mul(x, y), 3)
    g, z = torch.randn_like(x), torch.mul(x, y)
    backward, tensors = _backward_pass(g, x, z, (torch.empty_like(x), torch.empty_like(x)) if preallocated else None)

    forward = floor_pass(x, y, "forward", preallocated).run

    def run():
        forward()
        backward()
    return FloorPass(run, 3 + tensors)
