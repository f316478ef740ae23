"""Chunked scan, the shape of fla's chunked HGRN kernels.

L is cut into chunks of C. Inside a chunk the states starting from zero are one matrix product
with the decay matrix M[t, s] = prod_{s<r<=t} a_r, built by a masked cumulative product (no
division, no logarithm: exact zeros and complex gates stay exact). The chunks' final states are
then carried across chunks by the associative scan, and each chunk adds prod_{r<=t} a_r times
the state that entered it.

Packed sequences (cu_seqlens) run natively: the chunks stay where they are, and a boundary inside
a chunk is a mask, not a zero gate. M[t, s] is kept only where t and s are in the same sequence,
the state entering a chunk reaches only the steps of the sequence it belongs to, and the carry
across chunks is a segmented scan that restarts at each chunk holding a boundary. Each mask is a
selection, so a NaN or inf of one sequence never reaches another, with no fallback to scanning
sequence by sequence (kv's finiteness still picks the product or the masked sum, as in a dense
call); h0[i] is folded into sequence i's first input. The gradient is the same segmented recurrence run
backwards (interface._AdjointScan).
"""
import torch
import torch.nn.functional as F
from einops import rearrange

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from ..layouts import VARLEN
from .assoc import assoc_states, segmented_states
from .interface import SCAN_DOC, _AdjointScan, scan_from_core

# The decay matrix costs B*D*L*C elements: on a CPU that traffic dominates (C=32 was 3.6x slower
# than C=8 at B*D=1024, L=1024), while a GPU turns it into matrix-unit work and wants larger C.
CHUNK = {"cpu": 8, "cuda": 64}


def decay_matrix(a):  # (... c) -> (... c c)
    c = a.shape[-1]
    strictly_lower = torch.ones(c, c, dtype=torch.bool, device=a.device).tril(-1)  # t > s
    factors = torch.where(strictly_lower, a[..., :, None], torch.ones((), dtype=a.dtype, device=a.device))
    return factors.cumprod(dim=-2).tril()  # (... t s)


def chunked_states(a, kv, chunk=None, starts=None):  # (b l d) -> (b l d)
    """Every state from zero; `starts` (L,) bool: the steps where a packed sequence begins, whose
    state does not continue the step before (None: one sequence a row)."""
    chunk = chunk or CHUNK.get(a.device.type, CHUNK["cpu"])
    length = a.shape[1]
    pad = -length % chunk
    a = F.pad(rearrange(a, "b l d -> b d l"), (0, pad), value=1.0)  # padding after L changes no state
    kv = F.pad(rearrange(kv, "b l d -> b d l"), (0, pad), value=0.0)
    a = rearrange(a, "b d (n c) -> b d n c", c=chunk)
    kv = rearrange(kv, "b d (n c) -> b d n c", c=chunk)
    zero = torch.zeros((), dtype=kv.dtype, device=kv.device)
    decay = decay_matrix(a)  # (b d n t s)
    carried = reset = same = None
    if starts is not None:
        steps = torch.cat([starts.long().cumsum(0), starts.new_zeros(pad, dtype=torch.long) + starts.sum()])
        sequence = rearrange(steps, "(n c) -> n c", c=chunk)  # which packed sequence each step is in
        same = sequence[:, :, None] == sequence[:, None, :]  # (n t s)
        opens = rearrange(torch.cat([starts, starts.new_zeros(pad)]), "(n c) -> n c", c=chunk)[:, 0]
        carried = sequence == (sequence[:, 0] - opens.long())[:, None]  # (n c): in the sequence entering the chunk
        reset = ~carried[:, -1]  # a chunk whose last step is in a sequence that began inside it
        decay = decay.masked_fill_(~same, 0)  # in place: a second decay-sized tensor cost 10% of the call
    if bool(torch.isfinite(kv).all()):
        local = (decay @ kv[..., None]).squeeze(-1)  # (b d n c), zero entry state
    else:  # the product would add 0 * inf = NaN from later steps s > t or other sequences: sum the rest only
        causal = torch.ones(chunk, chunk, dtype=torch.bool, device=a.device).tril()
        causal = causal if same is None else causal & same
        local = torch.where(causal, decay * kv[..., None, :], zero).sum(-1)
    entry_decay = a.cumprod(dim=-1)  # (b d n c): prod_{r<=t} a_r inside the chunk

    chunk_gate = rearrange(entry_decay[..., -1], "b d n -> b n d")
    chunk_last = rearrange(local[..., -1], "b d n -> b n d")
    if starts is None:
        exits = assoc_states(chunk_gate, chunk_last)  # (b n d): state leaving each chunk
    else:
        exits = segmented_states(chunk_gate, chunk_last, reset)
    entries = F.pad(rearrange(exits, "b n d -> b d n")[..., :-1], (1, 0))  # (b d n)

    entering = entry_decay * entries[..., None]
    h = local + (entering if starts is None else torch.where(carried, entering, zero))
    return rearrange(h, "b d n c -> b (n c) d")[:, :length]


_dense = scan_from_core(chunked_states, adjoint_backward=True, float16_in_float32=True)


def scan(a, kv, h0=None, *, reverse=False, cu_seqlens=None):
    if reverse:  # no reverse of its own: the dense path refuses it and says to call the backend, which flips
        return _dense(a, kv, h0, reverse=True)
    return _dense(a, kv, h0) if cu_seqlens is None else _packed(a, kv, h0, cu_seqlens)


scan.__doc__ = SCAN_DOC


def _packed(a, kv, h0, cu_seqlens):
    given = a.dtype
    if given == torch.float16:  # as the dense path: gate products in float32 (scan_from_core)
        a, kv, h0 = (None if t is None else t.float() for t in (a, kv, h0))
    first, end = cu_seqlens[:-1].long(), cu_seqlens[1:].long()
    used = end > first
    starts = torch.zeros(a.shape[1], dtype=torch.bool, device=a.device)
    starts[first[used]] = True
    if h0 is not None:  # h_s = a_s h0[i] + kv_s at sequence i's first step s
        kv = kv.index_add(1, first[used], a[:, first[used]] * h0[used][None])
    if torch.is_grad_enabled() and (a.requires_grad or kv.requires_grad):
        h = _AdjointScan.apply(a, kv, chunked_states, starts)
    else:
        h = chunked_states(a, kv, starts=starts)
    start = h0 if h0 is not None else a.new_zeros(len(first), a.shape[2])
    h_last = torch.where(used[:, None], h[0, (end - 1).clamp_min(0)], start)  # (n d): an empty one keeps h0[i]
    return h.to(given), h_last.to(given)


def load():
    return ScanBackend(name="chunked", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description=f"chunks of {CHUNK}: decay-matrix product inside, associative scan across",
                       native_layouts=(VARLEN,))
