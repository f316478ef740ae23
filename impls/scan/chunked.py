"""Chunked scan, the shape of fla's chunked HGRN kernels.

L is cut into chunks of C. Inside a chunk the states starting from zero are one matrix product
with the decay matrix M[t, s] = prod_{s<r<=t} a_r, built by a masked cumulative product (no
division, no logarithm: exact zeros and complex gates stay exact). The chunks' final states are
then carried across chunks by the associative scan, and each chunk adds prod_{r<=t} a_r times
the state that entered it.
"""
import torch
import torch.nn.functional as F
from einops import rearrange

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from .assoc import assoc_states
from .interface import scan_from_core

# The decay matrix costs B*D*L*C elements: on a CPU that traffic dominates (C=32 was 3.6x slower
# than C=8 at B*D=1024, L=1024), while a GPU turns it into matrix-unit work and wants larger C.
CHUNK = {"cpu": 8, "cuda": 64}


def decay_matrix(a):  # (... c) -> (... c c)
    c = a.shape[-1]
    strictly_lower = torch.ones(c, c, dtype=torch.bool, device=a.device).tril(-1)  # t > s
    factors = torch.where(strictly_lower, a[..., :, None], torch.ones((), dtype=a.dtype, device=a.device))
    return factors.cumprod(dim=-2).tril()  # (... t s)


def chunked_states(a, kv, chunk=None):  # (b l d) -> (b l d)
    chunk = chunk or CHUNK.get(a.device.type, CHUNK["cpu"])
    length = a.shape[1]
    pad = -length % chunk
    a = F.pad(rearrange(a, "b l d -> b d l"), (0, pad), value=1.0)  # padding after L changes no state
    kv = F.pad(rearrange(kv, "b l d -> b d l"), (0, pad), value=0.0)
    a = rearrange(a, "b d (n c) -> b d n c", c=chunk)
    kv = rearrange(kv, "b d (n c) -> b d n c", c=chunk)

    decay = decay_matrix(a)  # (b d n t s)
    if bool(torch.isfinite(kv).all()):
        local = (decay @ kv[..., None]).squeeze(-1)  # (b d n c), zero entry state
    else:  # the product would add 0 * inf = NaN from later steps s > t: sum over s <= t only
        causal = torch.ones(chunk, chunk, dtype=torch.bool, device=a.device).tril()
        local = torch.where(causal, decay * kv[..., None, :], torch.zeros((), dtype=kv.dtype, device=kv.device)).sum(-1)
    entry_decay = a.cumprod(dim=-1)  # (b d n c): prod_{r<=t} a_r inside the chunk

    chunk_gate = rearrange(entry_decay[..., -1], "b d n -> b n d")
    chunk_last = rearrange(local[..., -1], "b d n -> b n d")
    exits = assoc_states(chunk_gate, chunk_last)  # (b n d): state leaving each chunk
    entries = F.pad(rearrange(exits, "b n d -> b d n")[..., :-1], (1, 0))  # (b d n)

    h = local + entry_decay * entries[..., None]
    return rearrange(h, "b d n c -> b (n c) d")[:, :length]


scan = scan_from_core(chunked_states, adjoint_backward=True, float16_in_float32=True)


def load():
    return ScanBackend(name="chunked", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description=f"chunks of {CHUNK}: decay-matrix product inside, associative scan across")
