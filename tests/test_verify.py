"""The judge itself: where its boundaries lie, and the magnitude scale gradients are judged against."""
import pytest
import torch

from harness.inputs import scan_inputs
from harness.verify import _upstream, check_scan, judge_normwise, judge_output, scan_reference
from impls import get_scan_backend
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
