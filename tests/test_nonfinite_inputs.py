"""A NaN or inf at step t keeps causality: outputs before t stay what they were (forward), and the
gradient of kv from step t on stays finite (backward: it depends on later gates and upstream only).
FFT convolutions, which would spread it to every output, refuse it by name."""
import pytest
import torch

from scanlab.impls import conv_backends
from scan_params import BACKENDS

B, L, D = 2, 37, 3  # one shape: the JIT backends compile once


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["a", "kv"])
@pytest.mark.parametrize("name", list(BACKENDS))
def test_a_nonfinite_input_at_step_t_spoils_nothing_before_t(name, where, value):
    backend = BACKENDS[name]
    for t in (0, 5, 17, L - 1):
        generator = torch.Generator().manual_seed(t)
        a = torch.rand(B, L, D, dtype=torch.float64, generator=generator)
        kv = torch.randn(B, L, D, dtype=torch.float64, generator=generator)
        clean, _ = backend(a, kv)
        (a if where == "a" else kv)[:, t, 1] = value
        a.requires_grad_(), kv.requires_grad_()
        h, _ = backend(a, kv)
        # equal up to rounding: chunked and direct sum in another order once an input is not finite
        assert torch.allclose(h[:, :t], clean[:, :t], rtol=1e-13, atol=0), f"t={t}"
        if where == "kv" or t > 0:  # without h0, a_0 multiplies nothing
            assert not torch.isfinite(h[:, t, 1]).all()
        if backend.differentiable:
            _, grad_kv = torch.autograd.grad(h, [a, kv], torch.randn_like(h))
            assert torch.isfinite(grad_kv[:, t:]).all(), f"t={t}"


@pytest.mark.parametrize("name", ["fft", "fft_fast"])
@pytest.mark.parametrize("argument", ["u", "K"])
def test_an_fft_convolution_refuses_nonfinite_inputs_by_name(name, argument):
    inputs = {"u": torch.randn(2, 9, 3), "K": torch.randn(9, 3)}
    inputs[argument].view(-1)[4] = float("nan")
    with pytest.raises(ValueError, match=f"{argument} must be finite"):
        conv_backends()[name](**inputs)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_the_direct_convolution_keeps_causality(value):
    u, K = torch.randn(2, 9, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    clean = conv_backends()["direct"](u, K)
    u[1, 4, 2] = value
    y = conv_backends()["direct"](u, K)
    spoiled = torch.zeros_like(y, dtype=torch.bool)
    spoiled[1, 4:, 2] = True
    assert torch.allclose(y[~spoiled], clean[~spoiled], rtol=1e-13, atol=1e-15)
    assert not torch.isfinite(y[spoiled]).any()
