"""The judge itself: where its boundaries lie, and the magnitude scale gradients are judged against."""
import pytest
import torch

from harness.inputs import scan_inputs
from harness.verify import (_upstream, check_conv, check_scan, judge_elementwise, judged_channels, judge_normwise,
                            judge_output, scan_reference, scan_references)
from impls import get_conv_backend, get_scan_backend
from impls.backend import ScanBackend
from impls.tolerances import Tolerance


@pytest.mark.parametrize("fraction,passes", [(0.9, True), (1.1, False)])
def test_gradient_judge_boundary_is_the_larger_of_max_ref_and_the_term_scale(fraction, passes):
    ref = torch.tensor([1e-3, 2.0], dtype=torch.float64)  # the first element cancelled to near zero
    scale = torch.tensor([50.0, 2.0], dtype=torch.float64)  # sum of |terms| behind each element
    rtol = 1e-2
    out = ref + torch.tensor([fraction * rtol * 50.0, 0.0], dtype=torch.float64)
    assert judge_normwise("g", out, ref, rtol, 0.0, scale).passed is passes
    small = ref + torch.tensor([fraction * rtol * 2.0, fraction * rtol * 2.0], dtype=torch.float64)
    assert judge_normwise("g", small, ref, rtol, 0.0, scale).passed is passes  # max|ref| still counts
    assert not judge_normwise("g", out, ref, rtol, 0.0).passed  # without the scale: max|ref| = 2 only


def test_gradient_scales_are_the_sums_of_magnitudes_of_the_terms():
    """For h0 (one channel): dL/dh0 = sum_t g_t prod_{r<=t} a_r + g_last prod_r a_r, term by term."""
    a, kv, h0 = scan_inputs(1, 9, 1, torch.float64, gate_regime="signed", kv_regime="normal", seed=3)
    _, _, ref, ref_last, ref_grads, grad_scales = scan_reference(a, kv, h0, True, seed=1234)
    g, g_last = _upstream(ref, 1234, a.dtype)[0, :, 0], _upstream(ref_last, 1235, a.dtype)[0, 0]
    prods = a[0, :, 0].cumprod(0)
    terms = torch.cat([g * prods, (g_last * prods[-1])[None]])
    torch.testing.assert_close(ref_grads[2][0, 0], terms.sum())
    torch.testing.assert_close(grad_scales[2][0, 0], terms.abs().sum())
    assert grad_scales[2][0, 0] > 2 * terms.sum().abs()  # the case the scale exists for: cancellation


def test_a_cancelling_gradient_does_not_fail_the_exact_loop():
    """Found by Hypothesis: long-memory gates, L = 127, B = D = 1; every backend, the float32 loop
    included, missed dL/dh0 by > 1x grad_rtol * |dL/dh0| before the scale."""
    a, kv, h0 = scan_inputs(1, 127, 1, torch.float32, gate_regime="long_memory", kv_regime="mixed", seed=1212)
    verdicts = check_scan(get_scan_backend("sequential"), a, kv, h0)
    assert all(v.passed for v in verdicts), verdicts


@pytest.mark.parametrize("norm", ["elementwise", "normwise"])
@pytest.mark.parametrize("fraction,passes", [(0.9, True), (1.1, False)])
def test_output_judge_boundary_for_each_norm(norm, fraction, passes):
    tol = Tolerance(rtol=1e-3, atol=1e-6, grad_rtol=1e-3, norm=norm)
    ref = torch.tensor([1.0, -4.0, 0.5], dtype=torch.float64)
    scale = torch.tensor([2.0, 8.0, 0.5], dtype=torch.float64)
    # the allowed error at the last element: from its own scale, or from the largest scale (normwise)
    allowed = tol.atol + tol.rtol * (0.5 if norm == "elementwise" else 8.0)
    out = ref + torch.tensor([0.0, 0.0, fraction * allowed], dtype=torch.float64)
    verdict = judge_output("h", out, ref, scale, tol)
    assert verdict.passed is passes
    assert verdict.worst_ratio == pytest.approx(fraction)


def test_an_error_exactly_at_the_tolerance_passes():
    ref, out = torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.5], dtype=torch.float64)
    verdict = judge_elementwise("h", out, ref, torch.ones(1, dtype=torch.float64), 0.5, 0.0)
    assert verdict.worst_ratio == 1.0 and verdict.passed


def test_an_empty_output_passes_with_zero_error():
    empty = torch.zeros(2, 0, 3, dtype=torch.float64)
    verdict = judge_normwise("h", empty, empty, 1e-6, 0.0)
    assert (verdict.max_abs_err, verdict.rms_rel_err, verdict.worst_ratio, verdict.passed) == (0.0, 0.0, 0.0, True)


