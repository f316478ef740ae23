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

Reverse and packed scans run in the same kernels (both layouts native): a reverse scan's tiles walk
t downwards, and its chunks are carried right to left; a packed row runs one program per sequence
and channel block, from h0's row n to h_last's row n, without the chunked second pass (N sequences
are the parallelism, as in fla's fused_recurrent kernels). A pack whose longest sequence is longer
than two of the dense plan's chunks takes the exact adapter around the dense kernels instead
(`packs_in_kernels`).

Without a GPU the kernels run under the Triton interpreter when TRITON_INTERPRET=1 is set before
the import (the test suite does this): correct, slow, CPU tensors only.
"""
import os
from dataclasses import dataclass
from functools import cache

import torch

from ..backend import HALF_DTYPES, REAL_DTYPES, ScanBackend
from .. import layouts
from ..layouts import REVERSE, VARLEN
from .interface import SCAN_DOC, needs_grad

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


def _layout(a, p, cu):
    """(chunks, grid, launch flags): packed rows take one program per (sequence, channel block), over
    the whole sequence, as fla's fused_recurrent kernels do; the chunked second pass is for dense rows."""
    batch, length, channels = a.shape
    if cu is not None:
        return 1, (cu.numel() - 1, 1, _cdiv(channels, p.block_d)), dict(VARLEN=True)
    chunks = p.chunks(length)
    return chunks, _grid(batch, channels, chunks, p), dict(VARLEN=False)


def states(a, x, enter, p, reverse=False, cu=None):
    """Every state of h_t = a_t h_{t-1} + x_t (reverse: a_t h_{t+1} + x_t) from `enter` (B, D), or
    (N, D) with the packed offsets `cu` (int64, on a's device), or zero; a, x contiguous (B, L, D)."""
    batch, length, channels = a.shape
    acc, acc_tl = _accumulator(a.dtype)
    h = torch.empty_like(a)
    chunks, grid, flags = _layout(a, p, cu)
    launch = dict(ACC=acc_tl, BLOCK_T=p.block_t, BLOCK_D=p.block_d, REVERSE=reverse, **flags)
    offsets = cu if cu is not None else a  # read only by VARLEN programs
    kernel = _kernels().forward_kernel
    if chunks > 1:
        product, final = (a.new_empty(batch, chunks, channels, dtype=acc) for _ in range(2))
        kernel[grid](a, x, h, a, product, final, offsets, length, channels, p.chunk_len,
                     HAS_ENTER=False, SUMMARY=True, **launch)
        # the same recurrence over chunks gives the state leaving each; a chunk is entered from the
        # one before it in the walk (the one after it in t when reverse)
        leaving = states(product, final, enter, plan(batch, chunks, channels, a.device, chunk_len=chunks), reverse)
        outside = enter[:, None].to(acc) if enter is not None else leaving.new_zeros(batch, 1, channels)
        pieces = [leaving[:, 1:], outside] if reverse else [outside, leaving[:, :-1]]
        enter = torch.cat(pieces, dim=1)  # (b chunks d): the state entering each chunk
    kernel[grid](a, x, h, enter if enter is not None else a, a, a, offsets, length, channels, p.chunk_len,
                 HAS_ENTER=enter is not None, SUMMARY=False, **launch)
    return h


def final_states(h, start, reverse, cu):
    """h_last: the state after each row's (or packed sequence's) last step in the walk; an empty
    sequence's is its `start` (h0's row, or zero)."""
    if cu is None:
        return h[:, 0] if reverse else h[:, -1]
    first, end = cu[:-1], cu[1:]
    at = first if reverse else (end - 1).clamp_min(0)
    return torch.where((end == first)[:, None], start, h[0, at.clamp_max(h.shape[1] - 1)])  # (n d)


def adjoint(a, h, h0, grad_h, grad_last, p, reverse=False, cu=None):
    """(dL/da, dL/dkv, dL/dh0 or None) for upstream gradients grad_h (B, L, D) and grad_last (B, D),
    or (N, D) with the packed offsets `cu`."""
    batch, length, channels = a.shape
    acc, acc_tl = _accumulator(a.dtype)
    grad_a, grad_kv = torch.empty_like(a), torch.empty_like(a)
    chunks, grid, flags = _layout(a, p, cu)
    launch = dict(HAS_H0=h0 is not None, ACC=acc_tl, BLOCK_T=p.block_t, BLOCK_D=p.block_d, REVERSE=reverse, **flags)
    offsets = cu if cu is not None else a
    kernel = _kernels().backward_kernel
    rows = batch if cu is None else cu.numel() - 1
    last = grad_last.to(acc) if grad_last is not None else a.new_zeros(rows, channels, dtype=acc)
    start = h0 if h0 is not None else a
    if chunks > 1:
        product, local = (a.new_empty(batch, chunks, channels, dtype=acc) for _ in range(2))
        kernel[grid](a, h, start, grad_h, a, a, a, product, local, offsets, length, channels, p.chunk_len,
                     SUMMARY=True, **launch)
        # the adjoint walks against the scan: over chunks it is a scan in the other direction, and
        # a chunk is entered from the one after it in the scan's walk
        leaving = states(product, local, last, plan(batch, chunks, channels, a.device, chunk_len=chunks), not reverse)
        pieces = [last[:, None], leaving[:, :-1]] if reverse else [leaving[:, 1:], last[:, None]]
        enter = torch.cat(pieces, dim=1).contiguous()  # (b chunks d)
    else:
        enter = last.contiguous()  # (rows d): one chunk per row
    kernel[grid](a, h, start, grad_h, grad_a, grad_kv, enter, a, a, offsets, length, channels, p.chunk_len,
                 SUMMARY=False, **launch)
    if h0 is None:
        return grad_a, grad_kv, None
    # h0 enters at the scan's first step s: dL/dh0 = a_s G_s; an empty sequence hands h0 straight to h_last
    if cu is None:
        s = length - 1 if reverse else 0
        return grad_a, grad_kv, (a[:, s].to(acc) * grad_kv[:, s].to(acc)).to(a.dtype)
    first, end = cu[:-1], cu[1:]
    s = ((end - 1) if reverse else first).clamp(0, length - 1)
    into = a[0, s].to(acc) * grad_kv[0, s].to(acc)  # (n d)
    return grad_a, grad_kv, torch.where((end == first)[:, None], last, into).to(a.dtype)


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, kv, h0, p, reverse, cu):
        a, kv = _dense(a.detach()), _dense(kv.detach())
        h0 = _dense(h0.detach()) if h0 is not None else None
        h = states(a, kv, h0, p, reverse, cu)
        ctx.save_for_backward(a, h, h0)
        ctx.plan, ctx.reverse, ctx.cu = p, reverse, cu
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None
        # a separate tensor: autograd outputs that view each other need care
        return h, final_states(h, _start(h0, h, cu), reverse, cu).clone()

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        a, h, h0 = ctx.saved_tensors
        grad_h = _dense(grad_h) if grad_h is not None else torch.zeros_like(a)
        grad_last = _dense(grad_last) if grad_last is not None else None
        grad_a, grad_kv, grad_h0 = adjoint(a, h, h0, grad_h, grad_last, ctx.plan, ctx.reverse, ctx.cu)
        return grad_a, grad_kv, grad_h0, None, None, None


