"""Reverse and packed variable-length scans for every backend: the checks on `cu_seqlens`, and the
generic exact adapters, written once, for a backend without a native path.

    reverse=True:        h_t = a_t * h_{t+1} + kv_t,  t = L-1 .. 0,  h_L = h0;  h_last = h_0
    cu_seqlens (N+1,):   a, kv (1, L, D) hold N sequences, sequence i at [cu[i], cu[i+1]); each is
                         scanned on its own from h0[i] (h0: (N, D)); h_last[i] is its final state,
                         h0[i] (or zero) for an empty one. With reverse=True each runs backwards.

Reverse is flip, scan, flip back: exact, and autograd flips the gradients back. Varlen is one dense
scan in which each sequence's first step gets a zero gate and h0[i] folded into its input,
kv'_s = kv_s + a_s * h0[i]: exact for finite inputs, and autograd maps the gradients back
(dL/da_s = dL/dkv'_s * conj(h0[i]), dL/dh0[i] = dL/dkv'_s * conj(a_s)). A NaN or inf state times a
zero gate is still NaN, so inputs that are not all finite, or states that overflow, are scanned
sequence by sequence: no value of one sequence reaches another. Not guarded: a gradient, whose
adjoint runs the other way, that overflows inside one sequence reaches the one before it through
the zero gate (NaN there, never a wrong finite number).
"""
import torch

REVERSE, VARLEN = "reverse", "varlen"


