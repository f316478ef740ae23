"""Judging a backend against the oracle (double-double, rounded to float64), with the tolerance it
declared (impls/tolerances.py)."""
import hashlib
from dataclasses import dataclass

import torch

from ...impls import conv_oracle, oracle
from ...impls.dss import dss_error_scale, dss_oracle

# The convolution oracle's O(B H L^2) double-double sum costs ~12 ns a multiply-add here (0.4 s at the limit): beyond
# this many, a check judges evenly spaced channels (each channel of a convolution is independent).
ORACLE_MULTIPLY_ADDS = 2 ** 25
# A scan check keeps float64 copies, oracle states and gradients of what it judges. A case up to this
# many elements is judged on every lane; a larger one on evenly spaced channels holding CHECK_FRACTION
# of its elements, so that the check adds less than the case's own tensors to the peak (README: the
# check of a large case, measured). The oracle runs on chunks of ORACLE_CHUNK_ELEMENTS.
WHOLE_CHECK_ELEMENTS = 2 ** 22
CHECK_FRACTION = 1 / 32
ORACLE_CHUNK_ELEMENTS = 2 ** 20


@dataclass(frozen=True)
class Verdict:
    """One output or gradient of one case against its reference."""

    quantity: str
    max_abs_err: float
    rms_rel_err: float
    worst_ratio: float  # max error / allowed error: <= 1 passes
    passed: bool


def judge_elementwise(quantity, out, ref, scale, rtol, atol):
    """|out - ref| <= atol + rtol * scale, elementwise (outputs)."""
    ref = ref.detach()
    err = (out.detach().to(ref.dtype) - ref).abs()
    return _verdict(quantity, err, ref, (err / (atol + rtol * scale)))


def judge_output(quantity, out, ref, scale, tol):
    """An output against its reference under the tolerance's own norm (impls/tolerances.py)."""
    if tol.norm == "normwise":
        scale = scale.max().expand_as(scale) if scale.numel() else scale
    return judge_elementwise(quantity, out, ref, scale, tol.rtol, tol.atol)


def judge_normwise(quantity, out, ref, rtol, atol, scale=None):
    """|out - ref| <= atol + rtol * max(max|ref|, scale) elementwise (gradients). `scale`, where given,
    is the sum of the magnitudes of the terms each element adds up: a gradient that cancels to
    near zero is only computable to a rounding of those terms, by any algorithm (the exact float32
    loop misses a cancelling dL/dh0 by 1.1x rtol * |dL/dh0|)."""
    ref = ref.detach()
    err = (out.detach().to(ref.dtype) - ref).abs()
    size = ref.abs().max() if ref.numel() else ref.new_zeros((), dtype=err.dtype)
    allowed = atol + rtol * (size if scale is None else torch.maximum(scale, size))
    return _verdict(quantity, err, ref, err / allowed)


def _verdict(quantity, err, ref, ratio):
    if err.numel() == 0:
        return Verdict(quantity, 0.0, 0.0, 0.0, True)
    finite = bool(torch.isfinite(err).all())
    ref_norm = float(ref.abs().pow(2).sum().sqrt())
    rms_rel = float(err.pow(2).sum().sqrt()) / ref_norm if ref_norm > 0 else float(err.max())
    worst = float(ratio.max()) if finite else float("inf")
    return Verdict(quantity, float(err.max()) if finite else float("inf"), rms_rel, worst, finite and worst <= 1.0)


def _upstream(like, seed, delivered=None):
    """A random upstream gradient shaped like `like` (float64 or complex128), rounded to the dtype it
    is `delivered` to the backend in: the reference gradient must start from the same numbers,
    else a bfloat16 backend is charged for the rounding of its upstream gradient (9% on a
    cancelling dL/dh0 in bf16)."""
    return _random_upstream(like.shape, like.is_complex(), seed, delivered).to(like.device)


def _random_upstream(shape, complex_, seed, delivered=None):
    g = torch.Generator().manual_seed(seed)
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    if complex_:
        grad = torch.complex(grad, torch.randn(shape, generator=g, dtype=torch.float64))
    if delivered is not None:
        grad = grad.to(delivered).to(grad.dtype)
    return grad


def _wide(t):
    return t.detach().to(torch.complex128 if t.is_complex() else torch.float64)


def _fingerprint(*tensors):
    digest = hashlib.sha1()
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        digest.update(f"{tuple(t.shape)}{t.dtype}{t.device}".encode())
        digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy())  # hashed in place, never copied to bytes
    return digest.hexdigest()


