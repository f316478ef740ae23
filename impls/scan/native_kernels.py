"""The compiled loops behind the `native` backend (numba). Imported only where numba is installed.

Layout (B, L, D), C-contiguous. Each job is one batch row b and one block of channels
[d0, d0 + width): it walks L once, keeping the block's state in a small buffer that stays in L1,
so every element of a, kv and h is touched exactly once and the loop over channels vectorises
(contiguous loads, no dependency between channels). Jobs run on numba's threads (prange).

No fastmath: it would let LLVM assume no NaN or inf, and a NaN at step t must stay at t and after.
"""
import numpy as np
from numba import njit, prange


@njit(inline="always")
def _job_span(job, block, channels):
    """(batch row, first channel, width) of job number `job`, with ceil(channels / block) jobs a row."""
    blocks = (channels + block - 1) // block
    d0 = (job % blocks) * block
    return job // blocks, d0, min(block, channels - d0)


@njit(parallel=True, nogil=True, cache=True)
def forward(a, kv, h0, has_h0, h, block):  # (B, L, D) x2, (B, D), out (B, L, D)
    """h_t = a_t * h_{t-1} + kv_t, h_{-1} = h0 (zero when not has_h0; h0 is then never read)."""
    batch, length, channels = a.shape
    for job in prange(batch * ((channels + block - 1) // block)):
        b, d0, width = _job_span(job, block, channels)
        state = h0[b, d0:d0 + width].copy() if has_h0 else np.zeros(width, a.dtype)
        for t in range(length):
            a_t, kv_t, h_t = a[b, t, d0:d0 + width], kv[b, t, d0:d0 + width], h[b, t, d0:d0 + width]
            for d in range(width):
                s = a_t[d] * state[d] + kv_t[d]
                state[d] = s
                h_t[d] = s


@njit(parallel=True, nogil=True, cache=True)
def backward(grad_h, grad_last, a, h, h0, grad_a, grad_kv, grad_h0, block, steps, line, sink):
    """One reverse pass of the adjoint recurrence (interface._AdjointScan):

        G_t = dL/dh_t + conj(a_{t+1}) G_{t+1},  G_{L-1} = dL/dh_{L-1} + dL/dh_last
        dL/dkv_t = G_t,  dL/da_t = G_t conj(h_{t-1}),  dL/dh0 = conj(a_0) G_0

    reading grad_h, a and h once and writing grad_a and grad_kv once. Walking memory backwards ran
    2x slower here than forwards (the hardware prefetchers follow ascending streams), and faulting
    fresh output pages in backwards, from two threads at once, cost up to 30x on this machine. So L
    is taken in blocks of `steps`, last block first: each block is first touched in ascending order,
    one element per cache line of `line` elements (inputs read, outputs written), and then computed
    backwards from cache. `sink` receives the values read so that the compiler keeps the reads.
    """
    batch, length, channels = a.shape
    for job in prange(batch * ((channels + block - 1) // block)):
        b, d0, width = _job_span(job, block, channels)
        carry = grad_last[b, d0:d0 + width].copy()  # conj(a_{t+1}) G_{t+1}; at t = L-1, dL/dh_last
        touched = carry[0] * 0
        end = length
        while end > 0:
            start = max(0, end - steps)
            for t in range(start, end):
                for d in range(d0, d0 + width, line):
                    touched += grad_h[b, t, d] + a[b, t, d] + h[b, t, d]
                    grad_a[b, t, d] = 0  # written, not read: a fresh page is faulted in once, not twice
                    grad_kv[b, t, d] = 0
            for t in range(end - 1, start - 1, -1):
                g_t, a_t = grad_h[b, t, d0:d0 + width], a[b, t, d0:d0 + width]
                h_prev = h[b, t - 1, d0:d0 + width] if t > 0 else h0[b, d0:d0 + width]
                ga_t, gkv_t = grad_a[b, t, d0:d0 + width], grad_kv[b, t, d0:d0 + width]
                for d in range(width):
                    G = g_t[d] + carry[d]
                    gkv_t[d] = G
                    ga_t[d] = G * np.conj(h_prev[d])
                    carry[d] = np.conj(a_t[d]) * G
            end = start
        grad_h0[b, d0:d0 + width] = carry
        sink[job] = touched
