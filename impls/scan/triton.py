"""scanlab's own GPU scan: Triton kernels (triton_kernels.py), one pass forward, one fused pass back.

    forward:  h_t = a_t h_{t-1} + kv_t                         reads a, kv; writes h
    backward: G_t = dL/dh_t + a_{t+1} G_{t+1}                   reads dL/dh, a, h; writes
              dL/dkv_t = G_t,  dL/da_t = G_t h_{t-1}            dL/dkv, dL/da (dL/dh0 = a_0 G_0)

Any L, no padding. Programs own (batch row, BLOCK_D channels, chunk of L). When B * D alone gives
too few programs to fill the GPU, L is cut into chunks: a first pass writes each chunk's gate
product and zero-start final state, a scan over chunks (the same kernel) gives the state entering
each chunk, and a second pass writes the states from it. That reads a and kv twice, so it is used
only where the GPU would otherwise idle. Accumulation is float32 for float32, bfloat16 and
float16 inputs, float64 for float64; outputs are stored in the input dtype. Triton has no complex
dtype; complex inputs are refused by the dtype check (use `chunked` or `assoc`).

Without a GPU the kernels run under the Triton interpreter when TRITON_INTERPRET=1 is set before
the import (the test suite does this): correct, slow, CPU tensors only.
"""
import os
from dataclasses import dataclass
from functools import cache

import torch

from ..backend import HALF_DTYPES, REAL_DTYPES, ScanBackend
from .interface import SCAN_DOC

BLOCK_T = 64  # steps per tile on a GPU
INTERPRETER_BLOCK_T = 16  # the interpreter's cost is per tile row: small tiles still cross tile edges at small L
MAX_BLOCK_D = 32  # 128 contiguous bytes of float32 per tile row
PROGRAMS_PER_SM = 4


INTERPRETER_NOTE = "on a CPU only under the Triton interpreter: TRITON_INTERPRET=1 before import; slow, for tests"


