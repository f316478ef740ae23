"""The scan properties every backend must have, as functions of (backend, dtype, Hypothesis data):
scanlab's own tests (tests/test_scan_agreement.py) and the pytest plugin's suite for a user's
backend (harness/agreement_suite.py) run the same ones.

Each draws its inputs, checks one property against the double-double oracle within the tolerance
the backend declared, on its declared domain, and fails with a message that says which quantity,
how far off, and on what inputs.
"""
import pytest
import torch
from hypothesis import note
from hypothesis import strategies as st

from ...impls import oracle
from ...impls.tolerances import log_span

from ..measure.inputs import scan_inputs
from .strategies import INTERPRETED_BACKENDS, JIT_BACKENDS, scan_input_specs, sequence_lengths
from .verify import check_scan, judge_elementwise, judge_output, scan_references


def is_jit(backend):
    """True for JIT backends (shapes from a small fixed set), "interpreted" for interpreted Triton kernels."""
    return "interpreted" if backend.name in INTERPRETED_BACKENDS else backend.name in JIT_BACKENDS


def _wide(dtype):
    return torch.complex128 if dtype.is_complex else torch.float64


def _where(a, kv, h0, spec=None):
    shape = "B={}, L={}, D={}".format(*a.shape)
    drawn = f", gates {spec['gate_regime']}, kv {spec['kv_regime']}, seed {spec['seed']}" if spec else ""
    return f"{shape}{drawn}, h0 {'given' if h0 is not None else 'none'}"


def _failed(backend, dtype, verdicts, where):
    bad = [v for v in verdicts if not v.passed]
    parts = [f"{v.quantity} is {v.worst_ratio:.3g}x its declared tolerance (max abs error {v.max_abs_err:.3g})"
             for v in bad]
    return f"{backend.name} {str(dtype).removeprefix('torch.')}: " + "; ".join(parts) + f" at {where}"


def in_domain(backend, a, references=()):
    outside = backend.tolerance(a.dtype).domain.violations(a, references=references)
    note(f"outside the declared domain: {outside}" if outside else "inside the declared domain")
    return not outside


def _assert_declared(backend, a, kv, h0, verdict, outputs):
    """Within tolerance on the backend's domain; outside it, finite (inaccurate is declared, NaN never is)."""
    if in_domain(backend, a):
        assert verdict.passed, _failed(backend, a.dtype, [verdict], _where(a, kv, h0))
    else:
        assert all(torch.isfinite(t).all() for t in outputs), f"{backend.name}: non-finite output outside its domain"


def within_span_bound(backend, a, kv, h0, factor):
    """|h - ref| <= factor * eps * log_span(a) * scale, elementwise: the bound heinsen keeps beyond its domain."""
    ref, _ = oracle(a, kv, h0)
    scale, _ = oracle(a.abs(), kv.abs(), None if h0 is None else h0.abs())
    eps = torch.finfo(a.real.dtype if a.is_complex() else a.dtype).eps
    note(f"log span {log_span(a):.3g}")
    return judge_elementwise("h", backend(a, kv, h0)[0], ref, scale, factor * eps * log_span(a),
                             backend.tolerance(a.dtype).atol)


def outputs_agree_with_oracle(backend, dtype, data):
    spec = data.draw(scan_input_specs(jit=is_jit(backend)), label="inputs")
    a, kv, h0 = scan_inputs(dtype=dtype, **spec)
    verdicts = check_scan(backend, a, kv, h0, gradients=False)
    domain = backend.tolerance(dtype).domain
    if in_domain(backend, a, scan_references(a, kv, h0, gradients=False)):
        assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts, _where(a, kv, h0, spec))
    elif domain.span_rtol_per_eps:  # outside its log span: within the error bound measured there
        verdict = within_span_bound(backend, a, kv, h0, domain.span_rtol_per_eps)
        assert verdict.passed, _failed(backend, dtype, [verdict], _where(a, kv, h0, spec) + " (its log-span bound)")
    elif not domain.max_value:  # outside its domain: inaccurate maybe, non-finite never
        h, h_last = backend(a, kv, h0)
        assert torch.isfinite(h).all() and torch.isfinite(h_last).all(), \
            f"{backend.name}: non-finite output outside its domain at {_where(a, kv, h0, spec)}"


