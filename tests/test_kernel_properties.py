"""The agreement suite's properties of the kernel itself (harness/check/agreement.py): it leaves its inputs
as they were, repeats itself bitwise unless it declares otherwise, and returns new tensors of the
inputs' dtype, device and shape. Each has a deliberately wrong kernel that fails it."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanlab.harness.check import agreement
from scanlab.impls import get_scan_backend
from scanlab.impls.plugins import scan_backend
from scanlab.impls.tolerances import Tolerance

PROMISE = {torch.float32: Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5)}


def _loop(a, kv, h0):
    h = torch.zeros_like(kv[:, 0]) if h0 is None else h0.clone()
    states = []
    for t in range(kv.shape[1]):
        h = a[:, t] * h + kv[:, t]
        states.append(h)
    out = torch.stack(states, 1)
    return out, out[:, -1].clone()


def _writes_its_input(a, kv, h0):
    h, last = _loop(a, kv, h0)
    kv[:, 0] = 0  # "scratch space": the caller's kv is gone
    return h, last


def _noisy(a, kv, h0):
    h, last = _loop(a, kv, h0)
    return h + torch.rand_like(h) * 1e-5 * (h.abs() + 1), last  # well above float32 rounding, zeros too


def _float64_out(a, kv, h0):
    h, last = _loop(a.double(), kv.double(), None if h0 is None else h0.double())
    return h, last


def _zero_gates_shortcut(a, kv, h0):
    if h0 is None and not a.any():  # h = kv exactly: an "optimisation" that hands back the input itself
        return kv, kv[:, -1]
    return _loop(a, kv, h0)


def _backend(name, fn, **declared):
    return scan_backend(name, fn, dtypes=(torch.float32,), tolerances=PROMISE, differentiable=False, **declared)


def _check(prop, backend, examples=40):
    # derandomized: the same examples every run (a wrong kernel must fail every time, not most times)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        prop(backend, torch.float32, data)

    run()


@pytest.mark.parametrize("prop", agreement.KERNEL_PROPERTIES, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", ["sequential", "assoc", "native"])
def test_scanlabs_kernels_have_the_kernel_properties(prop, name):
    _check(prop, get_scan_backend(name), examples=10)


@pytest.mark.parametrize("prop,wrong,message", [
    (agreement.leaves_its_inputs_unchanged, _writes_its_input, "modified its input kv"),
    (agreement.repeats_itself_bitwise, _noisy, "two calls gave different h"),
    (agreement.outputs_are_new_tensors_like_the_inputs, _float64_out, "h is torch.float64, the inputs torch.float32"),
    (agreement.outputs_are_new_tensors_like_the_inputs, _zero_gates_shortcut, "h is a view of the input kv"),
], ids=["writes-input", "noisy", "wrong-dtype", "view-of-input"])
def test_a_wrong_kernel_fails_its_property_naming_what_is_wrong(prop, wrong, message):
    with pytest.raises(AssertionError, match=message):
        _check(prop, _backend("wrong", wrong))


def test_a_declared_non_deterministic_kernel_is_not_asked_to_repeat_itself():
    with pytest.raises(pytest.skip.Exception, match="declares itself non-deterministic"):
        _check(agreement.repeats_itself_bitwise, _backend("atomics", _noisy, deterministic=False), examples=1)
