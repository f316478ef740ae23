"""The chunked scan is exact whatever the chunk size, with zero gates anywhere inside a chunk, and its
packed path restarts at boundaries anywhere inside a chunk."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scanlab import get_scan_backend, oracle
from scanlab.harness.measure.inputs import scan_inputs
from scanlab.impls import layouts
from scanlab.impls.scan.assoc import segmented_states
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


def _segments(starts):
    edges = [i for i, s in enumerate(starts.tolist()) if s] + [len(starts)]
    return list(zip(edges, edges[1:]))


@given(length=st.integers(1, 70), chunk=st.sampled_from([1, 2, 3, 8]), seed=st.integers(0, 2 ** 20))
def test_packed_states_restart_at_every_boundary_wherever_it_falls_in_a_chunk(length, chunk, seed):
    """chunked_states with `starts` equals the loop run on each sequence alone, with a NaN in one
    sequence's input and an inf among its gates that reach no other sequence (masks, not zero gates)."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.rand(length, generator=g) < 0.3
    starts[0] = True
    a = torch.rand(2, length, 3, generator=g, dtype=torch.float64)
    kv = torch.randn(2, length, 3, generator=g, dtype=torch.float64)
    spans = _segments(starts)
    poisoned = spans[int(torch.randint(len(spans), (1,), generator=g))]
    kv[0, poisoned[0], 0] = float("nan")
    a[1, poisoned[1] - 1, 2] = float("inf")
    h = chunked_states(a, kv, chunk, starts)
    for s, e in spans:
        alone = sequential_states(a[:, s:e], kv[:, s:e])
        if (s, e) == poisoned:
            continue
        assert torch.isfinite(h[:, s:e]).all(), (s, e)
        assert torch.allclose(h[:, s:e], alone, rtol=1e-13, atol=1e-15), (s, e)


@given(length=st.integers(1, 40), seed=st.integers(0, 2 ** 20))
def test_the_segmented_carry_restarts_where_reset(length, seed):
    g = torch.Generator().manual_seed(seed)
    reset = torch.rand(length, generator=g) < 0.3
    a = torch.randn(2, length, 2, generator=g, dtype=torch.float64)
    h = torch.randn(2, length, 2, generator=g, dtype=torch.float64)
    got = segmented_states(a, h, reset)
    state = torch.zeros(2, 2, dtype=torch.float64)
    for t in range(length):
        state = h[:, t] if (t == 0 or reset[t]) else a[:, t] * state + h[:, t]
        assert torch.allclose(got[:, t], state, rtol=1e-13, atol=1e-14), t


# starts at every place 0..7 in a chunk of 8 (0, 3, 9, 10, 12, 21, 31, 46 mod 8 = 0, 3, 1, 2, 4, 5, 7, 6),
# an empty sequence [9, 9) and a one-step one [9, 10)
PACKED = torch.tensor([0, 3, 9, 9, 10, 12, 21, 31, 46, 61])


def _run(scan, a, kv, h0, g, g_last, reverse):
    leaves = [t.clone().requires_grad_() for t in (a, kv, h0)]
    out = scan(*leaves, reverse=reverse, cu_seqlens=PACKED)
    return [*out, *torch.autograd.grad(out, leaves, (g, g_last))]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["float64", "complex128"])
def test_packed_calls_run_the_native_path_with_every_gradient(dtype, reverse, monkeypatch):
    """backend(cu_seqlens=) never goes through the varlen adapter; h, h_last and dL/da, dL/dkv, dL/dh0 of
    sequences starting at every place in a chunk of 8 against the oracle. A NaN in one sequence's
    upstream gradient, and a NaN input and an inf gate in one sequence, change no value outside it."""
    monkeypatch.setattr(layouts, "varlen_adapter", lambda *args, **kwargs: pytest.fail("the varlen adapter ran"))
    a, kv, _ = scan_inputs(1, 61, 4, dtype, "signed", "mixed", seed=7)
    h0 = scan_inputs(len(PACKED) - 1, 1, 4, dtype, seed=8)[2]
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(dtype)
    g_last = torch.randn(h0.shape, generator=gen, dtype=torch.float64).to(dtype)
    chunked = get_scan_backend("chunked")
    clean = _run(chunked, a, kv, h0, g, g_last, reverse)
    for name, got, want in zip(("h", "h_last", "grad_a", "grad_kv", "grad_h0"), clean, _run(oracle, a, kv, h0, g, g_last, reverse)):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), name
    inside = torch.zeros(61, dtype=torch.bool)
    inside[12:21] = True  # sequence 5
    others = [i for i in range(len(PACKED) - 1) if i != 5]
    bad_g = g.clone()
    bad_g[0, 13, 1] = float("nan")
    bad_inputs = a.clone(), kv.clone()
    bad_inputs[0][0, 14, 2], bad_inputs[1][0, 17, 0] = float("inf"), float("nan")
    for poisoned in (_run(chunked, a, kv, h0, bad_g, g_last, reverse), _run(chunked, *bad_inputs, h0, g, g_last, reverse)):
        for name, got, want in zip(("h", "grad_a", "grad_kv"), poisoned[:1] + poisoned[2:4], clean[:1] + clean[2:4]):
            assert torch.allclose(got[:, ~inside], want[:, ~inside], rtol=1e-12, atol=1e-12), name
        for name, got, want in (("h_last", poisoned[1], clean[1]), ("grad_h0", poisoned[4], clean[4])):
            assert torch.allclose(got[others], want[others], rtol=1e-12, atol=1e-12), name
