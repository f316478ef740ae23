"""A compiled sequential scan at the memory-bandwidth floor: one pass forward, one fused pass back.

    forward:  h_t = a_t * h_{t-1} + kv_t                          reads a, kv; writes h
    backward: G_t = dL/dh_t + conj(a_{t+1}) G_{t+1}                reads dL/dh, a, h; writes
              dL/dkv_t = G_t, dL/da_t = G_t conj(h_{t-1})          dL/dkv, dL/da (and dL/dh0)

The loops are numba kernels (native_kernels.py), threaded over blocks of (B, D) with torch's
intra-op thread count; no autograd graph over L. Reverse and packed scans run in the same
kernels, which take each sequence's offsets and the direction. Non-contiguous inputs are made contiguous
first (one copy). Where numba is missing the backend is listed unavailable, with the reason.
"""
import functools
import math

import numpy as np
import torch

from ..backend import ALL_DTYPES, ScanBackend
from ..layouts import REVERSE, VARLEN
from .interface import SCAN_DOC, needs_grad

CACHE_LINE = 64
BACKWARD_STEPS = 16  # time steps per block of a pass that walks backwards (native_kernels.backward)


def _kernels():
    from . import native_kernels

    return native_kernels


def _dense(t):
    if t.is_contiguous() and not (t.requires_grad or t.is_conj() or t.is_neg()):
        return t  # the common case, without three no-op calls (this backend is timed down to 30 us)
    return t.detach().resolve_conj().resolve_neg().contiguous()


