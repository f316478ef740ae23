"""The compiled loops behind the `native` backend (numba). Imported only where numba is installed.

Layout (B, L, D), C-contiguous. Each job is one batch row b and one block of channels
[d0, d0 + width): it walks L once, keeping the block's state in a small buffer that stays in L1,
so every element of a, kv and h is touched exactly once and the loop over channels vectorises
(contiguous loads, no dependency between channels). Jobs run on numba's threads (prange).

Each real step is one fused multiply-add, `mul_add`: a_t * h + kv_t rounded once (LLVM's fma, an
instruction on CPUs that have one, a correctly rounded call on those without), so its bits are fixed
by IEEE 754 and not by what the compiler chooses to contract. That is what lets a decode step use
torch.addcmul, which this torch build also rounds once (native.py checks it before trusting it), and
give the kernel's bits. Complex steps multiply and add (a complex product is not one fma).
No fastmath: it would let LLVM assume no NaN or inf, and a NaN at step t must stay at t and after.
"""
import numpy as np
from numba import njit, prange, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload


@intrinsic
def _fma(typingctx, x, y, z):
    if not (isinstance(x, types.Float) and x == y == z):
        return None
    return x(x, y, z), lambda context, builder, signature, args: builder.fma(*args)


def mul_add(x, y, z):
    """x * y + z, rounded once for real floats (compiled code only: see the overload)."""
    return x * y + z


@overload(mul_add, inline="always")
def _mul_add(x, y, z):
    if isinstance(x, types.Float) and x == y == z:
        return lambda x, y, z: _fma(x, y, z)
    if all(isinstance(t, types.Complex) for t in (x, y, z)):
        return lambda x, y, z: x * y + z
    raise TypingError(f"mul_add takes three floats or three complex numbers of one type, got {x}, {y}, {z}")


@njit(inline="always")
def _job_span(job, block, channels):
    """(batch row, first channel, width) of job number `job`, with ceil(channels / block) jobs a row."""
    blocks = (channels + block - 1) // block
    d0 = (job % blocks) * block
    return job // blocks, d0, min(block, channels - d0)


@njit(inline="always")
def _step(a, kv, h, b, t, d0, width, state):
    """state = a_t * state + kv_t over one job's channels, written to h_t."""
    a_t, kv_t, h_t = a[b, t, d0:d0 + width], kv[b, t, d0:d0 + width], h[b, t, d0:d0 + width]
    for d in range(width):
        s = mul_add(a_t[d], state[d], kv_t[d])
        state[d] = s
        h_t[d] = s


@njit(inline="always")
def _adjoint_step(grad_h, a, grad_a, grad_kv, b, t, d0, width, h_other, a_other, carry, opening):
    """G = conj(a_other) * carry + dL/dh_t, one fma (a_other, carry: the gate and G of the step the
    adjoint visited before, which the scan visits after t), or carry + dL/dh_t at the step the adjoint
    opens with (carry: dL/dh_last; no product with a gate of 1, which a complex inf would turn into
    NaN); dL/dkv_t = G, dL/da_t = G conj(h_other) (the state a_t multiplied); then carry = G. One loop
    a step, as the kernel had before the fma: a second loop and a gate buffer made its backward 1.35x
    slower in CI's `ab`."""
    g_t = grad_h[b, t, d0:d0 + width]
    ga_t, gkv_t = grad_a[b, t, d0:d0 + width], grad_kv[b, t, d0:d0 + width]
    if opening:
        for d in range(width):
            G = g_t[d] + carry[d]
            gkv_t[d] = G
            ga_t[d] = G * np.conj(h_other[d])
            carry[d] = G
    else:
        for d in range(width):
            G = mul_add(np.conj(a_other[d]), carry[d], g_t[d])
            gkv_t[d] = G
            ga_t[d] = G * np.conj(h_other[d])
            carry[d] = G


@njit(inline="always")
def _touch_ascending(reads, writes, b, start, end, d0, width, line):
    """Read `reads` and zero `writes` (written, not read: a fresh page is faulted in once, not twice)
    over steps [start, end), one element per cache line, in ascending order (backward's docstring: why)."""
    touched = reads[0][b, start, d0] * 0
    for t in range(start, end):
        for d in range(d0, d0 + width, line):
            for x in reads:
                touched += x[b, t, d]
            for y in writes:
                y[b, t, d] = 0
    return touched


