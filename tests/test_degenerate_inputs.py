"""Empty axes give empty results, as torch ops do; arguments a backend cannot take are named."""
import pytest
import torch

from scanlab.impls import conv_backends, dss_forward, gate_loop_operator
from scanlab.impls.dss import dss_recurrent
from scan_params import BACKENDS

EMPTY = [(0, 5, 3), (2, 5, 0), (2, 0, 3)]  # (B, L, D): no batch, no channel, no step


@pytest.mark.parametrize("shape", EMPTY, ids=str)
@pytest.mark.parametrize("name", list(BACKENDS))
def test_a_scan_over_an_empty_axis_is_empty_and_keeps_h0(name, shape):
    batch, _, channels = shape
    a, kv = torch.rand(shape), torch.randn(shape)
    h, h_last = BACKENDS[name](a, kv)
    assert h.shape == shape and h_last.shape == (batch, channels) and not h_last.any()
    h0 = torch.randn(batch, channels)
    assert torch.equal(BACKENDS[name](a, kv, h0)[1], h0)  # no step: the state is the one given


@pytest.mark.parametrize("shape", EMPTY, ids=str)
@pytest.mark.parametrize("name", list(conv_backends()))
def test_a_convolution_over_an_empty_axis_is_empty(name, shape):
    u, K = torch.randn(shape, requires_grad=True), torch.randn(shape[1], shape[2])
    y = conv_backends()[name](u, K)
    assert y.shape == shape
    y.sum().backward()  # part of the graph: a training step over an empty batch does not fail
    assert u.grad.shape == shape


@pytest.mark.parametrize("mode", ["conv", "recurrent"])
@pytest.mark.parametrize("B,L,H,N", [(0, 5, 3, 4), (2, 5, 0, 4), (2, 5, 3, 0), (2, 0, 3, 4)])
def test_dss_over_an_empty_axis_is_zero(mode, B, L, H, N):
    u = torch.randn(B, L, H)
    Lambda, C = torch.complex(-torch.rand(N), torch.randn(N)), torch.randn(H, N, dtype=torch.complex64)
    y = dss_forward(u, Lambda, C, mode)
    assert y.shape == (B, L, H) and not y.any()  # N = 0: a sum over no modes


def test_dss_recurrent_over_no_step_returns_the_state_it_was_given():
    state = torch.randn(2, 3, 4, dtype=torch.complex64)
    Lambda, C = torch.complex(-torch.rand(4), torch.randn(4)), torch.randn(3, 4, dtype=torch.complex64)
    y, out = dss_recurrent(torch.randn(2, 0, 3), Lambda, C, state=state)
    assert y.shape == (2, 0, 3) and torch.equal(out, state)


def test_a_growing_dss_kernel_is_refused_naming_lambda():
    Lambda, C = torch.tensor([0.1 + 1j, -1 + 0j]), torch.randn(3, 2, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"Lambda must have Re\(Lambda\) <= 0.*0.1"):
        dss_forward(torch.randn(1, 5, 3), Lambda, C, "conv")


def test_lambda_zero_takes_the_limit_of_the_discretisation():
    """(exp(Lambda) - 1) / Lambda -> 1: the kernel of Lambda = 0 is C at every lag, a running sum."""
    Lambda = torch.zeros(1, dtype=torch.complex128, requires_grad=True)
    C = torch.full((1, 1), 2.0 + 0j, dtype=torch.complex128)
    u = torch.randn(1, 6, 1, dtype=torch.float64)
    for mode in ("conv", "recurrent"):
        y = dss_forward(u, Lambda, C, mode)
        assert torch.allclose(y, 2 * u.cumsum(1))
        (grad,) = torch.autograd.grad(y.sum(), Lambda)
        assert torch.isfinite(torch.view_as_real(grad)).all()


@pytest.mark.parametrize("mode,argument,name", [("conv", "scan_backend", "asoc"), ("recurrent", "conv_backend", "fftt")])
def test_a_misspelt_backend_for_the_other_mode_is_refused(mode, argument, name):
    Lambda, C = torch.complex(-torch.rand(2), torch.randn(2)), torch.randn(3, 2, dtype=torch.complex64)
    with pytest.raises(ValueError, match=f"{argument} '{name}' is not a known backend"):
        dss_forward(torch.randn(1, 5, 3), Lambda, C, mode, **{argument: name})


def test_gate_loop_operator_refuses_a_q_it_would_broadcast():
    q, kv, a = torch.randn(2, 1, 3), torch.randn(2, 5, 3), torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match=r"q must have the shape of a and kv \(B, L, D\) = \(2, 5, 3\); got \(2, 1, 3\)"):
        gate_loop_operator(q, kv, a)


def test_gate_loop_operator_names_a_backend_that_is_not_one():
    x = torch.rand(1, 2, 3)
    with pytest.raises(TypeError, match="backend must be a scan backend's name or a ScanBackend, got NoneType"):
        gate_loop_operator(x, x, x, backend=None)
