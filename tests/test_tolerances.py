"""Declared tolerances mean something: none is so loose that a wrong answer would pass.

The agreement suite holds every backend within its tolerance (error / allowed <= 1); this holds
each tolerance down: on hard inputs inside the domain, the worst error reaches at least a
thousandth of what is allowed. Measured here: 0.009 to 0.45 over the scan backends at L = 1021,
0.010 to 0.43 for the interpreted Triton kernels at L = 127, 0.017 to 0.12 for the convolutions.
A tolerance a thousand times looser than any error the backend makes would let a broken change
through the accuracy report unseen.
"""
import pytest
import torch

from harness.inputs import conv_inputs, scan_inputs
from harness.verify import check_conv, check_scan
from impls import conv_backends
from scan_params import backend_dtype_params, is_jit

SLACK = 1e3


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
def test_a_scan_tolerance_is_within_a_thousandfold_of_the_error_it_allows(backend, dtype):
    worst = 0.0
    length = 127 if is_jit(backend) == "interpreted" else 1021  # lengths the strategies draw for it
    for regime in ("long_memory", "signed"):
        a, kv, h0 = scan_inputs(3, length, 1, dtype=dtype, gate_regime=regime, seed=1)
        if backend.tolerance(dtype).domain.violations(a):
            continue
        verdicts = check_scan(backend, a, kv, h0)
        assert all(v.passed for v in verdicts), verdicts
        worst = max(worst, *(v.worst_ratio for v in verdicts))
    assert worst >= 1 / SLACK, f"{backend.name} {dtype}: worst error is {worst:.2g} of its tolerance"


@pytest.mark.parametrize("name", sorted(conv_backends()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_conv_tolerance_is_within_a_thousandfold_of_the_error_it_allows(name, dtype):
    backend = conv_backends()[name]
    u, K = conv_inputs(2, 1021, 3, dtype=dtype, seed=1)
    verdicts = check_conv(backend, u, K)
    assert all(v.passed for v in verdicts), verdicts
    worst = max(v.worst_ratio for v in verdicts)
    assert worst >= 1 / SLACK, f"{name} {dtype}: worst error is {worst:.2g} of its tolerance"

