"""Every tolerance in scanlab, declared per (kind, backend, dtype), with the domain where it holds.

A backend's output passes against the float64 oracle when, elementwise,

    |out - ref| <= atol + rtol * scale               (norm="elementwise")
    |out - ref| <= atol + rtol * max(scale)          (norm="normwise")

where `scale` is the oracle run on magnitudes: for a scan, the scan of |a|, |kv| and |h0| (the
size of the terms a rounding error is relative to); for a convolution, |K| convolved with |u|.
Recurrences and direct sums make errors relative to each output's own terms (elementwise); an
FFT spreads its rounding over every output, so it can only promise normwise accuracy.
Gradients pass when max|g - g_ref| <= atol + grad_rtol * max|g_ref|, per input.

Values are measured worst cases (harness accuracy sweeps and the Hypothesis suite) with headroom;
never raise one to make a test pass. Where an algorithm is really worse, narrow its Domain.
"""
from dataclasses import dataclass, field, replace
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
    norm: str = "elementwise"


def _both(kind, name, single, double):
    """The same declaration for the real and complex dtype of one precision."""
    return {
        (kind, name, torch.float32): single, (kind, name, torch.complex64): single,
        (kind, name, torch.float64): double, (kind, name, torch.complex128): double,
    }


# Exact algorithms (no logarithms, no transforms): measured worst 2e-6 (float32/complex64) and
# 3e-15 (float64/complex128) relative to scale for L <= 4099, outputs and gradients alike.
_EXACT_DOMAIN = Domain(max_len=16384, note="accuracy measured up to L = 16384")
_EXACT_SINGLE = Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5, domain=_EXACT_DOMAIN)
_EXACT_DOUBLE = Tolerance(rtol=2e-14, atol=1e-300, grad_rtol=2e-14, domain=_EXACT_DOMAIN)
# FFT convolutions: normwise, see above
_FFT_SINGLE = Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5, norm="normwise")
_FFT_DOUBLE = Tolerance(rtol=2e-14, atol=1e-300, grad_rtol=2e-14, norm="normwise")

TABLE = {
    **_both("scan", "sequential", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "assoc", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "chunked", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "torch_hop", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "jax_assoc", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "jax_scan", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "native", _EXACT_SINGLE, _EXACT_DOUBLE),
    **_both("scan", "heinsen_chunked", _EXACT_SINGLE, _EXACT_DOUBLE),
    # Heinsen's error grows like eps * max_t |a*_t| (see impls/scan/heinsen.py). Measured in domain:
    # 9.4e-5 (float32) and 2.7e-12 (float64); outside it, up to 7x these tolerances. Every exact-zero
    # gate adds |log tiny| (87 in float32, 708 in float64) to the span, so a few zeros leave the domain.
    **_both("scan", "heinsen",
            Tolerance(rtol=2e-4, atol=1e-30, grad_rtol=2e-4,
                      domain=Domain(max_log_span=1e3, note="each exact-zero gate adds 87 to the span")),
            Tolerance(rtol=1e-11, atol=1e-300, grad_rtol=3e-11,
                      domain=Domain(max_log_span=1e4, note="each exact-zero gate adds 708 to the span"))),
    **_both("conv", "direct", Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5),
            Tolerance(rtol=2e-14, atol=1e-300, grad_rtol=2e-14)),
    **_both("conv", "fft", _FFT_SINGLE, _FFT_DOUBLE),
    **_both("conv", "fft_fast", _FFT_SINGLE, _FFT_DOUBLE),
    # Whole layers (SimpleGateLoopLayer, GSS, GatedStateSpacesLM) across paths, normwise: max|y - y_ref| / max|y_ref|.
    # Nonlinearities between DSS blocks pass the DSS error on, amplified by their Lipschitz constants.
    **_both("layer", "gate_loop", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-3),
            Tolerance(rtol=1e-9, atol=1e-300, grad_rtol=1e-9)),
    **_both("layer", "gss", Tolerance(rtol=1e-4, atol=1e-30, grad_rtol=1e-3),
            Tolerance(rtol=1e-9, atol=1e-300, grad_rtol=1e-9)),
}


# A DSS path computes its kernel (conv mode) or discretised C and gates (recurrent mode) in the
# input's complex precision, which adds this much, relative to the same scale, to what its conv or
# scan backend promises (measured: 8.3e-7 and 9e-15 through the exact backends, L <= 2049).
DSS_PARAMETER_RTOL = {torch.float32: 3e-6, torch.float64: 3e-14}


def dss_path_tolerance(backend_tolerance, dtype):
    """The tolerance of a DSS forward in `dtype` through a backend that promises `backend_tolerance`.

    Recurrent: y = Re sum_n C' x_n, so each state's error, bounded by the scan's tolerance, adds up
    to at most that tolerance times the DSS scale (impls/dss/oracle.py). Conv: y = K * u directly.
    """
    extra = DSS_PARAMETER_RTOL[dtype]
    return replace(backend_tolerance, rtol=backend_tolerance.rtol + extra,
                   grad_rtol=backend_tolerance.grad_rtol + extra)


def lookup(kind, name, dtype):
    try:
        return TABLE[(kind, name, dtype)]
    except KeyError:
        raise KeyError(f"no tolerance declared for {kind} backend {name!r} in {dtype}") from None