def _spaced(channels, count):
    """`count` evenly spaced indices of `channels` (all of them when count >= channels)."""
    if not channels:
        return torch.arange(0)
    # float64: float32 steps cannot tell channels apart beyond 2^24, and unique() would merge them
    return torch.linspace(0, channels - 1, max(1, min(channels, count)), dtype=torch.float64).round().long().unique()


def scan_lanes(batch, length, channels):
    """The channels a scan check judges (in every batch row): all of them up to WHOLE_CHECK_ELEMENTS,
    else evenly spaced ones holding at most a CHECK_FRACTION of the case's elements (README: the
    check of a large case). Each (batch, channel) lane of a scan is independent of the others."""
    elements = batch * length * channels
    if elements <= WHOLE_CHECK_ELEMENTS:
        return torch.arange(channels)
    per_channel = max(1, batch * length)
    return _spaced(channels, int(elements * CHECK_FRACTION) // per_channel)


_REFERENCES = {}


def gates_seen(backend, a, cu_seqlens):
    """The gates `backend`'s own path sees, on which its declared domain is judged: with the varlen
    adapter, a zero gate at each sequence's first step (a log-space backend's log span grows by them)."""
    if cu_seqlens is None:
        return a
    from ...impls.layouts import VARLEN, boundary_gates  # here: an `ab` BASE's impls/ may predate layouts

    return a if VARLEN in backend.native_layouts else boundary_gates(a, cu_seqlens)


def layout_arguments(reverse, cu_seqlens):
    """reverse= and cu_seqlens= for a backend or the oracle, only where asked: an `impls/` older
    than them (an `ab` BASE) takes the dense call as it always did."""
    return {**({"reverse": True} if reverse else {}), **({"cu_seqlens": cu_seqlens} if cu_seqlens is not None else {})}


def _lane_chunks(channels, batch, length):
    step = max(1, ORACLE_CHUNK_ELEMENTS // max(1, batch * length))
    return [slice(start, min(channels, start + step)) for start in range(0, channels, step)]


def _reference_chunk(a, kv, h0, g, g_last, gradients, layout):
    """The oracle on some lanes: (scale, scale_last, ref, ref_last, ref_grads, grad_scales)."""
    wide = [None if t is None else _wide(t) for t in (a, kv, h0)]
    scale, scale_last = oracle(*[None if t is None else t.abs() for t in wide], **layout)
    leaves = [None if t is None else t.requires_grad_(gradients) for t in wide]
    with torch.set_grad_enabled(gradients):
        ref, ref_last = oracle(*leaves, **layout)
    if not gradients:
        return scale, scale_last, ref.detach(), ref_last.detach(), None, None
    used = [t for t in leaves if t is not None]
    ref_grads = torch.autograd.grad((ref, ref_last), used, (g, g_last), allow_unused=True, materialize_grads=True)
    magnitudes = [t.detach().abs().requires_grad_() for t in used]
    with torch.enable_grad():
        bound, bound_last = oracle(*magnitudes, *([None] * (3 - len(magnitudes))), **layout)
    grad_scales = torch.autograd.grad((bound, bound_last), magnitudes, (g.abs(), g_last.abs()), allow_unused=True,
                                      materialize_grads=True)
    return scale, scale_last, ref.detach(), ref_last.detach(), ref_grads, grad_scales


def scan_reference(a, kv, h0, gradients, seed, reverse=False, cu_seqlens=None):
    """(lanes, scale, scale_last, ref, ref_last, ref_grads, grad_scales) from the oracle on the judged
    `lanes` (scan_lanes: channels, in every batch row), run on chunks of them so that its float64
    temporaries stay small. grad_scales are the gradients of the scan of magnitudes under the
    magnitudes of the upstream gradients: elementwise, the sum of |terms| each true gradient adds up.
    `reverse`, `cu_seqlens`: the layout (impls/layouts.py), computed by the oracle directly.
    Memoised on the judged inputs' bytes: a perf group checks every backend on the same inputs, and
    the float64 loop at L = 16384 with its autograd graph costs seconds."""
    gradients = gradients and a.shape[1] > 0  # no step: no gradient
    lanes = scan_lanes(*a.shape)
    a, kv = (t.detach()[..., lanes].cpu() for t in (a, kv))  # (b l judged)
    h0 = None if h0 is None else h0.detach()[:, lanes].cpu()  # (b judged)
    layout = layout_arguments(reverse, None if cu_seqlens is None else cu_seqlens.cpu())
    key = (_fingerprint(a, kv, h0, layout.get("cu_seqlens")), gradients, seed, reverse)
    if key not in _REFERENCES:
        _REFERENCES.clear()  # one entry: the group being checked
        complex_ = a.is_complex()
        g = _random_upstream(a.shape, complex_, seed, a.dtype)
        rows = a.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1  # h_last: a state per row, or per sequence
        g_last = _random_upstream((rows, a.shape[2]), complex_, seed + 1, a.dtype)
        # contiguous chunks: torch's complex abs takes another path on strided views, an ulp apart
        chunks = [_reference_chunk(a[..., part].contiguous(), kv[..., part].contiguous(),
                                   None if h0 is None else h0[:, part].contiguous(),
                                   g[..., part].contiguous(), g_last[:, part].contiguous(), gradients, layout)
                  for part in _lane_chunks(a.shape[2], a.shape[0], a.shape[1])]
        joined = [torch.cat(parts, dim=-1) for parts in zip(*[c[:4] for c in chunks])]
        grads = [None, None]
        if gradients:
            grads = [[torch.cat(parts, dim=-1) for parts in zip(*[c[field] for c in chunks])] for field in (4, 5)]
        _REFERENCES[key] = (lanes, *joined, *grads)
    return _REFERENCES[key]


def scan_references(a, kv, h0=None, gradients=True, seed=1234, reverse=False, cu_seqlens=None):
    """The oracle's outputs and gradients on the judged lanes (memoised: free right after check_scan)."""
    _, _, _, ref, ref_last, ref_grads, _ = scan_reference(a, kv, h0, gradients, seed, reverse, cu_seqlens)
    return [ref, ref_last, *(ref_grads or ())]


def check_scan(backend, a, kv, h0=None, gradients=True, seed=1234, reverse=False, cu_seqlens=None):
    """Verdicts for h, h_last and (when asked and differentiable) every gradient, vs the oracle, on
    the judged lanes (scan_lanes). The backend runs on the whole inputs: the upstream gradient is
    zero outside the judged lanes."""
    tol = backend.tolerance(a.dtype)
    gradients = gradients and backend.differentiable and a.shape[1] > 0  # no step: no gradient to judge
    lanes, scale, scale_last, ref, ref_last, ref_grads, grad_scales = scan_reference(a, kv, h0, gradients, seed,
                                                                                     reverse, cu_seqlens)
    # no copies of the case's inputs (a large case has no room for them): fresh leaves on their storage
    inputs = [t.detach().requires_grad_(gradients) if t is not None else None for t in (a, kv, h0)]
    with torch.set_grad_enabled(gradients):
        h, h_last = backend(*inputs, **layout_arguments(reverse, cu_seqlens))
    verdicts = [judge_output("h", h.detach()[..., lanes].cpu(), ref, scale, tol),
                judge_output("h_last", h_last.detach()[:, lanes].cpu(), ref_last, scale_last, tol)]
    # the lanes a sample leaves out still answer two questions that cost no oracle: from finite inputs
    # every state is finite, and (below) no gradient reaches a lane whose upstream gradient is zero
    sampled = len(lanes) < a.shape[2] and _all_finite(a, kv, h0)
    if sampled:
        verdicts.append(_flag("h, h_last: every lane finite", _all_finite(h.detach(), h_last.detach())))
    if gradients:
        names = [n for n, t in zip(("a", "kv", "h0"), inputs) if t is not None]
        g, g_last = torch.zeros_like(h), torch.zeros_like(h_last)
        g[..., lanes] = _upstream(ref, seed, a.dtype).to(h.dtype).to(h.device)
        g_last[:, lanes] = _upstream(ref_last, seed + 1, a.dtype).to(h.dtype).to(h.device)
        grads = torch.autograd.grad((h, h_last), [t for t in inputs if t is not None], (g, g_last),
                                    allow_unused=True, materialize_grads=True)
        del h, h_last, g, g_last
        judged = [gr.detach()[..., lanes].cpu() if gr.ndim == 3 else gr.detach()[:, lanes].cpu() for gr in grads]
        if sampled:
            verdicts += [_flag(f"grad_{n}: zero on every lane not judged", _zero_outside(gr.detach(), lanes))
                         for n, gr in zip(names, grads)]
        del grads
        verdicts += [judge_normwise(f"grad_{n}", gr, rg, tol.grad_rtol, tol.atol, gs)
                     for n, gr, rg, gs in zip(names, judged, ref_grads, grad_scales)]
    return verdicts


def _channel_chunks(t):
    """t's channels (last axis) in pieces of about ORACLE_CHUNK_ELEMENTS: a pass over a large case
    without a temporary of its size."""
    step = max(1, ORACLE_CHUNK_ELEMENTS // max(1, t.numel() // max(1, t.shape[-1])))
    return [slice(start, start + step) for start in range(0, t.shape[-1], step)]


def _all_finite(*tensors):
    return all(bool(torch.isfinite(t[..., part]).all()) for t in tensors if t is not None for part in _channel_chunks(t))


def _zero_outside(t, lanes):
    """Every channel of t outside `lanes` exactly zero."""
    outside = torch.ones(t.shape[-1], dtype=torch.bool, device=t.device)
    outside[lanes.to(t.device)] = False
    return not any(bool(t[..., part][..., outside[part]].ne(0).any()) for part in _channel_chunks(t))


def _flag(quantity, holds):
    """A verdict that holds or not, with no error to measure (inf when it does not hold)."""
    bad = 0.0 if holds else float("inf")
    return Verdict(quantity, bad, bad, bad, bool(holds))


def judged_channels(batch, length, channels):
    """Indices of the channels a convolution check judges: all of them, or evenly spaced ones
    within ORACLE_MULTIPLY_ADDS."""
    per_channel = max(1, batch * length * (length + 1) // 2)
    return _spaced(channels, ORACLE_MULTIPLY_ADDS // per_channel)


def check_conv(backend, u, K, gradients=True, seed=1234):
    """Verdicts for y and (when asked) grad_u, grad_K, against conv_oracle (on judged_channels)."""
    tol = backend.tolerance(u.dtype)
    K = K[: u.shape[1]]
    picked = judged_channels(*u.shape)
    u_, K_ = (t.detach().clone().requires_grad_(gradients) for t in (u, K))
    ur, Kr = (_wide(t[..., picked].cpu()).requires_grad_(gradients) for t in (u, K))
    scale = conv_oracle(ur.detach().abs(), Kr.detach().abs())
    with torch.set_grad_enabled(gradients):
        y, ref = backend(u_, K_), conv_oracle(ur, Kr)
    verdicts = [judge_output("y", y[..., picked].cpu(), ref, scale, tol)]
    if gradients:
        g = _upstream(ref, seed)
        upstream = torch.zeros_like(y)
        upstream[..., picked] = g.to(y.dtype).to(y.device)
        grads = torch.autograd.grad(y, (u_, K_), upstream)
        ref_grads = torch.autograd.grad(ref, (ur, Kr), g)
        verdicts += [judge_normwise(f"grad_{n}", gr[..., picked].cpu(), rg, tol.grad_rtol, tol.atol)
                     for n, gr, rg in zip(("u", "K"), grads, ref_grads)]
    return verdicts


def check_dss_gradients(forward, u, Lambda, C, tol, seed=1234):
    """Verdicts for d/du, d/dLambda and d/dC of a DSS path `forward(u, Lambda, C)` against the oracle's
    (autograd through its float64 kernel), on judged_channels: the upstream gradient is zero on the
    other channels, so the path's d/dLambda sums the same channels' terms as the oracle's."""
    picked = judged_channels(*u.shape)
    leaves = [t.detach().clone().requires_grad_() for t in (u, Lambda, C)]
    y = forward(*leaves)
    g = _upstream(y.detach().cpu()[..., picked].double(), seed, u.dtype)
    upstream = torch.zeros_like(y)
    upstream[..., picked] = g.to(y.dtype).to(y.device)
    grads = torch.autograd.grad(y, leaves, upstream)
    wide = [_wide(t.cpu()) for t in (u[..., picked], Lambda, C[picked])]
    references = [t.requires_grad_() for t in wide]
    ref_grads = torch.autograd.grad(dss_oracle(*references), references, g)
    got = [grads[0].cpu()[..., picked], grads[1].cpu(), grads[2].cpu()[picked]]
    return [judge_normwise(f"grad_{name}", mine, theirs, tol.grad_rtol, tol.atol)
            for name, mine, theirs in zip(("u", "Lambda", "C"), got, ref_grads)]


def dss_reference(u, Lambda, C):
    """(channels, y_ref, scale) in float64 for a DSS forward in either mode, on judged_channels."""
    picked = judged_channels(*u.shape)
    u, C = u.detach().cpu()[..., picked], C.detach().cpu()[picked]
    Lambda = Lambda.detach().cpu()
    return picked, dss_oracle(u, Lambda, C), dss_error_scale(u, Lambda, C)