def interpreted():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _cdiv(n, m):
    return -(-n // m)


def _pow2_at_least(n):
    return 1 << max(0, n - 1).bit_length()


@cache
def _sm_count(device):
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


@dataclass(frozen=True)
class Plan:
    block_t: int
    block_d: int
    chunk_len: int  # a multiple of block_t

    def chunks(self, length):
        return _cdiv(length, self.chunk_len)


def plan(batch, length, channels, device, chunk_len=None, block_t=None):
    """Tile sizes and chunk length: chunks only when B * D/BLOCK_D programs leave SMs idle."""
    block_t = block_t or (BLOCK_T if device.type == "cuda" else INTERPRETER_BLOCK_T)
    block_d = min(MAX_BLOCK_D, _pow2_at_least(channels))
    if chunk_len is None:
        programs = batch * _cdiv(channels, block_d)
        wanted = PROGRAMS_PER_SM * _sm_count(device)
        chunks = 1 if programs >= wanted else min(_cdiv(wanted, programs), max(1, length // (4 * block_t)))
        chunk_len = _cdiv(length, chunks)
    return Plan(block_t, block_d, max(1, _cdiv(chunk_len, block_t)) * block_t)


def _kernels():
    from . import triton_kernels

    return triton_kernels


def _accumulator(dtype):
    """(torch dtype, triton dtype) the kernels accumulate in."""
    import triton.language as tl

    return (torch.float64, tl.float64) if dtype == torch.float64 else (torch.float32, tl.float32)


def _dense(t):
    return t if t.is_contiguous() else t.contiguous()


def _grid(batch, channels, chunks, p):
    return (_cdiv(channels, p.block_d), chunks, batch)


def states(a, x, enter, p):
    """Every state of h_t = a_t h_{t-1} + x_t from `enter` (B, D) or zero; a, x contiguous (B, L, D)."""
    batch, length, channels = a.shape
    acc, acc_tl = _accumulator(a.dtype)
    h = torch.empty_like(a)
    chunks = p.chunks(length)
    grid = _grid(batch, channels, chunks, p)
    launch = dict(ACC=acc_tl, BLOCK_T=p.block_t, BLOCK_D=p.block_d)
    kernel = _kernels().forward_kernel
    if chunks > 1:
        product, final = (a.new_empty(batch, chunks, channels, dtype=acc) for _ in range(2))
        kernel[grid](a, x, h, a, product, final, length, channels, p.chunk_len,
                     HAS_ENTER=False, SUMMARY=True, **launch)
        leaving = states(product, final, enter, plan(batch, chunks, channels, a.device, chunk_len=chunks))
        first = enter[:, None].to(acc) if enter is not None else leaving.new_zeros(batch, 1, channels)
        enter = torch.cat([first, leaving[:, :-1]], dim=1)  # (b chunks d): the state entering each chunk
    kernel[grid](a, x, h, enter if enter is not None else a, a, a, length, channels, p.chunk_len,
                 HAS_ENTER=enter is not None, SUMMARY=False, **launch)
    return h


def adjoint(a, h, h0, grad_h, grad_last, p):
    """(dL/da, dL/dkv, dL/dh0 or None) for upstream gradients grad_h (B, L, D) and grad_last (B, D)."""
    batch, length, channels = a.shape
    acc, acc_tl = _accumulator(a.dtype)
    grad_a, grad_kv = torch.empty_like(a), torch.empty_like(a)
    chunks = p.chunks(length)
    grid = _grid(batch, channels, chunks, p)
    launch = dict(HAS_H0=h0 is not None, ACC=acc_tl, BLOCK_T=p.block_t, BLOCK_D=p.block_d)
    kernel = _kernels().backward_kernel
    last = grad_last.to(acc) if grad_last is not None else a.new_zeros(batch, channels, dtype=acc)
    start = h0 if h0 is not None else a
    if chunks > 1:
        product, local = (a.new_empty(batch, chunks, channels, dtype=acc) for _ in range(2))
        kernel[grid](a, h, start, grad_h, a, a, a, product, local, length, channels, p.chunk_len,
                     SUMMARY=True, **launch)
        # entering chunk c from the right is G at the start of chunk c+1: a forward scan over reversed chunks
        leaving = states(product.flip(1).contiguous(), local.flip(1).contiguous(), last,
                         plan(batch, chunks, channels, a.device, chunk_len=chunks)).flip(1)
        enter = torch.cat([leaving[:, 1:], last[:, None]], dim=1).contiguous()  # (b chunks d)
    else:
        enter = last[:, None].contiguous()
    kernel[grid](a, h, start, grad_h, grad_a, grad_kv, enter, a, a, length, channels, p.chunk_len,
                 SUMMARY=False, **launch)
    grad_h0 = (a[:, 0].to(acc) * grad_kv[:, 0].to(acc)).to(a.dtype) if h0 is not None else None
    return grad_a, grad_kv, grad_h0


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, kv, h0, p):
        a, kv = _dense(a.detach()), _dense(kv.detach())
        h0 = _dense(h0.detach()) if h0 is not None else None
        h = states(a, kv, h0, p)
        ctx.save_for_backward(a, h, h0)
        ctx.plan = p
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None
        return h, h[:, -1].clone()  # a separate tensor: autograd outputs that view each other need care

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        a, h, h0 = ctx.saved_tensors
        grad_h = _dense(grad_h) if grad_h is not None else torch.zeros_like(a)
        grad_last = _dense(grad_last) if grad_last is not None else None
        grad_a, grad_kv, grad_h0 = adjoint(a, h, h0, grad_h, grad_last, ctx.plan)
        return grad_a, grad_kv, grad_h0, None


def triton_scan(a, kv, h0=None, chunk_len=None, block_t=None):
    """`scan` with the plan's chunk length and tile height forced (tests cross chunk and tile edges)."""
    p = plan(a.shape[0], a.shape[1], a.shape[2], a.device, chunk_len, block_t)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (a, kv, h0)):
        return _TritonScan.apply(a, kv, h0, p)
    h = states(_dense(a), _dense(kv), None if h0 is None else _dense(h0), p)
    return h, h[:, -1]


def scan(a, kv, h0=None):
    return triton_scan(a, kv, h0)


scan.__doc__ = SCAN_DOC


def _unavailable_reason():
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return f"triton is not installed ({error}); pip install -e '.[gpu]'"
    return None


def load():
    on = ("cpu",) if interpreted() else ("cuda",)
    return ScanBackend(name="triton", kind="scan", fn=scan, dtypes=REAL_DTYPES + HALF_DTYPES, devices=on,
                       unavailable_reason=_unavailable_reason(), device_note=INTERPRETER_NOTE,
                       description="scanlab's Triton kernel: tiled associative scan, chunked over L when B*D is "
                                   "small, fused backward; float32 accumulation for half inputs"
                                   + (" (Triton interpreter: TRITON_INTERPRET=1)" if interpreted() else ""))
