"""torch.autograd.gradcheck in float64 (and complex128) for every differentiable scan backend."""
import pytest
import torch

from scanlab.harness.measure.inputs import scan_inputs
from scan_params import BACKENDS, DIFFERENTIABLE
from scanlab.harness.check.strategies import INTERPRETED_BACKENDS


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["float64", "complex128"])
@pytest.mark.parametrize("gate_regime", ["sigmoid", "zeros", "signed"])
@pytest.mark.parametrize("length", [1, 7])
def test_gradcheck(name, dtype, gate_regime, length):
    backend = BACKENDS[name]
    if dtype not in backend.dtypes:
        pytest.skip(f"{name} does not take {dtype}")
    a, kv, h0 = scan_inputs(2, length, 3, dtype, gate_regime=gate_regime, seed=length)
    inputs = tuple(t.requires_grad_() for t in (a, kv, h0))
    # An interpreted kernel costs ~10 ms a call; fast mode checks random vector-Jacobian products
    # instead of every column (still fails on any wrong gradient, with probability 1).
    fast = name in INTERPRETED_BACKENDS
    assert torch.autograd.gradcheck(lambda *xs: backend(*xs), inputs, eps=1e-6, atol=1e-7, fast_mode=fast)


def _steps_per_chunk():
    """Each chunked backend's chunk (or backward block) of time steps on the CPU, from its module."""
    from scanlab.impls.scan import chunked, heinsen_chunked, native

    steps = {"chunked": chunked.CHUNK["cpu"], "heinsen_chunked": heinsen_chunked.CHUNK["cpu"],
             "native": native.BACKWARD_STEPS}
    return {name: n for name, n in steps.items() if name in DIFFERENTIABLE}


@pytest.mark.parametrize("name,chunk", list(_steps_per_chunk().items()))
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["float64", "complex128"])
def test_gradcheck_across_chunk_and_block_boundaries(name, chunk, dtype):
    """L = two chunks and a part of a third (odd): the gradient crosses two chunk boundaries."""
    backend = BACKENDS[name]
    length = 2 * chunk + 5
    a, kv, h0 = scan_inputs(1, length, 2, dtype, gate_regime="zeros", seed=length)
    inputs = tuple(t.requires_grad_() for t in (a, kv, h0))
    assert torch.autograd.gradcheck(lambda *xs: backend(*xs), inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradient_at_exact_zero_gate_is_previous_state(name):
    """dh_t/da_t = h_{t-1}, also where a_t == 0: clamping log(a) (the seed's Heinsen) gives 0 there."""
    backend = BACKENDS[name]
    a = torch.tensor([[[0.5], [0.0], [0.5]]], dtype=torch.float64, requires_grad=True)
    kv = torch.tensor([[[2.0], [1.0], [1.0]]], dtype=torch.float64)
    h, _ = backend(a, kv)
    (grad_a,) = torch.autograd.grad(h[:, 1].sum(), a)
    assert grad_a[0, 1, 0].item() == pytest.approx(2.0, rel=1e-9)  # h_0 = kv_0 = 2
    assert torch.isfinite(grad_a).all()