def _start(h0, h, cu):
    """What an empty packed sequence ends in: its h0 row, or zero (dense rows never read it)."""
    if h0 is not None or cu is None:
        return h0
    return h.new_zeros(cu.numel() - 1, h.shape[2])


def triton_scan(a, kv, h0=None, chunk_len=None, block_t=None, reverse=False, cu_seqlens=None):
    """`scan` with the plan's chunk length and tile height forced (tests cross chunk and tile edges)."""
    p = plan(a.shape[0], a.shape[1], a.shape[2], a.device, chunk_len, block_t)
    # a copy in int64: a caller changing its offsets in place before the backward must not change the gradient
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int64, copy=True)
    if needs_grad(a, kv, h0):
        return _TritonScan.apply(a, kv, h0, p, reverse, cu)
    h0 = None if h0 is None else _dense(h0)
    h = states(_dense(a), _dense(kv), h0, p, reverse, cu)
    return h, final_states(h, _start(h0, h, cu), reverse, cu)


def scan(a, kv, h0=None, *, reverse=False, cu_seqlens=None):
    if cu_seqlens is not None and not packs_in_kernels(cu_seqlens, a.shape[1], a.shape[2], a.device):
        if needs_grad(a, kv, h0):
            return _PackedThroughDense.apply(a, kv, h0, reverse, cu_seqlens)
        return _through_dense(reverse, cu_seqlens)(a, kv, h0)
    return triton_scan(a, kv, h0, reverse=reverse, cu_seqlens=cu_seqlens)


