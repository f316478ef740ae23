"""DSS, GSS and GatedStateSpacesLM (Mehta et al. 2022, "Long Range Language Modeling via Gated State
Spaces"), with the parameters and semantics of lucidrains' gated-state-spaces-pytorch.

`mode`, `scan_backend` and `conv_backend` choose how the DSS convolution is computed; they own
no parameters, so a state_dict trained under one path loads and runs under every other.
Step-by-step decoding (`cache`) and packed sequences (`cu_seqlens`, one state per sequence) need
mode="recurrent": the conv mode keeps no state and would convolve across the sequences' boundaries.
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..dss import MODES, dss_forward, dss_recurrent
from ..dss.forward import refuse_packed_conv
from ..layouts import check_cu_seqlens


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _check_cache_allowed(mode, reverse, wants_cache):
    if not wants_cache:
        return
    if mode != "recurrent":
        raise ValueError(f"cache needs mode='recurrent' (the conv mode keeps no state); got mode={mode!r}")
    if reverse:
        raise ValueError("cache is only supported with reverse_seq=False: a reversed sequence cannot be continued")


class DSS(nn.Module):
    def __init__(self, *, dim, kernel_N=512, dss_kernel_lambda_imag_exp=True,
                 mode="conv", scan_backend=None, conv_backend=None):
        super().__init__()
        _check_mode(mode)
        self.mode, self.scan_backend, self.conv_backend = mode, scan_backend, conv_backend
        self.norm = nn.LayerNorm(dim)
        self.Lambda_real = nn.Parameter(torch.randn(kernel_N))
        self.Lambda_imag = nn.Parameter(torch.randn(kernel_N))
        self.C_real = nn.Parameter(torch.randn(dim, kernel_N))
        self.C_imag = nn.Parameter(torch.randn(dim, kernel_N))
        self.param_D = nn.Parameter(torch.randn(dim))
        self.dss_kernel_lambda_imag_exp = dss_kernel_lambda_imag_exp

    def Lambda_and_C(self):
        """Lambda = -exp(Lambda_real) + i Lambda_imag' (N,), with Lambda_imag' = exp(Lambda_imag) or Lambda_imag; C (H, N)."""
        imag = self.Lambda_imag.exp() if self.dss_kernel_lambda_imag_exp else self.Lambda_imag
        return torch.complex(-self.Lambda_real.exp(), imag), torch.complex(self.C_real, self.C_imag)

    def forward(self, x, cache=None, return_cache=False, cu_seqlens=None):
        """x (B, L, dim); cu_seqlens (recurrent mode): x holds packed sequences (B = 1), each filtered on
        its own, and a cache is one state per sequence."""
        _check_cache_allowed(self.mode, False, cache is not None or return_cache)
        refuse_packed_conv(self.mode, cu_seqlens)
        u = self.norm(x)  # (b l h)
        Lambda, C = self.Lambda_and_C()
        if self.mode == "recurrent":
            y, cache = dss_recurrent(u, Lambda, C, self.scan_backend, state=cache, cu_seqlens=cu_seqlens)
        else:
            y = dss_forward(u, Lambda, C, "conv", conv_backend=self.conv_backend)
        out = y + u * self.param_D  # learned weighted residual
        return (out, cache) if return_cache else out


class GSS(nn.Module):
    """Pseudocode 3.2 of the GSS paper: a GELU branch gated by the DSS-filtered branch, plus a residual."""

    def __init__(self, *, dim, dim_expansion_factor=4, dss_kernel_N=512, dss_kernel_H=256, reverse_seq=False,
                 dss_kernel_lambda_imag_exp=True, mode="conv", scan_backend=None, conv_backend=None):
        super().__init__()
        self.reverse_seq = reverse_seq
        self.norm = nn.LayerNorm(dim)
        dim_hidden = int(dim_expansion_factor * dim)
        self.to_u = nn.Sequential(nn.Linear(dim, dim_hidden, bias=False), nn.GELU())
        self.to_v = nn.Sequential(nn.Linear(dim, dss_kernel_H, bias=False), nn.GELU())
        self.dss = DSS(dim=dss_kernel_H, kernel_N=dss_kernel_N, dss_kernel_lambda_imag_exp=dss_kernel_lambda_imag_exp,
                       mode=mode, scan_backend=scan_backend, conv_backend=conv_backend)
        self.to_gate = nn.Linear(dss_kernel_H, dim_hidden, bias=False)
        self.to_out = nn.Linear(dim_hidden, dim)

    def forward(self, x, cache=None, return_cache=False, cu_seqlens=None):
        """x (B, L, dim); cu_seqlens (recurrent mode): packed sequences (B = 1), as DSS takes them."""
        _check_cache_allowed(self.dss.mode, self.reverse_seq, cache is not None or return_cache)
        refuse_packed_conv(self.dss.mode, cu_seqlens)
        if cu_seqlens is not None:  # checked as given, before a reversed layer flips them
            check_cu_seqlens(cu_seqlens, x, x, inputs="x")
        if self.reverse_seq:
            x = x.flip(1)
            if cu_seqlens is not None:  # the flipped row holds the sequences in reverse order, each reversed
                cu_seqlens = (x.shape[1] - cu_seqlens).flip(0)
        normed = self.norm(x)
        u, v = self.to_u(normed), self.to_v(normed)
        if return_cache or cache is not None:
            v, cache = self.dss(v, cache=cache, return_cache=True, cu_seqlens=cu_seqlens)
        else:
            v, cache = self.dss(v, cu_seqlens=cu_seqlens), None
        out = self.to_out(self.to_gate(v) * u) + x
        if self.reverse_seq:
            out = out.flip(1)
        return (out, cache) if return_cache else out


class GatedStateSpacesLM(nn.Module):
    def __init__(self, *, num_tokens, dim, depth, dim_expansion_factor=4, dss_kernel_N=512, dss_kernel_H=256,
                 dss_kernel_lambda_imag_exp=True, mode="conv", scan_backend=None, conv_backend=None):
        super().__init__()
        self.token_emb = nn.Embedding(num_tokens, dim)
        self.layers = nn.ModuleList([
            GSS(dim=dim, dim_expansion_factor=dim_expansion_factor, dss_kernel_N=dss_kernel_N,
                dss_kernel_H=dss_kernel_H, dss_kernel_lambda_imag_exp=dss_kernel_lambda_imag_exp,
                mode=mode, scan_backend=scan_backend, conv_backend=conv_backend)
            for _ in range(depth)
        ])
        self.to_logits = nn.Linear(dim, num_tokens, bias=False)

    def forward(self, x, labels=None, cache=None, return_cache=False, cu_seqlens=None):
        """Logits (B, L, num_tokens), or the cross-entropy loss when labels (B, L) are given.

        cache: the list of per-layer states a previous call returned with return_cache=True.
        cu_seqlens (recurrent mode): x (1, L) holds packed sequences, each run on its own (training on packed rows).
        """
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(f"cache must hold one state per layer ({len(self.layers)}), got {len(cache)}")
        stateful = cache is not None or return_cache
        x = self.token_emb(x)
        new_cache = []
        for i, gss in enumerate(self.layers):
            if stateful:
                x, state = gss(x, cache=None if cache is None else cache[i], return_cache=True, cu_seqlens=cu_seqlens)
                new_cache.append(state)
            else:
                x = gss(x, cu_seqlens=cu_seqlens)
        logits = self.to_logits(x)
        result = logits if labels is None else F.cross_entropy(rearrange(logits, "b n c -> b c n"), labels)
        return (result, new_cache) if return_cache else result
