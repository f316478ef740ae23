"""The compiled `native` scan: its blocking over (B, D) and threads, its fused backward, its availability."""
import sys
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from scanlab.harness.measure.inputs import scan_inputs
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch,channels", [(1, 1), (1, 64), (3, 63), (8, 512), (64, 4097)])
def test_a_decode_step_gives_the_kernels_bits_and_gradients_at_every_thread_count(batch, channels, dtype, monkeypatch):
    """decode_step (one torch.addcmul) against the kernel on the same step, at 1 and 2 threads; a NaN,
    an inf and a signed zero among the inputs; then scan() takes it without launching the kernel."""
    if not native._step_rounds_as_the_kernel(dtype):
        pytest.skip("this torch build's addcmul rounds twice: its decode steps take the kernel (tested below)")
    a, kv, h0 = scan_inputs(batch, 1, channels, dtype, "signed", "mixed", seed=channels)
    a[0, 0, 0], kv[-1, 0, -1], h0[0, -1] = float("nan"), float("inf"), -0.0
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            step = _gradients(native.decode_step, a, kv, h0, 1, 1), native.decode_step(a, kv, h0)
            kernel = _gradients(_through_the_kernel, a, kv, h0, 1, 1), _through_the_kernel(a, kv, h0)
            for got, want in zip((*step[0], *step[1]), (*kernel[0], *kernel[1])):
                assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0)) and torch.equal(got.isnan(), want.isnan())
    finally:
        torch.set_num_threads(previous)
    monkeypatch.setattr(native, "_kernels", lambda: pytest.fail("a step from a state launched the kernel"))
    assert torch.equal(native.scan(a, kv, h0)[0].nan_to_num(7.0), step[1][0].nan_to_num(7.0))