def check_cu_seqlens(cu_seqlens, a, kv, inputs="a and kv"):
    """Valid packed offsets for a, kv (1, L, D), or a ValueError / TypeError naming cu_seqlens (and the
    `inputs` it packs: a layer passes its own argument's name)."""
    if not isinstance(cu_seqlens, torch.Tensor):
        raise TypeError(f"cu_seqlens must be a torch.Tensor of offsets, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
    if cu_seqlens.ndim != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"cu_seqlens must have shape (N + 1,): N sequences' offsets, got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.device != a.device:
        raise ValueError(f"cu_seqlens must be on the device of {inputs}, {a.device}; got {cu_seqlens.device}")
    if a.shape[0] != 1:
        raise ValueError(f"cu_seqlens packs sequences into one row: {inputs} must be (1, L, D), got B = {a.shape[0]}")
    offsets = cu_seqlens.tolist()
    length = a.shape[1]
    if offsets[0] != 0 or offsets[-1] != length:
        raise ValueError(f"cu_seqlens must start at 0 and end at L = {length}; got {offsets[0]} .. {offsets[-1]}")
    if any(later < earlier for earlier, later in zip(offsets, offsets[1:])):
        raise ValueError(f"cu_seqlens must be non-decreasing (sequence lengths >= 0); got {offsets}")


def sequences(cu_seqlens):
    """(start, end) of each packed sequence."""
    offsets = cu_seqlens.tolist()
    return list(zip(offsets, offsets[1:]))


def reverse_adapter(scan):
    """The reverse of `scan(a, kv, h0, cu_seqlens=None)`: the packed row flipped, so the sequences
    come in reverse order with their steps reversed, then flipped back."""
    def reversed_scan(a, kv, h0, cu_seqlens=None):
        if cu_seqlens is None:
            h, h_last = scan(a.flip(1), kv.flip(1), h0)
            return h.flip(1), h_last
        flipped = (a.shape[1] - cu_seqlens).flip(0)
        h, h_last = scan(a.flip(1), kv.flip(1), None if h0 is None else h0.flip(0), flipped)
        return h.flip(1), h_last.flip(0)
    return reversed_scan


def varlen_adapter(dense, refuse=None, exact_zero_gates=True):
    """Packed sequences through a dense `dense(a, kv, h0) -> (h, h_last)` (module docstring).
    `refuse(a, kv, h0)` raises for a sequence the backend's limits refuse (the sequence-by-sequence
    path hands it each sequence alone); `exact_zero_gates=False`: the backend does not compute a zero
    gate exactly (a log-space one clamps it to the dtype's tiny, which lets tiny * h through), so
    every call goes sequence by sequence."""
    def varlen_scan(a, kv, h0, cu_seqlens):
        spans = sequences(cu_seqlens)
        count, channels = len(spans), a.shape[2]
        start = h0 if h0 is not None else a.new_zeros(count, channels)  # (n d)
        one_by_one = lambda: _one_by_one(dense, a, kv, h0, spans, start, refuse)
        if not exact_zero_gates or not all(bool(torch.isfinite(t).all()) for t in (a, kv, start)):
            return one_by_one()
        used = torch.tensor([i for i, (s, e) in enumerate(spans) if e > s], dtype=torch.long, device=a.device)
        firsts = cu_seqlens[:-1].long()[used]
        cut = boundary_gates(a, cu_seqlens)
        if h0 is not None:
            kv = kv.index_add(1, firsts, a[:, firsts] * h0[used][None])  # h0[i] folded into each first step
        h, _ = dense(cut, kv, None)
        if not bool(torch.isfinite(h).all()):  # a state overflowed: inf times the next zero gate is NaN
            return one_by_one()
        ends = (cu_seqlens[1:].long() - 1).clamp_min(0)
        empty = (cu_seqlens[1:] == cu_seqlens[:-1])[:, None]  # (n 1)
        return h, torch.where(empty, start, h[0, ends])
    return varlen_scan


def boundary_gates(a, cu_seqlens):
    """a (1, L, D) with a zero gate at each sequence's first step: what the varlen adapter hands the
    backend's dense path (a backend whose limits refuse zero gates cannot take it)."""
    boundary = torch.zeros(a.shape[1], dtype=torch.bool, device=a.device)
    boundary[cu_seqlens[:-1][cu_seqlens[1:] > cu_seqlens[:-1]].long()] = True  # first steps of non-empty ones
    return torch.where(boundary[None, :, None], torch.zeros((), dtype=a.dtype, device=a.device), a)  # (1 l d)


def _one_by_one(dense, a, kv, h0, spans, start, refuse=None):
    states, lasts = [], []
    for i, (s, e) in enumerate(spans):
        if e == s:
            lasts.append(start[i].clone())
            continue
        first = None if h0 is None else h0[i:i + 1]
        if refuse is not None:
            refuse(a[:, s:e], kv[:, s:e], first)
        h, h_last = dense(a[:, s:e], kv[:, s:e], first)
        states.append(h)
        lasts.append(h_last[0])
    h = torch.cat(states, dim=1) if states else a * kv
    return h, torch.stack(lasts) if lasts else start[:0]


def layout_call(fn, native, reverse, cu_seqlens, refuse=None, exact_zero_gates=True):
    """fn(a, kv, h0) for the layout asked: the backend's own path when it declares every part of it
    native (`native`: REVERSE, VARLEN), else the adapters around its dense (or native varlen) path
    (`refuse`, `exact_zero_gates`: as varlen_adapter takes them)."""
    wanted = {REVERSE} if reverse else set()
    wanted |= {VARLEN} if cu_seqlens is not None else set()
    if not wanted:
        return fn
    if wanted <= set(native):
        extra = {**({"reverse": True} if reverse else {}), **({"cu_seqlens": cu_seqlens} if VARLEN in wanted else {})}
        return lambda a, kv, h0: fn(a, kv, h0, **extra)
    if VARLEN in native:
        forward = lambda a, kv, h0, cu=None: fn(a, kv, h0, **({} if cu is None else {"cu_seqlens": cu}))
    else:
        varlen = varlen_adapter(fn, refuse, exact_zero_gates)
        forward = lambda a, kv, h0, cu=None: fn(a, kv, h0) if cu is None else varlen(a, kv, h0, cu)
    run = reverse_adapter(forward) if reverse else forward
    return lambda a, kv, h0: run(a, kv, h0, cu_seqlens)
