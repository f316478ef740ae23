"""The chunked scan is exact whatever the chunk size, with zero gates anywhere inside a chunk."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scanlab.impls.scan.chunked import chunked_states, decay_matrix
from scanlab.impls.scan.sequential import sequential_states


@given(length=st.integers(1, 70), chunk=st.sampled_from([1, 2, 3, 8, 16, 64]), seed=st.integers(0, 2 ** 20))
def test_any_chunk_size_matches_the_loop_exactly_in_float64(length, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, length, 3, generator=g, dtype=torch.float64)
    a = a.masked_fill(torch.rand(a.shape, generator=g) < 0.2, 0.0)  # zeros at every position within chunks
    kv = torch.randn(2, length, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(chunked_states(a, kv, chunk), sequential_states(a, kv), rtol=1e-13, atol=1e-15)


def test_decay_matrix_is_the_product_of_gates_between_positions():
    a = torch.tensor([0.5, 0.0, 2.0, 3.0], dtype=torch.float64)
    M = decay_matrix(a)
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 2, 1, 0], [0, 6, 3, 1]], dtype=torch.float64)
    assert torch.equal(M, expected)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_gates(dtype):
    a = torch.polar(torch.rand(1, 20, 2, dtype=torch.float64), torch.randn(1, 20, 2, dtype=torch.float64)).to(dtype)
    kv = torch.randn(1, 20, 2, dtype=dtype)
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    assert torch.allclose(chunked_states(a, kv, 8), sequential_states(a, kv), rtol=tol, atol=tol)