@functools.lru_cache(maxsize=256)
def channel_block(batch, channels, threads, itemsize):
    """Channels per job: whole rows when the batch alone spreads evenly over the threads (rows are
    contiguous, so each job streams); else rows split into cache-line multiples so that the number
    of jobs is a multiple of the thread count."""
    parts = threads // math.gcd(batch, threads)
    line = max(1, CACHE_LINE // itemsize)
    block = -(-channels // parts)
    block = -(-block // line) * line
    return min(channels, max(block, line))


def use_torch_thread_count():
    """numba's thread count := torch's intra-op count (capped at numba's pool). numba's setting is
    thread-local, so it is checked on every call, but set only when it differs: setting it before
    every launch made alternating forward and backward kernels 20x slower (OpenMP team rebuilt)."""
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    return threads


def _launch_settings(a):
    return channel_block(a.shape[0], a.shape[2], use_torch_thread_count(), a.element_size())


@functools.cache
def _no_state(dtype):
    """The (1, 1) placeholder passed as h0 when there is none (the kernel never reads it)."""
    return torch.zeros(1, 1, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _whole_rows(length):
    """The offsets of dense rows: one sequence (0, L) in each."""
    return np.array([0, length], dtype=np.int64)


def _offsets(a, cu_seqlens):
    # a copy: a caller changing its offsets in place before the backward must not change the gradient
    return _whole_rows(a.shape[1]) if cu_seqlens is None else cu_seqlens.numpy().astype(np.int64)


def _forward(a, kv, h0, offsets, reverse):
    """(h, h_last, dense a) for a backward to keep."""
    a, kv = _dense(a), _dense(kv)
    start = _no_state(a.dtype) if h0 is None else _dense(h0)
    h = torch.empty_like(a)
    h_last = a.new_empty(a.shape[0] * (offsets.size - 1), a.shape[2])  # (rows d): B rows, or N sequences
    block = _launch_settings(a)
    _kernels().forward(a.numpy(), kv.numpy(), start.numpy(), h0 is not None, offsets, reverse, h.numpy(),
                       h_last.numpy(), block, BACKWARD_STEPS, _line(a), _sink(a, block).numpy())
    return h, h_last, a


def _line(a):
    return max(1, CACHE_LINE // a.element_size())


def _sink(a, block):
    return a.new_empty(a.shape[0] * -(-a.shape[2] // block))


class _NativeScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, kv, h0, offsets, reverse):
        h, h_last, a_dense = _forward(a, kv, h0, offsets, reverse)
        start = a_dense.new_zeros(h_last.shape) if h0 is None else _dense(h0)
        ctx.save_for_backward(a_dense, h, start)
        ctx.has_h0, ctx.offsets, ctx.reverse = h0 is not None, offsets, reverse
        ctx.set_materialize_grads(False)  # an unused h_last arrives as None: no (rows, D) zeros to add
        return h, h_last

    @staticmethod
    def backward(ctx, grad_h, grad_last):
        a, h, start = ctx.saved_tensors
        grads = [torch.empty_like(a), torch.empty_like(a), torch.empty_like(start)]  # a, kv, h0
        # h unused (only h_last): a zero upstream gradient costs one extra pass, on a rare path
        grad_h = _dense(grad_h) if grad_h is not None else torch.zeros_like(a)
        grad_last = _dense(grad_last) if grad_last is not None else torch.zeros_like(start)
        block = _launch_settings(a)
        _kernels().backward(grad_h.numpy(), grad_last.numpy(), a.numpy(), h.numpy(), start.numpy(), ctx.offsets,
                            ctx.reverse, *(g.numpy() for g in grads), block, BACKWARD_STEPS, _line(a),
                            _sink(a, block).numpy())
        return grads[0], grads[1], grads[2] if ctx.has_h0 else None, None, None


def scan(a, kv, h0=None, *, reverse=False, cu_seqlens=None):  # both layouts native: offsets and a direction
    if a.shape[1] == 1 and h0 is not None and cu_seqlens is None and _step_rounds_as_the_kernel(a.dtype):
        return decode_step(a, kv, h0)
    offsets = _offsets(a, cu_seqlens)
    if needs_grad(a, kv, h0):
        return _NativeScan.apply(a, kv, h0, offsets, reverse)
    return _forward(a, kv, h0, offsets, reverse)[:2]


scan.__doc__ = SCAN_DOC


def decode_step(a, kv, h0):
    """One step from a state, h = a * h0 + kv (a, kv (B, 1, D), h0 (B, D)): decoding, where a call
    is too small to share between threads. One torch op, addcmul, which rounds a * h0 + kv once, as
    the kernel's fma does: the kernel's bits at every thread count (tests/test_native.py), where
    `_step_rounds_as_the_kernel` found that this torch build's addcmul fuses (scan() checks before it
    calls this); autograd differentiates it. Under torch.set_flush_denormal(True) a subnormal result
    can differ from the kernel's (addcmul kept subnormals the kernel flushed). The kernel call cost 12-14 us here at B = 1, D = 64 (numpy
    views, allocations, numba's dispatch, a parallel launch at 2 threads)."""
    if a.shape[0] == 1:  # h0 (1, d) broadcasts as (1, 1, d) itself: no view to make (0.8 us of a 3 us step)
        h = torch.addcmul(kv, a, h0)  # (1 1 d)
        return h, h[0]
    h = torch.addcmul(kv, a, h0.unsqueeze(1))  # (b 1 d)
    return h, h.squeeze(1)  # a view, as h[:, 0], for 0.9 us where indexing took 1.2


@functools.cache
def _step_rounds_as_the_kernel(dtype):
    """Whether torch.addcmul gives the kernel's bits in this dtype, once per process. A build or CPU
    whose addcmul multiplies and adds in two roundings (torch's default-capability kernels, compiled
    without FMA) would differ in about 1 element in 4; then decode steps take the kernel. Probed on
    contiguous and strided steps, over a vector body and its tail. Complex dtypes always take the
    kernel: a complex product is not one fma."""
    if dtype.is_complex:
        return False
    gen = torch.Generator().manual_seed(0)
    a, kv, h0 = (torch.randn(3, 2, 1031, generator=gen, dtype=torch.float64).to(dtype) for _ in range(3))
    for rows in (slice(None), slice(0, 1)):  # B = 3, and B = 1's own path
        for step in (lambda t: t[rows, :1], lambda t: t[rows, :1].contiguous()):
            fused = decode_step(step(a), step(kv), h0[rows, 0])[0]
            kernel = _forward(step(a), step(kv), h0[rows, 0], _whole_rows(1), False)[0]
            if not torch.equal(fused, kernel):
                return False
    return True


def _unavailable_reason():
    try:
        import numba  # noqa: F401
    except ImportError as error:
        return f"numba is not installed ({error}); pip install 'numba>=0.60'"
    return None


def load():
    return ScanBackend(name="native", kind="scan", fn=scan, dtypes=ALL_DTYPES, devices=("cpu",),
                       unavailable_reason=_unavailable_reason(),
                       description="compiled sequential pass (numba), fused backward, threaded over (B, D) blocks",
                       native_layouts=(REVERSE, VARLEN))
