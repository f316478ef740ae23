"""Heinsen's log-space scan, made accurate at any length by chunking.

Inside each chunk of C steps, Heinsen's sum (heinsen.py, eq (1)-(2))

    h_t = exp(a*_t) * sum_{s<=t} exp(log kv_s - a*_s),    a*_t = sum_{chunk start < r <= t} log a_r

is taken as a running logsumexp: the magnitude as a running maximum mu_t and the rest as a
bounded mantissa m_t (a sign for real inputs, a complex number for complex ones), h_t = m_t e^{mu_t}:

    mu_t = max(mu_{t-1} + log|a_t|, log|kv_t|)
    m_t  = sgn(a_t) m_{t-1} e^{mu_{t-1} + log|a_t| - mu_t} + sgn(kv_t) e^{log|kv_t| - mu_t}

with sgn(x) = x / |x| (0 at 0). The stabiliser absorbs a*_t, so no two large logarithms are ever
subtracted (Heinsen's error term eps * |a*_t| does not arise) and nothing overflows. An exact zero
gate gives sgn = 0 and log = -inf: the state before it is dropped exactly, as in the recurrence.
The C steps run one after another, each over every chunk, batch row and channel at once.

Across chunks the state is carried in linear space: each chunk's exit state and gate product
P = prod a (a cumulative product: exact zeros stay zero) go through the associative scan, and
h = local + P_t * entry.
"""
import torch
import torch.nn.functional as F
from einops import rearrange

from ..backend import ALL_DTYPES, HALF_DTYPES, ScanBackend
from .assoc import assoc_states
from .interface import scan_from_core

CHUNK = {"cpu": 16, "cuda": 64}


class _LogSign:
    """x = sign * e^{log} for one (b n d) slab at a time, into buffers reused across steps: full-size
    temporaries cost a fresh allocation each, and on CPU their page faults cost more than the math."""

    def __init__(self, like, real_dtype):
        self.log = torch.empty(like.shape, dtype=real_dtype, device=like.device)
        self.sign = torch.empty_like(like)

    def __call__(self, x):  # log|x| (-inf at 0), x/|x| (0 at 0)
        if x.is_complex():
            torch.log(x.abs(), out=self.log)
            torch.sgn(x, out=self.sign)
        else:  # torch.sign is several times faster than sgn on real tensors
            torch.abs(x, out=self.log).log_()
            torch.sign(x, out=self.sign)
        return self.log, self.sign


def chunk_local_states(a, kv):  # (b n c d) -> (b n c d), (b n d): zero-entry states; each chunk's gate product
    real = a.real.dtype if a.is_complex() else a.dtype
    lowest = torch.finfo(real).min  # a finite floor for log|kv|: -inf - (-inf) would be NaN
    gate, value = _LogSign(a[:, :, 0], real), _LogSign(kv[:, :, 0], real)
    h = torch.empty_like(kv)
    mu, mantissa = torch.full_like(gate.log, lowest), torch.zeros_like(kv[:, :, 0])  # (b n d): h = mantissa e^mu
    carried, factor, decay = torch.empty_like(mu), torch.empty_like(mu), torch.ones_like(a[:, :, 0])
    for c in range(a.shape[2]):
        log_a, sign_a = gate(a[:, :, c])
        log_kv, sign_kv = value(kv[:, :, c])
        log_kv.clamp_min_(lowest)
        torch.add(mu, log_a, out=carried)
        torch.maximum(carried, log_kv, out=mu)
        mantissa.mul_(sign_a).mul_(torch.sub(carried, mu, out=factor).exp_())
        mantissa.addcmul_(sign_kv, torch.sub(log_kv, mu, out=factor).exp_())
        torch.mul(mantissa, torch.exp(mu, out=factor), out=h[:, :, c])
        decay.mul_(a[:, :, c])
    return h, decay


def heinsen_chunked_states(a, kv, chunk=None):  # (b l d) -> (b l d)
    chunk = chunk or CHUNK.get(a.device.type, CHUNK["cpu"])
    length = a.shape[1]
    pad = -length % chunk
    if pad:  # gates 1 and inputs 0 after L change no state
        a, kv = F.pad(a, (0, 0, 0, pad), value=1.0), F.pad(kv, (0, 0, 0, pad))
    a = rearrange(a, "b (n c) d -> b n c d", c=chunk)
    kv = rearrange(kv, "b (n c) d -> b n c d", c=chunk)

    h, chunk_gate = chunk_local_states(a, kv)  # (b n c d), (b n d)
    exits = assoc_states(chunk_gate, h[:, :, -1])  # (b n d): state leaving each chunk
    entering = F.pad(exits[:, :-1], (0, 0, 1, 0))  # (b n d): state entering each chunk
    for c in range(chunk):  # h += (prod of the chunk's gates up to c) * entering state
        entering.mul_(a[:, :, c])
        h[:, :, c].add_(entering)
    return rearrange(h, "b n c d -> b (n c) d")[:, :length]


scan = scan_from_core(heinsen_chunked_states, adjoint_backward=True)


def load():
    return ScanBackend(name="heinsen_chunked", kind="scan", fn=scan, dtypes=ALL_DTYPES + HALF_DTYPES,
                       description=f"log-space (running logsumexp) inside chunks of {CHUNK}, linear-space carry")
