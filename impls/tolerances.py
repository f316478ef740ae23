"""Every tolerance in scanlab, declared per (kind, backend, dtype), with the domain where it holds.

A backend's output passes against the float64 oracle when, elementwise,

    |out - ref| <= atol + rtol * scale               (norm="elementwise")
    |out - ref| <= atol + rtol * max(scale)          (norm="normwise")

where `scale` is the oracle run on magnitudes: for a scan, the scan of |a|, |kv| and |h0| (the
size of the terms a rounding error is relative to); for a convolution, |K| convolved with |u|.
Recurrences and direct sums make errors relative to each output's own terms (elementwise); an
FFT spreads its rounding over every output, so it can only promise normwise accuracy.
Gradients pass when, elementwise per input,

    |g - g_ref| <= atol + grad_rtol * max(max|g_ref|, gscale)

where `gscale` is the gradient of the scan of magnitudes under the magnitudes of the upstream
gradient: the sum of |terms| each gradient element adds up. Without it a gradient that cancels
(dL/dh0 over a long-memory gate) failed every backend, the exact float32 loop included.

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
    max_value: Optional[float] = None  # largest |output| or |gradient| the dtype holds (float16: 65504)
    # beyond max_log_span the output error is still within span_rtol_per_eps * eps * log_span * scale
    # (measured; tests/test_scan_agreement.py holds it), where a bound is known at all
    span_rtol_per_eps: Optional[float] = None
    note: str = ""

    def violations(self, a=None, length=None, references=()):
        """Why these inputs lie outside the domain (empty when inside); `references` are the oracle's
        outputs and gradients for them, checked against max_value."""
        reasons = []
        if self.max_value is not None:
            largest = max((float(t.abs().max()) for t in references if t is not None and t.numel()), default=0.0)
            if largest > self.max_value:
                reasons.append(f"exact results reach {largest:.3g} > {self.max_value:g}, beyond the dtype's range")
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


def log_span(a, chunk_elements=2 ** 20):
    """max over batch, channel and t of |sum_{r<=t} log a_r| (complex log; zeros as the dtype's tiny).
    Channels are independent: it runs on chunks of them, so its complex128 temporaries stay small
    whatever the size of `a` (B, L, D)."""
    if not a.numel():
        return 0.0
    real = a.real.dtype if a.is_complex() else a.dtype
    step = max(1, chunk_elements // (a.shape[0] * a.shape[1]))
    span = 0.0
    for start in range(0, a.shape[2], step):
        part = a.detach()[..., start:start + step]  # (b l chunk)
        magnitude = part.abs().to(torch.float64).clamp_min(torch.finfo(real).tiny)
        log_a = torch.complex(magnitude.log(), part.angle().to(torch.float64))
        span = max(span, float(torch.cumsum(log_a, dim=1).abs().max()))
    return span


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

# Half precision (bfloat16 unit roundoff u = 2^-8, float16 u = 2^-11), measured over the accuracy
# sweep's regimes for L <= 4099. Backends doing their arithmetic in the input dtype round every
# step: a loop (sequential, jax_scan) reached 0.036 (bf16) and 0.0051 (fp16); a tree (assoc,
# chunked, torch_hop, jax_assoc) 0.021 in bf16. In float16 the trees form gate products that sink
# into its subnormals (0.148 with signed gates, L = 4099), so they compute float16 in float32
# (impls/scan/interface.py) and round once, like `triton`: at most u relative to |h| (measured
# 0.0039 and 0.00049), whatever L. float16 outputs below 6.1e-5 are subnormal, with an absolute
# spacing of 2^-24 that no relative tolerance covers: hence the atol. Gradients are the same
# recurrence run backwards and get the forward's rtol (measured: loop 0.015 bf16, 0.0019 fp16;
# tree 0.011 bf16). float16 holds no value above 65504: inputs whose exact outputs or gradients
# exceed it are outside every fp16 domain.
_HALF_DOMAIN = Domain(max_len=4099, note="measured up to L = 4099; rounding every step grows with L")
_FP16_DOMAIN = replace(_HALF_DOMAIN, max_value=65504.0)
_HALF_FLOAT32_ACCUMULATION = {
    torch.bfloat16: Tolerance(rtol=8e-3, atol=1e-30, grad_rtol=8e-3, domain=_EXACT_DOMAIN),
    torch.float16: Tolerance(rtol=1e-3, atol=2 ** -24, grad_rtol=1e-3, domain=replace(_EXACT_DOMAIN, max_value=65504.0))}
_HALF_LOOP = {torch.bfloat16: Tolerance(rtol=0.06, atol=1e-30, grad_rtol=0.06, domain=_HALF_DOMAIN),
              torch.float16: Tolerance(rtol=0.01, atol=2 ** -22, grad_rtol=0.01, domain=_FP16_DOMAIN)}
_HALF_TREE = {torch.bfloat16: Tolerance(rtol=0.04, atol=1e-30, grad_rtol=0.04, domain=_HALF_DOMAIN),
              torch.float16: _HALF_FLOAT32_ACCUMULATION[torch.float16]}


def _half(kind, name, tolerances):
    return {(kind, name, dtype): tol for dtype, tol in tolerances.items()}


TABLE = {
    **_half("scan", "sequential", _HALF_LOOP),
    **_half("scan", "jax_scan", _HALF_LOOP),
    **_half("scan", "assoc", _HALF_TREE),
    **_half("scan", "chunked", _HALF_TREE),
    **_half("scan", "torch_hop", _HALF_TREE),
    **_half("scan", "jax_assoc", _HALF_TREE),
    # heinsen_chunked's log-space chunk interiors in half: 0.077 (bf16) and 0.0078 (fp16), L <= 4099
    **_half("scan", "heinsen_chunked", {
        torch.bfloat16: Tolerance(rtol=0.15, atol=1e-30, grad_rtol=0.15, domain=_HALF_DOMAIN),
        torch.float16: Tolerance(rtol=0.015, atol=2 ** -22, grad_rtol=0.015, domain=_FP16_DOMAIN)}),
    **_half("scan", "triton", _HALF_FLOAT32_ACCUMULATION),
    # The GPU peers, declared from their algorithms until a GPU accuracy run measures them (README:
    # GPU): accelerated-scan scans in the input dtype (a tree, like assoc); fla's HGRN ops take
    # log a, and exp(log a) costs up to eps * |log a| a step (heinsen's error, within 128-step
    # chunks for chunk_hgrn). float64 is not taken: the kernels accumulate in float32.
    ("scan", "accelerated_scan", torch.float32): _EXACT_SINGLE,
    ("scan", "accelerated_scan_scalar", torch.float32): _EXACT_SINGLE,
    **_half("scan", "accelerated_scan", _HALF_TREE),
    **_half("scan", "accelerated_scan_scalar", _HALF_TREE),
    ("scan", "fla_hgrn", torch.float32): Tolerance(rtol=2e-4, atol=1e-30, grad_rtol=2e-4,
                                                   domain=Domain(max_log_span=1e3, note="gates a > 0 only")),
    ("scan", "fla_hgrn_recurrent", torch.float32): Tolerance(rtol=2e-5, atol=1e-30, grad_rtol=2e-5,
                                                             domain=Domain(note="gates a > 0 only")),
    **_half("scan", "fla_hgrn", _HALF_FLOAT32_ACCUMULATION),
    **_half("scan", "fla_hgrn_recurrent", _HALF_FLOAT32_ACCUMULATION),
    **_both("scan", "triton", _EXACT_SINGLE, _EXACT_DOUBLE),
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
    # Outside, the error stayed within 1.5 (float32), 1.9 (complex64) and 2.8 (float64) x eps x span
    # x scale over 1078 out-of-domain cases (4 gate regimes, L up to 4099): bound 4.
    **_both("scan", "heinsen",
            Tolerance(rtol=2e-4, atol=1e-30, grad_rtol=2e-4,
                      domain=Domain(max_log_span=1e3, span_rtol_per_eps=4.0,
                                    note="each exact-zero gate adds 87 to the span")),
            Tolerance(rtol=1e-11, atol=1e-300, grad_rtol=3e-11,
                      domain=Domain(max_log_span=1e4, span_rtol_per_eps=4.0,
                                    note="each exact-zero gate adds 708 to the span"))),
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
