"""Every scan backend against the double-double oracle, within the tolerance it declared, on its domain."""
import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st

from harness.inputs import scan_inputs
from harness.verify import check_scan, judge_elementwise, judge_output, scan_references
from impls import oracle
from impls.tolerances import log_span
from scan_params import BACKENDS, backend_dtype_params, is_jit
from strategies import scan_input_specs, sequence_lengths


def _in_domain(backend, a, references=()):
    outside = backend.tolerance(a.dtype).domain.violations(a, references=references)
    note(f"outside the declared domain: {outside}" if outside else "inside the declared domain")
    return not outside


def _assert_declared(backend, a, verdict, outputs):
    """Within tolerance on the backend's domain; outside it, finite (inaccurate is declared, NaN never is)."""
    if _in_domain(backend, a):
        assert verdict.passed, verdict
    else:
        assert all(torch.isfinite(t).all() for t in outputs)


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
@given(data=st.data())
def test_outputs_agree_with_oracle(backend, dtype, data):
    spec = data.draw(scan_input_specs(jit=is_jit(backend)), label="inputs")
    a, kv, h0 = scan_inputs(dtype=dtype, **spec)
    verdicts = check_scan(backend, a, kv, h0, gradients=False)
    domain = backend.tolerance(dtype).domain
    if _in_domain(backend, a, scan_references(a, kv, h0, gradients=False)):
        assert all(v.passed for v in verdicts), verdicts
    elif domain.span_rtol_per_eps:  # outside its log span: within the error bound measured there
        assert _within_span_bound(backend, a, kv, h0, domain.span_rtol_per_eps).passed
    elif not domain.max_value:  # outside its domain: inaccurate maybe, non-finite never
        h, h_last = backend(a, kv, h0)
        assert torch.isfinite(h).all() and torch.isfinite(h_last).all()


def _within_span_bound(backend, a, kv, h0, factor):
    """|h - ref| <= factor * eps * log_span(a) * scale, elementwise."""
    ref, _ = oracle(a, kv, h0)
    scale, _ = oracle(a.abs(), kv.abs(), None if h0 is None else h0.abs())
    eps = torch.finfo(a.real.dtype if a.is_complex() else a.dtype).eps
    tol = backend.tolerance(a.dtype)
    note(f"log span {log_span(a):.3g}")
    return judge_elementwise("h", backend(a, kv, h0)[0], ref, scale, factor * eps * log_span(a), tol.atol)


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
@given(data=st.data())
def test_gradients_agree_with_oracle(backend, dtype, data):
    if not backend.differentiable:
        pytest.skip(f"{backend.name} declares no gradient")
    spec = data.draw(scan_input_specs(jit=is_jit(backend), max_len=600), label="inputs")
    a, kv, h0 = scan_inputs(dtype=dtype, **spec)
    verdicts = check_scan(backend, a, kv, h0, gradients=True)
    assert len(verdicts) == 4 + (h0 is not None)
    if _in_domain(backend, a, scan_references(a, kv, h0)):
        assert all(v.passed for v in verdicts), verdicts
    elif not backend.tolerance(dtype).domain.max_value:  # beyond a dtype's range, inf is the right answer
        assert all(v.max_abs_err < float("inf") for v in verdicts), verdicts


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
@given(data=st.data())
def test_continuation_at_every_split(backend, dtype, data):
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
        joined = torch.cat([head, tail], dim=1)
        assert judge_output("h", joined, ref, scale, tol).passed, k
        assert judge_output("h_last", last, ref_last, scale_last, tol).passed, k


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
@given(data=st.data())
def test_unit_gates_give_cumulative_sum(backend, dtype, data):
    length = data.draw(sequence_lengths(jit=is_jit(backend)), label="L")
    _, kv, h0 = scan_inputs(2, length, 3, dtype, seed=data.draw(st.integers(0, 2 ** 20), label="seed"))
    a = torch.ones_like(kv)
    tol = backend.tolerance(dtype)
    wide = kv.to(torch.complex128 if dtype.is_complex else torch.float64)
    expected = torch.cumsum(wide, dim=1) + h0[:, None].to(wide.dtype)
    scale = torch.cumsum(wide.abs(), dim=1) + h0[:, None].abs().to(torch.float64)
    h, _ = backend(a, kv, h0)
    _assert_declared(backend, a, judge_output("h", h, expected, scale, tol), [h])


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
@given(data=st.data())
def test_zero_gates_give_inputs(backend, dtype, data):
    length = data.draw(sequence_lengths(jit=is_jit(backend)), label="L")
    _, kv, h0 = scan_inputs(2, length, 3, dtype, kv_regime="mixed", seed=data.draw(st.integers(0, 2 ** 20), label="seed"))
    tol = backend.tolerance(dtype)
    a = torch.zeros_like(kv)
    h, _ = backend(a, kv, h0)
    wide = kv.to(torch.complex128 if dtype.is_complex else torch.float64)
    _assert_declared(backend, a, judge_output("h", h, wide, wide.abs(), tol), [h])


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
@given(data=st.data())
def test_linear_in_kv(backend, dtype, data):
    spec = data.draw(scan_input_specs(jit=is_jit(backend), max_len=1000), label="inputs")
    a, x, _ = scan_inputs(dtype=dtype, **spec)
    _, y, _ = scan_inputs(dtype=dtype, **{**spec, "seed": spec["seed"] + 1})
    c = data.draw(st.sampled_from([-2.0, 0.5, 3.0]), label="c")
    if not _in_domain(backend, a):
        return
    tol = backend.tolerance(dtype)
    combined, _ = backend(a, x + c * y)
    parts = backend(a, x)[0].to(torch.complex128 if dtype.is_complex else torch.float64) + c * backend(a, y)[0]
    scale, _ = oracle(a.abs(), (x.abs() + abs(c) * y.abs()))
    # both sides carry their own rounding error, hence twice the declared tolerance
    assert judge_elementwise("h", combined, parts, scale, 2 * tol.rtol, tol.atol).passed


@pytest.mark.parametrize("name", [n for n in ("assoc", "chunked", "torch_hop", "jax_assoc") if n in BACKENDS])
def test_float16_trees_survive_gate_products_in_the_subnormals(name):
    """Found by the accuracy sweep: signed gates at L = 4099 made products of gates that float16
    holds only as subnormals; chunked reached 2.5x its tolerance before computing float16 in float32."""
    backend = BACKENDS[name]
    a, kv, h0 = scan_inputs(2, 4099, 8, torch.float16, gate_regime="signed", kv_regime="mixed", seed=2)
    assert not backend.tolerance(a.dtype).domain.violations(a, references=scan_references(a, kv, h0, gradients=False))
    verdicts = check_scan(backend, a, kv, h0, gradients=False)
    assert all(v.passed for v in verdicts), verdicts
