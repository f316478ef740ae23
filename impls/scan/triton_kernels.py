"""The Triton kernels behind the `triton` backend (triton.py plans and launches them).

A program owns one batch row, BLOCK_D channels and one chunk of the sequence, and walks its chunk
in tiles of BLOCK_T steps. Inside a tile the recurrence is `tl.associative_scan` over the pairs
(gate, input) under (a, x) . (a', x') = (a a', a' x + x'), which gives every step's state from a
zero start and the tile's gate product; the state entering the tile is then added times that
product, and the tile's last state enters the next tile. Positions past the chunk's end load the
identity (gate 1, input 0), so the last row of a tile is always the state at its last real step.

A tile's rows are steps in the order the recurrence walks them: t ascending for a forward scan,
descending for a reverse one (and the other way round for each one's adjoint), so one tile scan
serves both directions. VARLEN programs own one packed sequence [CU[n], CU[n+1]) of the one row
instead of a chunk: the sequence's ends are where the recurrence starts and stops, its h0 and its
final-state gradient come from row n of (N, D) buffers, and an empty one walks no tile.

SUMMARY programs write no states, only each chunk's gate product and its final state from a zero
start (B, chunks, D): the carry across chunks is then itself a scan over chunks.
"""
import triton
import triton.language as tl


@triton.jit
def _combine(gate_left, state_left, gate_right, state_right):
    return gate_right * gate_left, gate_right * state_left + state_right


@triton.jit
def _last_row(tile, rows, BLOCK_T: tl.constexpr):
    return tl.sum(tl.where(rows[:, None] == BLOCK_T - 1, tile, 0.0), axis=0)


@triton.jit
def _program_span(CU, length, channels, chunk_len, BLOCK_D: tl.constexpr, VARLEN: tl.constexpr):
    """This program's channels (and which exist); its chunk [start, stop); the sequence [first, end)
    the chunk lies in, past whose ends no gate or state is read; the offset of its batch row in
    (B, L, D) tensors; the offset of its row in the (B, chunks, D) or (N, D) buffers; its state row
    (batch row or sequence) in h0."""
    if VARLEN:  # sequences on the grid's first axis, the only one not capped at 65535 programs
        row, chunk, d_block = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    else:
        d_block, chunk, row = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    if VARLEN:
        first = tl.load(CU + row)
        end = tl.load(CU + row + 1)
        start, stop = first, end
        base = 0  # one packed row
        per_chunk = row.to(tl.int64) * channels + d
    else:
        first = 0
        end = length
        start = chunk * chunk_len
        stop = tl.minimum(start + chunk_len, length)
        base = row.to(tl.int64) * length * channels
        per_chunk = (row.to(tl.int64) * tl.num_programs(1) + chunk) * channels + d
    return d, d < channels, start, stop, first, end, base, per_chunk, row


@triton.jit
def _steps(tile, start, stop, rows, BLOCK_T: tl.constexpr, DESCENDING: tl.constexpr):
    """The time steps of a tile's rows, in walk order, and which lie in [start, stop)."""
    if DESCENDING:
        t = stop - 1 - tile * BLOCK_T - rows
    else:
        t = start + tile * BLOCK_T + rows
    return t, (t >= start) & (t < stop)