def test_rms_relative_error_on_known_numbers():
    ref = torch.tensor([3.0, 4.0], dtype=torch.float64)  # norm 5
    out = ref + torch.tensor([0.3, 0.4], dtype=torch.float64)  # error norm 0.5
    assert judge_normwise("h", out, ref, 1.0, 0.0).rms_rel_err == pytest.approx(0.1)
    zero = torch.zeros(2, dtype=torch.float64)  # no norm to divide by: the largest error itself
    assert judge_normwise("h", torch.tensor([0.0, 0.25]), zero, 1.0, 1.0).rms_rel_err == 0.25


def test_a_nonfinite_output_fails_with_infinite_error():
    verdict = judge_normwise("h", torch.tensor([float("nan"), 1.0]), torch.ones(2, dtype=torch.float64), 1.0, 1.0)
    assert verdict.max_abs_err == float("inf") and not verdict.passed


def test_the_upstream_gradient_is_rounded_to_the_dtype_it_is_delivered_in():
    like = torch.zeros(50, dtype=torch.float64)
    delivered = _upstream(like, 3, torch.bfloat16)
    assert delivered.dtype == torch.float64 and torch.equal(delivered, delivered.to(torch.bfloat16).double())
    exact = _upstream(like, 3)
    assert not torch.equal(exact, exact.to(torch.bfloat16).double())


def test_checks_judge_gradients_by_default_and_name_each():
    a, kv, h0 = scan_inputs(1, 9, 2, torch.float32, seed=1)
    assert [v.quantity for v in check_scan(get_scan_backend("assoc"), a, kv, h0)] == \
        ["h", "h_last", "grad_a", "grad_kv", "grad_h0"]
    assert [v.quantity for v in check_scan(get_scan_backend("assoc"), a, kv)] == ["h", "h_last", "grad_a", "grad_kv"]
    assert len(scan_references(a, kv)) == 4  # h, h_last and the two gradients
    u, K = torch.randn(1, 9, 2), torch.randn(12, 2)  # a longer kernel is cut to the input
    assert [v.quantity for v in check_conv(get_conv_backend("fft"), u, K)] == ["y", "grad_u", "grad_K"]


def test_a_backend_without_gradients_is_judged_on_outputs_only():
    sequential = get_scan_backend("sequential")
    frozen = ScanBackend(name="sequential", kind="scan", fn=sequential.fn, dtypes=sequential.dtypes,
                         differentiable=False)
    a, kv, _ = scan_inputs(1, 9, 2, torch.float32, seed=1)
    assert [v.quantity for v in check_scan(frozen, a, kv)] == ["h", "h_last"]


@pytest.mark.parametrize("shape,expected", [
    ((2, 8, 5), [0, 1, 2, 3, 4]),  # small: every channel
    ((0, 8, 5), [0, 1, 2, 3, 4]),
    ((1, 4096, 16), [0, 8, 15]),  # 2^25 // (4096 * 4097 / 2) = 3 channels of 0..15, 7.5 rounding to even
    ((2, 2048, 16), [0, 2, 5, 8, 10, 12, 15]),  # 2^25 // (2 * 2048 * 2049 / 2) = 7
    ((4, 2 ** 15, 9), [0]),  # one channel costs more than the budget: still one judged
    ((1, 5, 0), []),
])
def test_judged_channels_are_evenly_spaced_within_the_budget(shape, expected):
    assert judged_channels(*shape).tolist() == expected


def test_a_verdict_cannot_be_edited_after_judging():
    verdict = judge_normwise("h", torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), 1.0, 0.0)
    with pytest.raises(AttributeError):
        verdict.passed = False


def test_rms_relative_error_below_a_unit_reference_norm():
    ref = torch.tensor([0.3, 0.4], dtype=torch.float64)  # norm 0.5: relative, not the absolute max error
    out = ref + torch.tensor([0.03, 0.04], dtype=torch.float64)  # error norm 0.05
    assert judge_normwise("h", out, ref, 1.0, 0.0).rms_rel_err == pytest.approx(0.1)


def test_a_gradient_a_backend_never_forms_fails_instead_of_crashing():
    sequential = get_scan_backend("sequential")
    forgets_h0 = ScanBackend(name="sequential", kind="scan", fn=lambda a, kv, h0: sequential.fn(a, kv, None),
                             dtypes=sequential.dtypes, differentiable=True)
    a, kv, h0 = scan_inputs(1, 9, 2, torch.float64, seed=1)
    verdicts = {v.quantity: v for v in check_scan(forgets_h0, a, kv, h0)}
    assert not verdicts["grad_h0"].passed and verdicts["grad_a"].passed is False  # h0 feeds dL/da as well


@pytest.mark.parametrize("shape,expected", [
    ((2 ** 24, 1, 4), [0, 3]),  # one step per channel: 2^24 multiply-adds each, two within 2^25
    ((1, 1, 2 ** 24 + 2), 2 ** 24 + 2),  # a multiply-add each: every channel, however many
])
def test_judged_channels_at_the_budget_boundary(shape, expected):
    picked = judged_channels(*shape)
    assert (picked.tolist() if isinstance(expected, list) else len(picked)) == expected