def _dense_scan(a, kv, h0, reverse=False):
    return triton_scan(a, kv, h0, reverse=reverse)


def _through_dense(reverse, cu_seqlens):
    """The exact adapters of impls/layouts.py (zero gates, h0 folded in) around the dense kernels."""
    return layouts.layout_call(_dense_scan, (REVERSE,), reverse, cu_seqlens)


class _PackedThroughDense(torch.autograd.Function):
    """A pack through the dense kernels: forward, and backward by the same adapter (its forward run
    again under autograd), except when the upstream gradient holds a NaN or inf. A zero gate times a
    NaN gradient is NaN, which would reach the sequence before; then the kernels' own per-sequence
    adjoint runs instead, which no value crosses."""

    @staticmethod
    def forward(ctx, a, kv, h0, reverse, cu_seqlens):
        h, h_last = _through_dense(reverse, cu_seqlens)(a, kv, h0)
        ctx.save_for_backward(a, kv, h0, h)
        ctx.reverse, ctx.cu_seqlens = reverse, cu_seqlens
        ctx.set_materialize_grads(False)
        return h, h_last

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        a, kv, h0, h = ctx.saved_tensors
        rows = ctx.cu_seqlens.numel() - 1
        grad_h = _dense(grad_h) if grad_h is not None else torch.zeros_like(a)
        grad_last = _dense(grad_last) if grad_last is not None else a.new_zeros(rows, a.shape[2])
        if bool(torch.isfinite(grad_h).all()) and bool(torch.isfinite(grad_last).all()):
            leaves = [t.detach().requires_grad_() for t in (a, kv, h0) if t is not None]
            with torch.enable_grad():
                out = _through_dense(ctx.reverse, ctx.cu_seqlens)(*leaves, *([] if h0 is not None else [None]))
            grads = list(torch.autograd.grad(out, leaves, (grad_h, grad_last)))
            return grads[0], grads[1], grads[2] if h0 is not None else None, None, None
        p = plan(1, a.shape[1], a.shape[2], a.device)
        cu = ctx.cu_seqlens.to(torch.int64)
        start = _dense(h0.detach()) if h0 is not None else None
        grad_a, grad_kv, grad_h0 = adjoint(_dense(a.detach()), h, start, grad_h, grad_last, p, ctx.reverse, cu)
        return grad_a, grad_kv, grad_h0, None, None


def packs_in_kernels(cu_seqlens, length, channels, device):
    """Whether packed sequences run in the kernels' own programs, one per (sequence, channel block),
    each walking its whole sequence: only when the longest sequence is at most two chunks of the
    dense plan for the same (1, L, D) row. Else a long sequence would be a serial walk where the
    dense plan cuts the row into chunks across the GPU (the varlen family's rows hold half of L in one
    sequence), and the exact zero-gate adapter around the dense kernels is the faster path. A
    planning guess from the two paths' critical lengths, not yet timed on a GPU. Reading the longest
    sequence is one device sync a call (the argument checks already read the offsets on the host)."""
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if cu_seqlens.numel() > 1 else 0
    return longest <= 2 * plan(1, length, channels, device).chunk_len


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
                                   + (" (Triton interpreter: TRITON_INTERPRET=1)" if interpreted() else ""),
                       native_layouts=(REVERSE, VARLEN), packs_natively=packs_in_kernels)