@triton.jit
def forward_kernel(A, X, H, ENTER, GATE_OUT, STATE_OUT, CU, length, channels, chunk_len,
                   HAS_ENTER: tl.constexpr, SUMMARY: tl.constexpr, REVERSE: tl.constexpr, VARLEN: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """h_t = a_t h_{t-1} + x_t (REVERSE: h_t = a_t h_{t+1} + x_t) over one chunk, from ENTER's row
    (zero without it)."""
    d, d_ok, start, stop, first, end, base, per_chunk, row = _program_span(CU, length, channels, chunk_len,
                                                                          BLOCK_D, VARLEN)
    rows = tl.arange(0, BLOCK_T)
    state = tl.zeros((BLOCK_D,), ACC)
    if HAS_ENTER:
        state = tl.load(ENTER + per_chunk, mask=d_ok, other=0.0).to(ACC)
    product = tl.full((BLOCK_D,), 1.0, ACC)
    for tile in range(0, tl.cdiv(stop - start, BLOCK_T)):
        t, t_ok = _steps(tile, start, stop, rows, BLOCK_T, REVERSE)
        ok = t_ok[:, None] & d_ok[None, :]
        at = base + t[:, None].to(tl.int64) * channels + d[None, :]
        a = tl.load(A + at, mask=ok, other=1.0).to(ACC)
        x = tl.load(X + at, mask=ok, other=0.0).to(ACC)
        gates, h = tl.associative_scan((a, x), 0, _combine)
        h = h + gates * state[None, :]
        if SUMMARY:
            product = product * _last_row(gates, rows, BLOCK_T)
        else:
            tl.store(H + at, h.to(H.dtype.element_ty), mask=ok)
        state = _last_row(h, rows, BLOCK_T)
    if SUMMARY:
        tl.store(GATE_OUT + per_chunk, product, mask=d_ok)
        tl.store(STATE_OUT + per_chunk, state, mask=d_ok)


@triton.jit
def backward_kernel(A, H, H0, DH, DA, DKV, ENTER, GATE_OUT, STATE_OUT, CU, length, channels, chunk_len,
                    HAS_H0: tl.constexpr, SUMMARY: tl.constexpr, REVERSE: tl.constexpr, VARLEN: tl.constexpr,
                    ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """The adjoint over one chunk, walked against the scan's direction. With n(t) the step after t in
    the scan's walk (t+1; t-1 when REVERSE) and p(t) the one before it:

        G_t = g_t G_{n(t)} + dL/dh_t,  g_t = a_{n(t)} (1 past the sequence's end),  G past the chunk's
        end from ENTER's row (zero in SUMMARY programs)
        dL/dkv_t = G_t,  dL/da_t = G_t h_{p(t)}  (h0's row, or zero, before the sequence's start)
    """
    d, d_ok, start, stop, first, end, base, per_chunk, row = _program_span(CU, length, channels, chunk_len,
                                                                          BLOCK_D, VARLEN)
    rows = tl.arange(0, BLOCK_T)
    state = tl.zeros((BLOCK_D,), ACC)
    if not SUMMARY:
        state = tl.load(ENTER + per_chunk, mask=d_ok, other=0.0).to(ACC)
    product = tl.full((BLOCK_D,), 1.0, ACC)
    if REVERSE:
        step = -1
    else:
        step = 1
    if HAS_H0:
        h0 = tl.load(H0 + row.to(tl.int64) * channels + d, mask=d_ok, other=0.0).to(ACC)
    for tile in range(0, tl.cdiv(stop - start, BLOCK_T)):
        if REVERSE:
            t, t_ok = _steps(tile, start, stop, rows, BLOCK_T, False)
        else:
            t, t_ok = _steps(tile, start, stop, rows, BLOCK_T, True)
        ok = t_ok[:, None] & d_ok[None, :]
        at = base + t[:, None].to(tl.int64) * channels + d[None, :]
        after, before = t + step, t - step
        g = tl.load(A + at + step * channels, mask=ok & ((after >= first) & (after < end))[:, None],
                    other=1.0).to(ACC)
        dh = tl.load(DH + at, mask=ok, other=0.0).to(ACC)
        gates, G = tl.associative_scan((g, dh), 0, _combine)
        G = G + gates * state[None, :]
        if SUMMARY:
            product = product * _last_row(gates, rows, BLOCK_T)
        else:
            tl.store(DKV + at, G.to(DKV.dtype.element_ty), mask=ok)
            inside = (before >= first) & (before < end)
            h_prev = tl.load(H + at - step * channels, mask=ok & inside[:, None], other=0.0).to(ACC)
            if HAS_H0:
                h_prev = tl.where(inside[:, None], h_prev, h0[None, :])
            tl.store(DA + at, (G * h_prev).to(DA.dtype.element_ty), mask=ok)
        state = _last_row(G, rows, BLOCK_T)
    if SUMMARY:
        tl.store(GATE_OUT + per_chunk, product, mask=d_ok)
        tl.store(STATE_OUT + per_chunk, state, mask=d_ok)