def gradients_agree_with_oracle(backend, dtype, data):
    spec = data.draw(scan_input_specs(jit=is_jit(backend), max_len=600), label="inputs")
    a, kv, h0 = scan_inputs(dtype=dtype, **spec)
    verdicts = check_scan(backend, a, kv, h0, gradients=True)
    assert len(verdicts) == 4 + (h0 is not None), [v.quantity for v in verdicts]
    if in_domain(backend, a, scan_references(a, kv, h0)):
        assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts, _where(a, kv, h0, spec))
    elif not backend.tolerance(dtype).domain.max_value:  # beyond a dtype's range, inf is the right answer
        assert all(v.max_abs_err < float("inf") for v in verdicts), _failed(backend, dtype, verdicts, _where(a, kv, h0))


def continuation_at_every_split(backend, dtype, data):
    """Scanning [:k] then [k:] from the returned state equals one scan, for every k in 0..L."""
    # 2(L+1) calls an example: interpreted kernels stop at L = 17, which still crosses a 16-step tile
    max_len = 17 if is_jit(backend) == "interpreted" else 40
    spec = data.draw(scan_input_specs(jit=is_jit(backend), max_len=max_len), label="inputs")
    a, kv, h0 = scan_inputs(dtype=dtype, **spec)
    tol = backend.tolerance(dtype)
    ref, ref_last = oracle(a, kv, h0)
    scale, scale_last = oracle(a.abs(), kv.abs(), None if h0 is None else h0.abs())
    for k in range(a.shape[1] + 1):
        head, state = backend(a[:, :k], kv[:, :k], h0)
        tail, last = backend(a[:, k:], kv[:, k:], state)
        verdicts = [judge_output("h", torch.cat([head, tail], dim=1), ref, scale, tol),
                    judge_output("h_last", last, ref_last, scale_last, tol)]
        assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts,
                                                        _where(a, kv, h0, spec) + f", continued from step {k}")


def unit_gates_give_cumulative_sum(backend, dtype, data):
    length = data.draw(sequence_lengths(jit=is_jit(backend)), label="L")
    _, kv, h0 = scan_inputs(2, length, 3, dtype, seed=data.draw(st.integers(0, 2 ** 20), label="seed"))
    a = torch.ones_like(kv)
    wide = kv.to(_wide(dtype))
    expected = torch.cumsum(wide, dim=1) + h0[:, None].to(wide.dtype)
    scale = torch.cumsum(wide.abs(), dim=1) + h0[:, None].abs().to(torch.float64)
    h, _ = backend(a, kv, h0)
    _assert_declared(backend, a, kv, h0, judge_output("h", h, expected, scale, backend.tolerance(dtype)), [h])


def zero_gates_give_inputs(backend, dtype, data):
    length = data.draw(sequence_lengths(jit=is_jit(backend)), label="L")
    _, kv, h0 = scan_inputs(2, length, 3, dtype, kv_regime="mixed", seed=data.draw(st.integers(0, 2 ** 20), label="seed"))
    a = torch.zeros_like(kv)
    h, _ = backend(a, kv, h0)
    wide = kv.to(_wide(dtype))
    _assert_declared(backend, a, kv, h0, judge_output("h", h, wide, wide.abs(), backend.tolerance(dtype)), [h])


def linear_in_kv(backend, dtype, data):
    spec = data.draw(scan_input_specs(jit=is_jit(backend), max_len=1000), label="inputs")
    a, x, _ = scan_inputs(dtype=dtype, **spec)
    _, y, _ = scan_inputs(dtype=dtype, **{**spec, "seed": spec["seed"] + 1})
    c = data.draw(st.sampled_from([-2.0, 0.5, 3.0]), label="c")
    if not in_domain(backend, a):
        return
    tol = backend.tolerance(dtype)
    combined, _ = backend(a, x + c * y)
    parts = backend(a, x)[0].to(_wide(dtype)) + c * backend(a, y)[0]
    scale, _ = oracle(a.abs(), (x.abs() + abs(c) * y.abs()))
    # both sides carry their own rounding error, hence twice the declared tolerance
    verdict = judge_elementwise("h", combined, parts, scale, 2 * tol.rtol, tol.atol)
    assert verdict.passed, _failed(backend, dtype, [verdict], _where(a, x, None, spec) + f", kv = x + {c} y")


