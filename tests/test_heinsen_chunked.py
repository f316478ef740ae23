"""heinsen_chunked: log-space inside chunks, linear carry across them; exact at zero gates, accurate at any length."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scanlab.harness.measure.inputs import scan_inputs
from scanlab.harness.check.verify import check_scan
from scanlab.impls import get_scan_backend, oracle
from scanlab.impls.scan.heinsen_chunked import heinsen_chunked_states

REAL_AND_COMPLEX = [torch.float32, torch.complex64, torch.float64, torch.complex128]


@given(length=st.integers(1, 70), chunk=st.sampled_from([1, 2, 3, 8, 16, 64]), seed=st.integers(0, 2 ** 20),
       dtype=st.sampled_from([torch.float64, torch.complex128]))
def test_any_chunk_size_matches_the_loop(length, chunk, seed, dtype):
    a, kv, _ = scan_inputs(2, length, 3, dtype, "zeros", "mixed", seed=seed, with_h0=False)
    ref, _ = oracle(a, kv)
    scale, _ = oracle(a.abs(), kv.abs())
    assert ((heinsen_chunked_states(a, kv, chunk) - ref).abs() <= 1e-13 * scale).all()


@pytest.mark.parametrize("dtype", REAL_AND_COMPLEX, ids=lambda d: str(d).removeprefix("torch."))
@given(zero_at=st.integers(0, 49), seed=st.integers(0, 2 ** 20))
def test_a_zero_gate_drops_everything_before_it_exactly(dtype, zero_at, seed):
    """Inputs that differ only before an exact zero gate give identical bits from the gate on, even
    when the earlier state is near the dtype's largest value (a clamped log(0), as in `heinsen`,
    lets e^{log tiny} * that through: `heinsen` fails this test)."""
    a, kv, _ = scan_inputs(1, 50, 4, dtype, "sigmoid", "normal", seed=seed, with_h0=False)
    a[:, zero_at] = 0
    loud = kv.clone()
    loud[:, :zero_at] = 0.01 * torch.finfo(a.real.dtype).max
    quiet, shouted = heinsen_chunked_states(a, kv), heinsen_chunked_states(a, loud)
    assert torch.equal(quiet[:, zero_at:], shouted[:, zero_at:])


@pytest.mark.parametrize("dtype", REAL_AND_COMPLEX, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("gates", ["long_memory", "zeros", "signed"])
def test_long_sequences_meet_the_exact_tolerance(dtype, gates):
    """L = 16383 (odd), where `heinsen` is several times over its tolerance."""
    backend = get_scan_backend("heinsen_chunked")
    a, kv, h0 = scan_inputs(1, 16383, 3, dtype, gates, "mixed", seed=7)
    verdicts = check_scan(backend, a, kv, h0, gradients=False)
    assert all(v.passed for v in verdicts), verdicts
