"""The gate-loop operator and SimpleGateLoopLayer (GateLoop, Katsch 2023; lucidrains' simplified layer)."""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..backend import ScanBackend
from ..scan import get_scan_backend
from ..validation import require_tensor


def gate_loop_operator(q, kv, a, cache=None, backend="assoc", *, reverse=False, cu_seqlens=None):
    """out_t = q_t * h_t with h_t = a_t * h_{t-1} + kv_t; all (B, L, D).

    cache: the state (B, D) a previous call returned, or None (passed to the scan as its h0). Returns
    (out, cache), where the new cache is the true final state, so calls on consecutive pieces equal one
    call on the whole (with reverse=True, the pieces taken from the end).
    reverse, cu_seqlens: as the scan takes them (impls/layouts.py): h_t = a_t * h_{t+1} + kv_t, and
    N sequences packed in one row, B = 1, each from its own cache[i] ((N, D); the returned cache too).
    """
    if isinstance(backend, str):
        scan = get_scan_backend(backend)
    elif isinstance(backend, ScanBackend):
        scan = backend
    else:
        raise TypeError(f"backend must be a scan backend's name or a ScanBackend, got {type(backend).__name__}")
    require_tensor("q", q)
    require_tensor("a", a)
    if q.shape != a.shape:  # q * h would broadcast a (B, 1, D) q silently
        raise ValueError(f"q must have the shape of a and kv (B, L, D) = {tuple(a.shape)}; got {tuple(q.shape)}")
    h, h_last = scan(a, kv, h0=cache, reverse=reverse, cu_seqlens=cu_seqlens)  # (b l d); the scan checks the rest
    return q * h, h_last


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class SimpleGateLoopLayer(nn.Module):
    """x -> q * scan(sigmoid(a), kv): one linear map gives q, kv and the gate pre-activation a.

    The parameters do not depend on `backend`, so one trained layer runs on every scan backend.
    """

    def __init__(self, dim, backend="assoc", prenorm=True, post_ln=False, reverse=False):
        super().__init__()
        self.dim = dim
        self.backend = backend
        self.reverse = reverse
        self.norm = RMSNorm(dim) if prenorm else nn.Identity()
        self.to_qkva = nn.Linear(dim, dim * 3, bias=False)
        self.maybe_post_ln = nn.LayerNorm(dim) if post_ln else nn.Identity()

    def forward(self, x, cache=None, return_cache=False, cu_seqlens=None):
        """x (B, L, dim); cu_seqlens: x holds N packed sequences (B = 1), the state restarting at each
        (impls/layouts.py), and a cache is one state per sequence, (N, dim)."""
        if self.reverse and (cache is not None or return_cache):
            raise ValueError("cache is only supported with reverse=False: a reversed sequence cannot be continued")
        if cu_seqlens is not None:  # flipping the packed row would reverse the order of the sequences too
            q, kv, a = rearrange(self.to_qkva(self.norm(x)), "b n (three d) -> three b n d", three=3)
            out, cache = gate_loop_operator(q, kv, a.sigmoid(), cache=cache, backend=self.backend,
                                            reverse=self.reverse, cu_seqlens=cu_seqlens)
            out = self.maybe_post_ln(out)
            return (out, cache) if return_cache else out
        if self.reverse:
            x = x.flip(1)
        q, kv, a = rearrange(self.to_qkva(self.norm(x)), "b n (three d) -> three b n d", three=3)
        out, cache = gate_loop_operator(q, kv, a.sigmoid(), cache=cache, backend=self.backend)
        out = self.maybe_post_ln(out)
        if self.reverse:
            out = out.flip(1)
        return (out, cache) if return_cache else out