def _same_bits(x, y):
    return x.shape == y.shape and x.dtype == y.dtype and bool(
        (x.detach().cpu().contiguous().view(torch.uint8) == y.detach().cpu().contiguous().view(torch.uint8)).all())


def _kernel_inputs(backend, dtype, data):
    """Inputs for the kernel's own properties: L >= 1, and zero gates a quarter of the time (h = kv
    there: the case a kernel is most tempted to answer with its input)."""
    spec = data.draw(scan_input_specs(jit=is_jit(backend), max_len=200), label="inputs")
    a, kv, h0 = scan_inputs(dtype=dtype, **{**spec, "length": max(1, spec["length"])})
    if data.draw(st.integers(0, 3), label="zero gates") == 0:
        a = torch.zeros_like(a)
    return a, kv, h0, spec


def leaves_its_inputs_unchanged(backend, dtype, data):
    """The kernel reads a, kv and h0 and writes none of them: a caller's tensors are the same after the call."""
    a, kv, h0, spec = _kernel_inputs(backend, dtype, data)
    before = [t.clone() for t in (a, kv, h0) if t is not None]
    backend(a, kv, h0)
    for name, old, now in zip(("a", "kv", "h0"), before, [t for t in (a, kv, h0) if t is not None]):
        assert _same_bits(old, now), f"{backend.name} modified its input {name} at {_where(a, kv, h0, spec)}"


def repeats_itself_bitwise(backend, dtype, data):
    """Two calls on the same inputs give the same bits, unless the backend declares itself
    non-deterministic (GPU atomics); then the suite says so instead of judging."""
    if not backend.deterministic:
        pytest.skip(f"{backend.name} declares itself non-deterministic: two calls may differ in their last bits")
    a, kv, h0, spec = _kernel_inputs(backend, dtype, data)
    first, second = backend(a, kv, h0), backend(a, kv, h0)
    for name, x, y in zip(("h", "h_last"), first, second):
        assert _same_bits(x, y), f"{backend.name}: two calls gave different {name} at {_where(a, kv, h0, spec)}"


def outputs_are_new_tensors_like_the_inputs(backend, dtype, data):
    """h is (B, L, D) and h_last (B, D), both of the inputs' dtype and device, and neither shares memory
    with an input (a caller writing into an output must not change its inputs, nor the reverse)."""
    a, kv, h0, spec = _kernel_inputs(backend, dtype, data)
    h, h_last = backend(a, kv, h0)
    where = _where(a, kv, h0, spec)
    for name, out, shape in (("h", h, a.shape), ("h_last", h_last, (a.shape[0], a.shape[2]))):
        assert isinstance(out, torch.Tensor), f"{backend.name}: {name} is a {type(out).__name__}, not a tensor"
        assert out.dtype == a.dtype, f"{backend.name}: {name} is {out.dtype}, the inputs {a.dtype}, at {where}"
        assert out.device == a.device, f"{backend.name}: {name} is on {out.device}, the inputs on {a.device}"
        assert tuple(out.shape) == tuple(shape), f"{backend.name}: {name} is {tuple(out.shape)}, not {tuple(shape)}"
        for source_name, source in (("a", a), ("kv", kv), ("h0", h0)):
            if source is not None and out.numel() and source.numel():
                shared = out.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()
                assert not shared, f"{backend.name}: {name} is a view of the input {source_name} at {where}"


KERNEL_PROPERTIES = (leaves_its_inputs_unchanged, repeats_itself_bitwise, outputs_are_new_tensors_like_the_inputs)
PROPERTIES = (outputs_agree_with_oracle, gradients_agree_with_oracle, continuation_at_every_split,
              unit_gates_give_cumulative_sum, zero_gates_give_inputs, linear_in_kv)
NEEDS_GRADIENTS = (gradients_agree_with_oracle,)


def check_property(check, backend, dtype, data):
    """One property on one backend and dtype, as a test: skipped where it needs a gradient the
    backend does not declare."""
    if check in NEEDS_GRADIENTS and not backend.differentiable:
        pytest.skip(f"{backend.name} declares no gradient")
    check(backend, dtype, data)
