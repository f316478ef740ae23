"""Declared tolerances mean something: none is so loose that a wrong answer would pass.

The agreement suite holds every backend within its tolerance (error / allowed <= 1); this holds
each tolerance down: on hard inputs inside the domain, the worst error reaches at least a
thousandth of what is allowed. Measured here: 0.009 to 0.45 over the scan backends at L = 1021,
0.010 to 0.43 for the interpreted Triton kernels at L = 127, 0.017 to 0.12 for the convolutions.
A tolerance a thousand times looser than any error the backend makes would let a broken change
through the accuracy report unseen.
"""
import math

import pytest
import torch

from scanlab.harness.measure.inputs import conv_inputs, scan_inputs
from scanlab.harness.check.verify import check_conv, check_scan
from scanlab.impls import conv_backends
from scanlab.impls.tolerances import TABLE, Domain, dss_path_tolerance, log_span
from scan_params import backend_dtype_params, is_jit

SLACK = 1e3


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
def test_a_scan_tolerance_is_within_a_thousandfold_of_the_error_it_allows(backend, dtype):
    worst = {"outputs": 0.0, "gradients": 0.0 if backend.differentiable else 1.0}  # rtol and grad_rtol each
    length = 127 if is_jit(backend) == "interpreted" else 1021  # lengths the strategies draw for it
    for regime in ("long_memory", "signed"):
        a, kv, h0 = scan_inputs(3, length, 1, dtype=dtype, gate_regime=regime, seed=1)
        if backend.tolerance(dtype).domain.violations(a):
            continue
        verdicts = check_scan(backend, a, kv, h0)
        assert all(v.passed for v in verdicts), verdicts
        for v in verdicts:
            part = "gradients" if v.quantity.startswith("grad") else "outputs"
            worst[part] = max(worst[part], v.worst_ratio)
    assert min(worst.values()) >= 1 / SLACK, f"{backend.name} {dtype}: worst errors are {worst} of its tolerance"


@pytest.mark.parametrize("name", sorted(conv_backends()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_conv_tolerance_is_within_a_thousandfold_of_the_error_it_allows(name, dtype):
    backend = conv_backends()[name]
    u, K = conv_inputs(2, 1021, 3, dtype=dtype, seed=1)
    verdicts = check_conv(backend, u, K)
    assert all(v.passed for v in verdicts), verdicts
    worst = {"y": verdicts[0].worst_ratio, "gradients": max(v.worst_ratio for v in verdicts[1:])}
    assert min(worst.values()) >= 1 / SLACK, f"{name} {dtype}: worst errors are {worst} of its tolerance"


@pytest.mark.parametrize("key", sorted(TABLE, key=str))
def test_an_absolute_tolerance_only_covers_subnormal_outputs(key):
    """atol is there for outputs float16 holds as subnormals (spacing 2^-24); above its smallest
    normal number, 6.1e-5, it would pass wrong answers of ordinary size."""
    assert TABLE[key].atol < torch.finfo(torch.float16).tiny


@pytest.mark.parametrize("key", [k for k in TABLE if k[2] == torch.float16])
def test_float16_domains_end_at_the_largest_float16(key):
    assert TABLE[key].domain.max_value == torch.finfo(torch.float16).max


@pytest.mark.parametrize("key", [k for k in TABLE if TABLE[k].domain.max_len and "L = " in TABLE[k].domain.note])
def test_a_domain_holds_up_to_the_length_its_note_says_was_measured(key):
    domain = TABLE[key].domain
    assert f"L = {domain.max_len}" in domain.note


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_dss_path_promises_its_backend_tolerance_plus_the_parameter_error(dtype):
    backend = TABLE[("conv", "direct", dtype)]
    path = dss_path_tolerance(backend, dtype)
    assert path.rtol > backend.rtol and path.grad_rtol > backend.grad_rtol
    assert path.rtol < 10 * backend.rtol  # the parameters add error of the size of the backend's own, not more


class TestDomain:
    def test_lengths_up_to_max_len_are_inside(self):
        domain = Domain(max_len=5)
        a = torch.rand(1, 5, 7)  # L and D differ: the length is a's second axis
        assert domain.violations(a) == [] and domain.violations(length=5) == []
        assert domain.violations(torch.rand(1, 6, 2)) == ["L = 6 > max_len 5"]
        assert domain.violations(length=6) == ["L = 6 > max_len 5"]

    def test_results_up_to_max_value_are_inside(self):
        domain = Domain(max_value=4.0)
        assert domain.violations(references=[torch.tensor([-4.0, 1.0]), None, torch.empty(0)]) == []
        [reason] = domain.violations(references=[torch.tensor([4.5])])
        assert reason.startswith("exact results reach 4.5 > 4")

    def test_a_log_span_up_to_the_maximum_is_inside(self):
        a = torch.full((1, 4, 2), 0.5)
        span = log_span(a)
        assert span == pytest.approx(4 * math.log(2)) and log_span(torch.rand(1, 0, 3)) == 0.0
        assert Domain(max_log_span=span).violations(a) == []
        assert Domain(max_log_span=span * (1 - 1e-9)).violations(a)[0].startswith("log span 2.77 >")

    def test_a_log_span_taken_on_chunks_of_channels_finds_the_widest_channel(self):
        a = torch.full((2, 5, 7), 0.9, dtype=torch.complex128)
        a[1, :, 5] = 0.25j  # the widest: 5 log 4 in magnitude, 5 pi / 2 in angle, on the last chunk but one
        widest = abs(complex(5 * math.log(0.25), 5 * math.pi / 2))
        for chunk in (1, 10, 2 * 5 * 3, 10 ** 6):  # one channel, 1 channel (too small), 3 channels, all at once
            assert log_span(a, chunk_elements=chunk) == pytest.approx(widest, rel=1e-12)

    def test_no_bound_is_no_violation(self):
        assert Domain().violations(torch.rand(1, 10 ** 4, 1), references=[torch.tensor([1e30])]) == []
        assert Domain(max_len=3).violations() == [] and Domain(max_log_span=1.0).violations(length=9) == []

    def test_description(self):
        assert Domain().describe() == "all inputs"
        assert Domain(max_len=5, max_log_span=2.0, note="measured").describe() == \
            "L <= 5; max_t |sum log a| <= 2; measured"

    def test_domains_and_tolerances_are_frozen(self):
        with pytest.raises(AttributeError):
            Domain().max_len = 3
        with pytest.raises(AttributeError):
            TABLE[("scan", "assoc", torch.float32)].rtol = 1.0



@pytest.mark.parametrize("mode,backend", [("recurrent", ("scan", "assoc")), ("conv", ("conv", "fft"))])
def test_a_dss_path_without_a_named_backend_is_held_to_its_default_backends(mode, backend):
    from scanlab.impls.dss.forward import path_tolerance

    kind, name = backend
    expected = dss_path_tolerance(TABLE[(kind, name, torch.complex64 if kind == "scan" else torch.float32)],
                                  torch.float32)
    assert path_tolerance(torch.float32, mode) == expected
