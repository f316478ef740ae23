"""The Triton kernels behind the `triton` backend (triton.py plans and launches them).

A program owns one batch row, BLOCK_D channels and one chunk of the sequence, and walks its chunk
in tiles of BLOCK_T steps. Inside a tile the recurrence is `tl.associative_scan` over the pairs
(gate, input) under (a, x) . (a', x') = (a a', a' x + x'), which gives every step's state from a
zero start and the tile's gate product; the state entering the tile is then added times that
product, and the tile's last state enters the next tile. Positions past the chunk's end load the
identity (gate 1, input 0), so the last row of a tile is always the state at its last real step.

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
def _program_span(length, channels, chunk_len, BLOCK_D: tl.constexpr):
    """This program's channels (and which exist), its chunk [start, stop), the offset of its batch
    row in (B, L, D) tensors and of its (batch, chunk) row in the (B, chunks, D) buffers."""
    d_block, chunk, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    d = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    start = chunk * chunk_len
    stop = tl.minimum(start + chunk_len, length)
    base = b.to(tl.int64) * length * channels
    per_chunk = (b.to(tl.int64) * tl.num_programs(1) + chunk) * channels + d
    return d, d < channels, start, stop, base, per_chunk, b


@triton.jit
def forward_kernel(A, X, H, ENTER, GATE_OUT, STATE_OUT, length, channels, chunk_len,
                   HAS_ENTER: tl.constexpr, SUMMARY: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """h_t = a_t h_{t-1} + x_t over one chunk, from ENTER[b, chunk] (zero without it)."""
    d, d_ok, start, stop, base, per_chunk, b = _program_span(length, channels, chunk_len, BLOCK_D)
    rows = tl.arange(0, BLOCK_T)
    state = tl.zeros((BLOCK_D,), ACC)
    if HAS_ENTER:
        state = tl.load(ENTER + per_chunk, mask=d_ok, other=0.0).to(ACC)
    product = tl.full((BLOCK_D,), 1.0, ACC)
    for tile_start in range(start, stop, BLOCK_T):
        t = tile_start + rows
        ok = (t < stop)[:, None] & d_ok[None, :]
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
def backward_kernel(A, H, H0, DH, DA, DKV, ENTER, GATE_OUT, STATE_OUT, length, channels, chunk_len,
                    HAS_H0: tl.constexpr, SUMMARY: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """The adjoint over one chunk, walked from its end (tile rows run backwards in t):

        G_t = g_t G_{t+1} + dL/dh_t,  g_t = a_{t+1} (1 at t = L-1),  G at the chunk's end from ENTER[b, chunk]
        (zero in SUMMARY programs)
        dL/dkv_t = G_t,  dL/da_t = G_t h_{t-1}  (h_{-1} = h0, or zero)
    """
    d, d_ok, start, stop, base, per_chunk, b = _program_span(length, channels, chunk_len, BLOCK_D)
    rows = tl.arange(0, BLOCK_T)
    state = tl.zeros((BLOCK_D,), ACC)
    if not SUMMARY:
        state = tl.load(ENTER + per_chunk, mask=d_ok, other=0.0).to(ACC)
    product = tl.full((BLOCK_D,), 1.0, ACC)
    if HAS_H0:
        h0 = tl.load(H0 + b.to(tl.int64) * channels + d, mask=d_ok, other=0.0).to(ACC)
    for tile in range(0, tl.cdiv(stop - start, BLOCK_T)):
        t = stop - 1 - tile * BLOCK_T - rows
        ok = (t >= start)[:, None] & d_ok[None, :]
        at = base + t[:, None].to(tl.int64) * channels + d[None, :]
        g = tl.load(A + at + channels, mask=ok & (t < length - 1)[:, None], other=1.0).to(ACC)
        dh = tl.load(DH + at, mask=ok, other=0.0).to(ACC)
        gates, G = tl.associative_scan((g, dh), 0, _combine)
        G = G + gates * state[None, :]
        if SUMMARY:
            product = product * _last_row(gates, rows, BLOCK_T)
        else:
            tl.store(DKV + at, G.to(DKV.dtype.element_ty), mask=ok)
            h_prev = tl.load(H + at - channels, mask=ok & (t > 0)[:, None], other=0.0).to(ACC)
            if HAS_H0:
                h_prev = tl.where((t == 0)[:, None], h0[None, :], h_prev)
            tl.store(DA + at, (G * h_prev).to(DA.dtype.element_ty), mask=ok)
        state = _last_row(G, rows, BLOCK_T)
    if SUMMARY:
        tl.store(GATE_OUT + per_chunk, product, mask=d_ok)
        tl.store(STATE_OUT + per_chunk, state, mask=d_ok)
