"""Convolution backends against the double-double oracle (impls/conv/oracle.py)."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scanlab.harness.measure.inputs import conv_inputs
from scanlab.harness.check.verify import check_conv
from scanlab.impls import conv_backends, get_conv_backend
from scanlab.harness.check.strategies import REAL_DTYPES, kernel_decays, seeds

BACKENDS = conv_backends()
PARAMS = [pytest.param(b, d, id=f"{n}-{str(d).removeprefix('torch.')}") for n, b in BACKENDS.items() for d in REAL_DTYPES]
CONV_LENGTHS = st.one_of(st.sampled_from([1, 2, 3, 7, 97, 127, 128, 1009, 3000]), st.integers(1, 1500))


@pytest.mark.parametrize("backend,dtype", PARAMS)
@given(length=CONV_LENGTHS, decay=kernel_decays(), seed=seeds(), batch=st.integers(1, 3), channels=st.integers(1, 6))
def test_agrees_with_oracle(backend, dtype, length, decay, seed, batch, channels):
    if backend.name == "direct" and length > 1500:
        length = 1500  # O(L^2): the long lengths are the FFT backends' business
    u, K = conv_inputs(batch, length, channels, dtype, decay, seed=seed)
    verdicts = check_conv(backend, u, K, gradients=length <= 600)
    assert all(v.passed for v in verdicts), verdicts


@pytest.mark.parametrize("name", list(BACKENDS))
def test_causality(name):
    u, K = conv_inputs(1, 64, 2, torch.float64)
    backend = get_conv_backend(name)
    changed = u.clone()
    changed[:, 40] += 1.0
    before, after = backend(u, K), backend(changed, K)
    assert torch.equal(before[:, :40], after[:, :40]) or (before[:, :40] - after[:, :40]).abs().max() < 1e-14
    assert (before[:, 40:] - after[:, 40:]).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(BACKENDS))
class TestValidation:
    def test_kernel_shorter_than_input(self, name):
        with pytest.raises(ValueError, match="K is shorter than the input: K has 4 taps, u has length L = 5"):
            get_conv_backend(name)(torch.randn(1, 5, 2), torch.randn(4, 2))

    def test_channel_mismatch(self, name):
        with pytest.raises(ValueError, match=r"K must have shape \(L_K, H\) with H = 2"):
            get_conv_backend(name)(torch.randn(1, 5, 2), torch.randn(5, 3))

    def test_rank(self, name):
        with pytest.raises(ValueError, match=r"u must have shape \(B, L, H\)"):
            get_conv_backend(name)(torch.randn(5, 2), torch.randn(5, 2))

    def test_dtype_mismatch(self, name):
        with pytest.raises(TypeError, match="u and K must have the same dtype"):
            get_conv_backend(name)(torch.randn(1, 5, 2), torch.randn(5, 2, dtype=torch.float64))

    def test_complex_is_refused(self, name):
        with pytest.raises(TypeError, match="does not support u dtype torch.complex64"):
            get_conv_backend(name)(torch.randn(1, 5, 2, dtype=torch.complex64), torch.randn(5, 2, dtype=torch.complex64))


def test_longer_kernel_is_truncated_to_the_input():
    u, K = conv_inputs(1, 10, 2, torch.float64)
    longer = torch.cat([K, torch.randn(5, 2, dtype=torch.float64)])
    assert torch.equal(get_conv_backend("fft")(u, longer), get_conv_backend("fft")(u, K))


def test_direct_in_float64_passes_at_a_long_length():
    """The double-double oracle has no length past which it is another backend (the float64 FFT was)."""
    u, K = conv_inputs(1, 2099, 2, torch.float64, "slow")
    verdicts = check_conv(get_conv_backend("direct"), u, K, gradients=False)
    assert all(v.passed for v in verdicts), verdicts


@pytest.mark.parametrize("value", [1.0, float("nan")])  # the einsum path, and the causal sum around a NaN
def test_direct_conv_in_blocks_of_channels_equals_one_block(monkeypatch, value):
    from scanlab.impls.conv import direct

    u, K = torch.randn(2, 8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    u[0, 6, 1] = u[0, 6, 1] * value
    whole = direct.direct_conv(u, K)
    monkeypatch.setattr(direct, "TOEPLITZ_ELEMENTS", 2 * 8 * 8)  # two channels a block: blocks of 2, 2, 1
    torch.testing.assert_close(direct.direct_conv(u, K), whole, equal_nan=True)


def test_next_fast_len_is_the_smallest_seven_smooth_length():
    from scanlab.impls.conv.fft_fast import next_fast_len

    smooth = sorted(2 ** a * 3 ** b * 5 ** c * 7 ** d for a in range(14) for b in range(9) for c in range(6)
                    for d in range(5) if 2 ** a * 3 ** b * 5 ** c * 7 ** d <= 9000)
    for n in range(1, 8193):
        assert next_fast_len(n) == next(m for m in smooth if m >= n), n


def test_direct_keeps_a_tap_at_the_smallest_normal():
    """Only subnormal taps are flushed: one exactly at float64's smallest normal still counts."""
    from scanlab.impls import conv_oracle

    tiny = torch.finfo(torch.float64).tiny
    u = torch.zeros(1, 3, 1, dtype=torch.float64)
    u[0, 0, 0] = 1e300
    K = torch.tensor([[tiny], [0.0], [tiny]], dtype=torch.float64)
    y = get_conv_backend("direct")(u, K)
    torch.testing.assert_close(y, conv_oracle(u, K), rtol=1e-12, atol=0)
    assert y[0, 2, 0] == tiny * 1e300
