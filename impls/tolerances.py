"""Every tolerance in scanlab, declared per (kind, backend, dtype), with the domain where it holds.

A backend's output passes against the float64 oracle when, elementwise,

    |out - ref| <= atol + rtol * scale

where `scale` is the oracle run on magnitudes: for a scan, the scan of |a|, |kv| and |h0| (the
size of the terms a rounding error is relative to); for a convolution, |K| convolved with |u|.
Gradients pass when max|g - g_ref| <= atol + grad_rtol * max|g_ref|, per input.

Values are measured worst cases (harness accuracy sweeps and the Hypothesis suite) with headroom;
never raise one to make a test pass. Where an algorithm is really worse, narrow its Domain.
"""
from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass(frozen=True)
class Domain:
    """Inputs on which a tolerance holds; None means unbounded."""

    max_len: Optional[int] = None
    max_log_span: Optional[float] = None  # max_t |sum_{r<=t} log a_r|, zero gates counted as log(tiny)
    note: str = ""

    def violations(self, a=None, length=None):
        """Why these inputs lie outside the domain (empty when inside)."""
        reasons = []
        length = a.shape[1] if a is not None else length
        if self.max_len is not None and length is not None and length > self.max_len:
            reasons.append(f"L = {length} > max_len {self.max_len}")
        if self.max_log_span is not None and a is not None:
            span = log_span(a)
            if span > self.max_log_span:
                reasons.append(f"log span {span:.3g} > max_log_span {self.max_log_span:g}")
        return reasons

    def describe(self):
        parts = [f"L <= {self.max_len}" if self.max_len else "",
                 f"max_t |sum log a| <= {self.max_log_span:g}" if self.max_log_span else "", self.note]
        return "; ".join(p for p in parts if p) or "all inputs"


def log_span(a):
    """max over batch, channel and t of |sum_{r<=t} log a_r| (complex log; zeros as the dtype's tiny)."""
    wide = torch.complex128
    real = a.real.dtype if a.is_complex() else a.dtype
    magnitude = a.detach().abs().to(torch.float64).clamp_min(torch.finfo(real).tiny)
    log_a = torch.complex(magnitude.log(), a.detach().angle().to(torch.float64)).to(wide)
    return float(torch.cumsum(log_a, dim=1).abs().max()) if a.numel() else 0.0


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    grad_rtol: float
    domain: Domain = field(default_factory=Domain)


def _both(kind, name, single, double):
    """The same declaration for the real and complex dtype of one precision."""
    return {
        (kind, name, torch.float32): single, (kind, name, torch.complex64): single,
        (kind, name, torch.float64): double, (kind, name, torch.complex128): double,
    }


_EXACT_SINGLE = Tolerance(rtol=2e-5, atol=1e-30, grad_rtol=2e-5)
_EXACT_DOUBLE = Tolerance(rtol=1e-13, atol=1e-300, grad_rtol=1e-13)

TABLE = {
    **_both("scan", "sequential", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "assoc", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "chunked", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "torch_hop", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "jax_assoc", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "jax_scan", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "heinsen",
            Tolerance(rtol=1e-3, atol=1e-30, grad_rtol=1e-3, domain=Domain(max_log_span=1e3)),
            Tolerance(rtol=1e-10, atol=1e-300, grad_rtol=1e-10, domain=Domain(max_log_span=1e4))),
    **_both("conv", "direct", Tolerance(rtol=2e-5, atol=1e-30, grad_rtol=2e-5),
            Tolerance(rtol=1e-12, atol=1e-300, grad_rtol=1e-12)),
    **_both("conv", "fft", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-4),
            Tolerance(rtol=1e-12, atol=1e-300, grad_rtol=1e-12)),
    **_both("conv", "fft_fast", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-4),
            Tolerance(rtol=1e-12, atol=1e-300, grad_rtol=1e-12)),
    # DSS paths, judged against |u| convolved with sum_n |C'| |exp(Lambda)|^l (impls/dss/oracle.py).
    # The recurrent mode also needs its scan backend's domain to hold for the gates exp(Lambda).
    **_both("dss", "conv", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-4),
            Tolerance(rtol=1e-12, atol=1e-300, grad_rtol=1e-12)),
    **_both("dss", "recurrent", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-4),
            Tolerance(rtol=1e-10, atol=1e-300, grad_rtol=1e-10)),
    # Whole layers (SimpleGateLoopLayer, GSS, GatedStateSpacesLM) across paths, normwise: max|y - y_ref| / max|y_ref|.
    # Nonlinearities between DSS blocks pass the DSS error on, amplified by their Lipschitz constants.
    **_both("layer", "gate_loop", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-3),
            Tolerance(rtol=1e-9, atol=1e-300, grad_rtol=1e-9)),
    **_both("layer", "gss", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-3),
            Tolerance(rtol=1e-9, atol=1e-300, grad_rtol=1e-9)),
}


def lookup(kind, name, dtype):
    try:
        return TABLE[(kind, name, dtype)]
    except KeyError:
        raise KeyError(f"no tolerance declared for {kind} backend {name!r} in {dtype}") from None
