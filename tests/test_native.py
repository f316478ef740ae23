"""The compiled `native` scan: its blocking over (B, D) and threads, its fused backward, its availability."""
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scanlab.harness.inputs import scan_inputs
from scanlab.impls import BackendUnavailableError, oracle
from scanlab.impls.scan import native
from scan_params import BACKENDS

pytestmark = pytest.mark.skipif("native" not in BACKENDS, reason="native is unavailable here (numba missing)")


@given(batch=st.integers(1, 9), channels=st.integers(1, 300), threads=st.integers(1, 16),
       itemsize=st.sampled_from([4, 8, 16]))
def test_channel_blocks_cover_every_channel_in_whole_cache_lines(batch, channels, threads, itemsize):
    block = native.channel_block(batch, channels, threads, itemsize)
    line = 64 // itemsize
    assert 1 <= block <= channels
    assert block == channels or block % line == 0
    blocks = -(-channels // block)
    assert (blocks - 1) * block < channels <= blocks * block  # no channel left out, no empty block


@pytest.mark.parametrize("dtype", native.load().dtypes, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("batch,channels", [(1, 100), (3, 33), (2, 257)])
def test_split_channel_blocks_agree_bitwise_at_every_thread_count(batch, channels, dtype):
    """Each channel sees the same arithmetic whichever block or thread runs it: 1, 2 and 3 threads
    (whole rows, rows split in two, in three) give identical bits, and match the oracle."""
    a, kv, h0 = scan_inputs(batch, 37, channels, dtype, "signed", "mixed", seed=channels)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(native.scan(a, kv, h0))
    finally:
        torch.set_num_threads(previous)
    for h, h_last in results[1:]:
        assert torch.equal(h, results[0][0]) and torch.equal(h_last, results[0][1])
    ref, _ = oracle(a, kv, h0)
    assert torch.allclose(results[0][0].to(ref.dtype), ref, rtol=1e-4, atol=1e-5)


def _gradients(scan, a, kv, h0, use_h, use_last):
    leaves = [t.detach().clone().requires_grad_() for t in (a, kv, h0)]
    h, h_last = scan(*leaves)
    g = torch.randn(h.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(h.dtype)
    loss = (h * g).sum().real * use_h + (h_last.abs() ** 2).sum() * use_last
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("use_h,use_last", [(1, 0), (0, 1), (1, 1)], ids=["h", "h_last", "both"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["float64", "complex128"])
def test_fused_backward_matches_the_oracle_whichever_output_is_used(dtype, use_h, use_last):
    """Only h, only h_last (the backward then gets no gradient for h at all), or both; odd L, with h0."""
    a, kv, h0 = scan_inputs(3, 41, 5, dtype, "zeros", "mixed", seed=3)
    got = _gradients(native.scan, a, kv, h0, use_h, use_last)
    want = _gradients(oracle, a, kv, h0, use_h, use_last)
    for name, g, w in zip(("a", "kv", "h0"), got, want):
        assert torch.allclose(g, w, rtol=1e-12, atol=1e-12), name


def test_conjugate_and_transposed_views_are_read_as_their_values():
    a = torch.polar(torch.rand(2, 5, 7, dtype=torch.float64), torch.randn(2, 5, 7, dtype=torch.float64))
    kv = torch.randn(2, 7, 5, dtype=torch.complex128).transpose(1, 2)
    h, _ = native.scan(a.conj(), kv)
    ref, _ = oracle(a.conj().resolve_conj(), kv.contiguous())
    assert torch.allclose(h, ref, rtol=1e-13, atol=1e-13)


def test_no_numba_means_unavailable_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    backend = native.load()
    assert not backend.available and "numba is not installed" in backend.unavailable_reason
    with pytest.raises(BackendUnavailableError, match="'native' is unavailable: numba is not installed"):
        backend(torch.rand(1, 2, 1), torch.rand(1, 2, 1))