@njit(parallel=True, nogil=True, cache=True)
def forward(a, kv, h0, has_h0, offsets, reverse, h, h_last, block, steps, line, sink):
    """h_t = a_t h_{t-1} + kv_t (reverse: h_t = a_t h_{t+1} + kv_t) over each sequence
    [offsets[i], offsets[i+1]) of each row, from h0[b + i] (zero when not has_h0, h0 then never
    read); h_last[b + i] is its state after its last step (its start, for an empty one). Dense rows
    have offsets (0, L), so b + i is the row; packed sequences (B = 1) have N, so b + i is the
    sequence. A forward pass walks memory forwards; a reverse one walks it backwards in blocks of
    `steps`, each first touched ascending, as `backward` does and for the same reason."""
    batch, length, channels = a.shape
    for job in prange(batch * ((channels + block - 1) // block)):
        b, d0, width = _job_span(job, block, channels)
        touched = np.zeros(1, a.dtype)[0]  # not a[0, 0, 0]: L may be 0
        for i in range(offsets.shape[0] - 1):
            first, end = offsets[i], offsets[i + 1]
            state = h0[b + i, d0:d0 + width].copy() if has_h0 else np.zeros(width, a.dtype)
            if not reverse:
                for t in range(first, end):
                    _step(a, kv, h, b, t, d0, width, state)
            stop = end
            while reverse and stop > first:
                start = max(first, stop - steps)
                touched += _touch_ascending((a, kv), (h,), b, start, stop, d0, width, line)
                for t in range(stop - 1, start - 1, -1):
                    _step(a, kv, h, b, t, d0, width, state)
                stop = start
            h_last[b + i, d0:d0 + width] = state
        sink[job] = touched


@njit(parallel=True, nogil=True, cache=True)
def backward(grad_h, grad_last, a, h, h0, offsets, reverse, grad_a, grad_kv, grad_h0, block, steps, line, sink):
    """The adjoint recurrence of `forward`, sequence by sequence (h0: the starts, zeros where none
    was given), reading grad_h, a and h once and writing grad_a and grad_kv once:

        forward:  G_t = conj(a_{t+1}) G_{t+1} + dL/dh_t (one fma),  G_{end-1} = dL/dh_{end-1} + dL/dh_last,
                  dL/da_t = G_t conj(h_{t-1}) (h_{first-1} = h0),  dL/dh0 = conj(a_first) G_first
        reverse:  G_t = conj(a_{t-1}) G_{t-1} + dL/dh_t,  G_first = dL/dh_first + dL/dh_last,
                  dL/da_t = G_t conj(h_{t+1}) (h_end = h0),  dL/dh0 = conj(a_{end-1}) G_{end-1}
        dL/dkv_t = G_t;  an empty sequence passes dL/dh_last to dL/dh0

    (interface._AdjointScan). A forward scan's adjoint walks memory backwards, which ran 2x slower
    here than forwards (the hardware prefetchers follow ascending streams), and faulting fresh output
    pages in backwards, from two threads at once, cost up to 30x on this machine. So each sequence is
    taken in blocks of `steps`, last block first: each block is first touched in ascending order, one
    element per cache line of `line` elements (inputs read, outputs written), then computed backwards
    from cache. `sink` receives the values read so that the compiler keeps the reads."""
    batch, length, channels = a.shape
    for job in prange(batch * ((channels + block - 1) // block)):
        b, d0, width = _job_span(job, block, channels)
        touched = np.zeros(1, a.dtype)[0]  # not a[0, 0, 0]: L may be 0
        carry = np.empty(width, a.dtype)
        for i in range(offsets.shape[0] - 1):
            first, end = offsets[i], offsets[i + 1]
            carry[:] = grad_last[b + i, d0:d0 + width]
            for t in range(first, end if reverse else first):
                h_next = h[b, t + 1, d0:d0 + width] if t < end - 1 else h0[b + i, d0:d0 + width]
                a_before = a[b, max(t - 1, first), d0:d0 + width]  # read only after the opening step
                _adjoint_step(grad_h, a, grad_a, grad_kv, b, t, d0, width, h_next, a_before, carry, t == first)
            stop = end
            while not reverse and stop > first:
                start = max(first, stop - steps)
                touched += _touch_ascending((grad_h, a, h), (grad_a, grad_kv), b, start, stop, d0, width, line)
                for t in range(stop - 1, start - 1, -1):
                    h_prev = h[b, t - 1, d0:d0 + width] if t > first else h0[b + i, d0:d0 + width]
                    a_after = a[b, min(t + 1, end - 1), d0:d0 + width]  # read only after the opening step
                    _adjoint_step(grad_h, a, grad_a, grad_kv, b, t, d0, width, h_prev, a_after, carry, t == end - 1)
                stop = start
            # conj(a) G at the scan's first step, where h0 entered; an empty sequence hands dL/dh_last on
            into = grad_h0[b + i, d0:d0 + width]
            if end > first:
                entered = a[b, end - 1 if reverse else first, d0:d0 + width]
                for d in range(width):
                    into[d] = np.conj(entered[d]) * carry[d]
            else:
                into[:] = carry
        sink[job] = touched
