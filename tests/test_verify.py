"""The judge itself: where its boundaries lie, and the magnitude scale gradients are judged against."""
import pytest
import torch

from scanlab.harness.check import verify
from scanlab.harness.measure.inputs import scan_inputs
from scanlab.harness.check.verify import (_upstream, check_conv, check_scan, judge_elementwise, judged_channels, judge_normwise,
                            judge_output, scan_lanes, scan_reference, scan_references)
from scanlab.impls import get_conv_backend, get_scan_backend
from scanlab.impls.backend import ScanBackend
from scanlab.impls.tolerances import Tolerance


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
    _, _, _, ref, ref_last, ref_grads, grad_scales = scan_reference(a, kv, h0, True, seed=1234)
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


def test_a_small_scan_case_is_judged_on_every_lane_and_a_large_one_on_a_bounded_spaced_sample():
    assert scan_lanes(4, 1024, 1024).tolist() == list(range(1024))  # 2^22 elements: whole
    lanes = scan_lanes(2, 65536, 1536)  # the large case of README's bound
    assert lanes[0] == 0 and lanes[-1] == 1535 and len(lanes) == len(lanes.unique())
    judged = 2 * 65536 * len(lanes)
    assert 0 < judged <= verify.CHECK_FRACTION * 2 * 65536 * 1536
    assert len(scan_lanes(1, 2 ** 23, 3)) == 1  # one channel longer than the whole budget: still judged


@pytest.mark.parametrize("with_h0", [False, True])
def test_the_oracle_run_on_lane_chunks_gives_exactly_what_it_gives_in_one_piece(monkeypatch, with_h0):
    a, kv, h0 = scan_inputs(2, 9, 7, torch.complex128, gate_regime="signed", kv_regime="normal", seed=5,
                            with_h0=with_h0)
    whole = scan_reference(a, kv, h0, True, seed=77)
    verify._REFERENCES.clear()
    monkeypatch.setattr(verify, "ORACLE_CHUNK_ELEMENTS", 2 * 9 * 2)  # chunks of 2 channels: 4 chunks, the last of 1
    chunked = scan_reference(a, kv, h0, True, seed=77)
    flat = lambda refs: [t for part in refs[1:] for t in (part if isinstance(part, (list, tuple)) else [part])]
    assert len(flat(whole)) == len(flat(chunked)) == 4 + 2 * (3 if with_h0 else 2)
    for mine, theirs in zip(flat(chunked), flat(whole)):
        assert torch.equal(mine, theirs)


def _corrupting(lane):
    """sequential, with h off by 1% on one channel."""
    sequential = get_scan_backend("sequential")

    def scan(a, kv, h0):
        h, h_last = sequential(a, kv, h0)
        wrong = torch.ones(h.shape[-1], dtype=h.dtype)
        wrong[lane] = 1.01
        return h * wrong, h_last
    return ScanBackend(name="corrupting", kind="scan", fn=scan, declared_tolerances=(
        (torch.float64, Tolerance(1e-10, 1e-12, 1e-10)),))


def test_a_sampled_check_fails_a_wrong_judged_lane_and_judges_no_other(monkeypatch):
    monkeypatch.setattr(verify, "WHOLE_CHECK_ELEMENTS", 0)  # every case is "large"
    monkeypatch.setattr(verify, "CHECK_FRACTION", 1 / 4)
    a, kv, _ = scan_inputs(1, 16, 16, torch.float64, seed=3, with_h0=False)
    lanes = scan_lanes(1, 16, 16).tolist()
    assert 1 < len(lanes) <= 4
    judged_h = lambda lane: next(v for v in check_scan(_corrupting(lane), a, kv, gradients=False) if v.quantity == "h")
    assert not judged_h(lanes[1]).passed
    skipped = next(lane for lane in range(16) if lane not in lanes)
    assert judged_h(skipped).passed  # the stated sample: a lane outside it is not judged


def test_a_large_scan_check_adds_less_than_the_case_s_own_tensors_to_the_peak():
    """The old check widened the whole case to float64 and complex128 and kept the oracle's four
    double-double states: 8x the case's own tensors (README: the check of a large case)."""
    from scanlab.harness.measure.memory import rss_peak_above_start

    native = get_scan_backend("native")
    small, small_kv, _ = scan_inputs(1, 3, 2, torch.float32, with_h0=False)
    check_scan(native, small, small_kv, gradients=False)  # compiles and thread pools are not the check's
    a, kv, _ = scan_inputs(2, 8192, 512, torch.float32, seed=11, with_h0=False)  # 2^23 elements: sampled
    verdicts = []
    peak = rss_peak_above_start(lambda: verdicts.extend(check_scan(native, a, kv, gradients=False)))
    assert all(v.passed for v in verdicts)
    assert peak <= 3 * a.numel() * a.element_size()  # a, kv and h


@pytest.mark.parametrize("name", ["sequential", "assoc", "chunked"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_a_correct_backend_passes_a_sampled_check_gradients_included(monkeypatch, name, dtype):
    monkeypatch.setattr(verify, "WHOLE_CHECK_ELEMENTS", 0)
    monkeypatch.setattr(verify, "CHECK_FRACTION", 1 / 4)
    a, kv, h0 = scan_inputs(2, 33, 12, dtype, seed=4)
    verdicts = check_scan(get_scan_backend(name), a, kv, h0, gradients=True)
    assert all(v.passed for v in verdicts), verdicts
    assert {v.quantity for v in verdicts} >= {"h, h_last: every lane finite", "grad_a: zero on every lane not judged",
                                             "grad_h0: zero on every lane not judged"}


class _LeakyGradient(torch.autograd.Function):
    """The identity forward; backward, channel `to` also gets 1e-3 of channel 0's gradient."""

    @staticmethod
    def forward(ctx, h, to):
        ctx.to = to
        return h.clone()

    @staticmethod
    def backward(ctx, grad):
        leaked = grad.clone()
        leaked[..., ctx.to] += 1e-3 * grad[..., 0]
        return leaked, None


def test_a_sampled_check_fails_nan_on_a_lane_it_does_not_judge_and_a_gradient_that_leaks_into_one(monkeypatch):
    monkeypatch.setattr(verify, "WHOLE_CHECK_ELEMENTS", 0)
    monkeypatch.setattr(verify, "CHECK_FRACTION", 1 / 4)
    a, kv, _ = scan_inputs(1, 16, 16, torch.float64, seed=3, with_h0=False)
    lanes = scan_lanes(1, 16, 16).tolist()
    skipped = next(lane for lane in range(16) if lane not in lanes)
    sequential = get_scan_backend("sequential")

    def nan_there(a, kv, h0):
        h, h_last = sequential(a, kv, h0)
        h = h.clone()
        h[..., skipped] = float("nan")
        return h, h_last

    def leaky(a, kv, h0):
        h, h_last = sequential(a, kv, h0)
        return _LeakyGradient.apply(h, skipped), h_last  # into a lane the check does not judge
    tolerance = ((torch.float64, Tolerance(1e-10, 1e-12, 1e-10)),)
    failed = lambda fn, gradients: {v.quantity for v in check_scan(
        ScanBackend(name="wrong", kind="scan", fn=fn, declared_tolerances=tolerance), a, kv, gradients=gradients)
        if not v.passed}
    assert failed(nan_there, False) == {"h, h_last: every lane finite"}
    assert failed(leaky, True) == {"grad_a: zero on every lane not judged", "grad_kv: zero on every lane not judged"}