def _fused(x, y, z, dtype):
    """x * y + z rounded once to dtype, elementwise, by exact rational arithmetic (float32: exact, then
    to float64 and float32; the double rounding differs only on exact float32 midpoints)."""
    exact = [float(Fraction(p) * Fraction(q) + Fraction(r)) for p, q, r in zip(x.flatten().tolist(), y.flatten().tolist(), z.flatten().tolist())]
    return torch.tensor(exact, dtype=torch.float64).to(dtype).reshape(x.shape)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_the_kernel_rounds_each_step_once(dtype):
    """Forward h_t = fma(a_t, h_{t-1}, kv_t) and backward G_0 = fma(a_1, G_1, dL/dh_0), each correctly
    rounded once, not after the product and again after the sum: the kernel (not decode_step) at L = 2
    against exact rational arithmetic; the two roundings differ on some of these inputs, so a kernel
    that multiplied and added would fail."""
    a, kv, h0 = scan_inputs(2, 2, 67, dtype, "signed", "normal", seed=11)
    g = scan_inputs(2, 2, 67, dtype, "signed", "normal", seed=12)[1]
    leaves = [t.clone().requires_grad_() for t in (a, kv, h0)]
    h, h_last = _through_the_kernel(*leaves)
    grad_kv = torch.autograd.grad(h, leaves[1], g)[0]
    first = _fused(a[:, 0], h0, kv[:, 0], dtype)
    assert torch.equal(h[:, 0].detach(), first)
    assert torch.equal(h[:, 1].detach(), _fused(a[:, 1], first, kv[:, 1], dtype))
    assert torch.equal(grad_kv[:, 0], _fused(a[:, 1], g[:, 1], g[:, 0], dtype))
    assert not torch.equal(h[:, 0].detach(), torch.mul(a[:, 0], h0).add_(kv[:, 0]))
    assert not torch.equal(grad_kv[:, 0], torch.mul(a[:, 1], g[:, 1]).add_(g[:, 0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_where_addcmul_rounds_twice_a_decode_step_takes_the_kernel(dtype, monkeypatch):
    """A torch build whose addcmul multiplies and adds in two roundings: the probe finds it, and a step
    from a state gives the kernel's bits through the kernel."""
    twice = lambda kv, a, h, **kwargs: torch.mul(a, h).add_(kv)
    monkeypatch.setattr(torch, "addcmul", twice)
    native._step_rounds_as_the_kernel.cache_clear()
    try:
        assert not native._step_rounds_as_the_kernel(dtype)
        a, kv, h0 = scan_inputs(3, 1, 130, dtype, "signed", "mixed", seed=4)
        assert torch.equal(native.scan(a, kv, h0)[0], _through_the_kernel(a, kv, h0)[0])
    finally:
        native._step_rounds_as_the_kernel.cache_clear()


def _through_the_kernel(a, kv, h0):
    return native._NativeScan.apply(a, kv, h0, native._offsets(a, None), False)


# lengths around the reverse walk's blocks of BACKWARD_STEPS (16), an empty one and a single step
SEGMENTS = [0, 1, 15, 16, 17, 33, 0, 2]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex128], ids=["float32", "complex128"])
def test_packed_and_reverse_kernels_do_each_sequences_arithmetic_bitwise(dtype, reverse):
    """The kernels' own reverse and packed paths (no adapter: a reverse packed call never goes through a
    flip) give the bits of the dense forward kernel on each sequence alone, flipped where reversed:
    the same multiply-adds in the same order. h, h_last, and dL/da, dL/dkv, dL/dh0 of every sequence."""
    assert native.load().native_layouts == ("reverse", "varlen")
    cu = torch.tensor([0, *torch.tensor(SEGMENTS).cumsum(0).tolist()])
    a, kv, _ = scan_inputs(1, int(cu[-1]), 19, dtype, "signed", "mixed", seed=5)
    h0 = scan_inputs(len(SEGMENTS), 1, 19, dtype, seed=6)[2]
    got = _gradients(lambda a, kv, h0: native.scan(a, kv, h0, reverse=reverse, cu_seqlens=cu), a, kv, h0, 1, 1)
    h, h_last = native.scan(a, kv, h0, reverse=reverse, cu_seqlens=cu)
    flip = (lambda t: t.flip(1)) if reverse else (lambda t: t)
    for i, (s, e) in enumerate(zip(cu.tolist(), cu[1:].tolist())):
        if e == s:
            assert torch.equal(h_last[i], h0[i])
            continue
        one = lambda a_i, kv_i, h0_i: [flip(t) if t.ndim == 3 else t for t in _through_the_kernel(flip(a_i), flip(kv_i), h0_i)]
        h_i, last_i = one(a[:, s:e], kv[:, s:e], h0[i:i + 1])
        assert torch.equal(h[:, s:e], h_i) and torch.equal(h_last[i], last_i[0]), f"sequence {i}"
    want = _gradients(lambda a, kv, h0: _each_alone(a, kv, h0, cu, flip), a, kv, h0, 1, 1)
    for name, g, w in zip(("a", "kv", "h0"), got, want):
        assert torch.equal(g, w), name
    ref, ref_last = oracle(a, kv, h0, reverse=reverse, cu_seqlens=cu)
    assert torch.allclose(h.to(ref.dtype), ref, rtol=1e-4, atol=1e-4) and torch.allclose(h_last.to(ref.dtype), ref_last, rtol=1e-4, atol=1e-4)


def _each_alone(a, kv, h0, cu, flip):
    """The dense kernel on each sequence (flipped where reversed), h and h_last put back together."""
    states, lasts = [], []
    for i, (s, e) in enumerate(zip(cu.tolist(), cu[1:].tolist())):
        if e == s:
            lasts.append(h0[i])
            continue
        h, h_last = _through_the_kernel(flip(a[:, s:e]), flip(kv[:, s:e]), h0[i:i + 1])  # never decode_step
        states.append(flip(h))
        lasts.append(h_last[0])
    return torch.cat(states, dim=1), torch.stack(lasts)


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
