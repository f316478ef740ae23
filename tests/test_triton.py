"""The `triton` backend's kernels, on the GPU when there is one, else under the Triton interpreter
(tests/triton_interpreter.py): output, final state and every gradient against the float64 oracle,
across tile and chunk edges, always with odd lengths; the plan; the CPU-only declaration."""
import pytest
import torch

from scanlab.harness.results.case_key import CaseKey
from scanlab.harness.measure.inputs import scan_inputs
from scanlab.harness.run.perf import layout_path_row
from scanlab.harness.check.verify import judge_normwise, judge_output
from scanlab.impls import layouts, oracle
from scanlab.impls.scan import triton as triton_backend

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_backend.interpreted():
    pytest.skip("no GPU and TRITON_INTERPRET is not set", allow_module_level=True)

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# (B, L, D, chunk_len, block_t): one tile; several tiles; several chunks of several tiles; a last
# chunk shorter than a tile; more channels than one block of channels
SHAPES = [(2, 7, 3, None, None), (2, 37, 5, None, 8), (3, 101, 9, 32, 8), (1, 67, 2, 16, 16), (2, 45, 40, 16, 4)]


def _reference(a, kv, h0, g, g_last, **layout):
    leaves = [t.to(torch.float64).requires_grad_() for t in (a, kv, h0)]
    h, h_last = oracle(*leaves, **layout)
    grads = torch.autograd.grad((h, h_last), leaves, (g, g_last))
    scale, scale_last = oracle(*(t.abs() for t in leaves), **layout)
    return h.detach(), h_last.detach(), grads, scale, scale_last


def _check_against_oracle(dtype, batch, length, channels, rows=None, **options):
    """Output, final state and every gradient of triton_scan(**options) against the oracle: `rows`
    states in h0 and h_last (B, or N packed sequences)."""
    rows = batch if rows is None else rows
    a, kv, h0 = scan_inputs(batch, length, channels, dtype, "signed", "mixed", seed=length, device=DEVICE)
    gen = torch.Generator().manual_seed(0)
    if rows != batch:
        h0 = torch.randn(rows, channels, generator=gen, dtype=torch.float64).to(dtype).to(DEVICE)
    tol = triton_backend.load().tolerance(dtype)
    g = torch.randn(batch, length, channels, generator=gen, dtype=torch.float64).to(dtype).double()
    g_last = torch.randn(rows, channels, generator=gen, dtype=torch.float64).to(dtype).double()
    inputs = [t.clone().requires_grad_() for t in (a, kv, h0)]
    h, h_last = triton_backend.triton_scan(*inputs, **options)
    grads = torch.autograd.grad((h, h_last), inputs, (g.to(dtype).to(DEVICE), g_last.to(dtype).to(DEVICE)))
    layout = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in options.items()
              if k in ("reverse", "cu_seqlens")}
    ref, ref_last, ref_grads, scale, scale_last = _reference(a.cpu(), kv.cpu(), h0.cpu(), g, g_last, **layout)
    assert h.dtype == dtype and h_last.shape == (rows, channels)
    verdicts = [judge_output("h", h.cpu(), ref, scale, tol), judge_output("h_last", h_last.cpu(), ref_last, scale_last, tol)]
    verdicts += [judge_normwise(name, got.cpu(), want, tol.grad_rtol, tol.atol)
                 for name, got, want in zip(("grad_a", "grad_kv", "grad_h0"), grads, ref_grads)]
    assert all(v.passed for v in verdicts), verdicts


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(str(v) for v in s))
def test_outputs_final_state_and_every_gradient(dtype, shape):
    batch, length, channels, chunk_len, block_t = shape
    _check_against_oracle(dtype, batch, length, channels, chunk_len=chunk_len, block_t=block_t)


# Packed sequences of 8 (one whole tile of 8), 0, 1, 16 (two whole tiles) and 42 (five tiles and a
# part) steps: each sequence's tiles start at its own first step.
PACKED = torch.tensor([0, 8, 8, 9, 25, 67])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("layout", ["reverse", "varlen", "varlen+reverse"])
def test_reverse_and_packed_scans_run_in_the_kernels(dtype, layout):
    """The kernels' own reverse walk (across chunks of 32 and tiles of 8, carried right to left) and
    packed programs (an empty and a one-step sequence, ends on and off tile edges), against the
    oracle, which scans each sequence on its own."""
    reverse = "reverse" in layout
    if layout == "reverse":
        _check_against_oracle(dtype, 3, 101, 9, chunk_len=32, block_t=8, reverse=True)
    else:
        _check_against_oracle(dtype, 1, 67, 5, rows=5, block_t=8, reverse=reverse, cu_seqlens=PACKED.to(DEVICE))


def test_the_backend_hands_both_layouts_to_the_kernels_not_the_adapters(monkeypatch):
    def adapter(*args, **kwargs):
        raise AssertionError("an adapter ran")
    monkeypatch.setattr(layouts, "reverse_adapter", adapter)
    monkeypatch.setattr(layouts, "varlen_adapter", adapter)
    a, kv, _ = scan_inputs(1, 9, 2, torch.float64, seed=2, device=DEVICE)
    h0 = torch.zeros(2, 2, dtype=torch.float64, device=DEVICE)
    h, h_last = triton_backend.load()(a, kv, h0, reverse=True, cu_seqlens=torch.tensor([0, 4, 9], device=DEVICE))
    want, want_last = oracle(a.cpu(), kv.cpu(), h0.cpu(), reverse=True, cu_seqlens=torch.tensor([0, 4, 9]))
    torch.testing.assert_close(h.cpu(), want)
    torch.testing.assert_close(h_last.cpu(), want_last)


@pytest.mark.parametrize("chunk_len", [None, 16])
def test_continuing_from_the_final_state_equals_one_scan(chunk_len):
    a, kv, h0 = scan_inputs(2, 53, 3, torch.float64, "sigmoid", "normal", seed=3, device=DEVICE)
    whole, last = triton_backend.triton_scan(a, kv, h0, chunk_len=chunk_len, block_t=8)
    head, state = triton_backend.triton_scan(a[:, :20], kv[:, :20], h0, chunk_len=chunk_len, block_t=8)
    tail, end = triton_backend.triton_scan(a[:, 20:], kv[:, 20:], state, chunk_len=chunk_len, block_t=8)
    torch.testing.assert_close(torch.cat([head, tail], 1), whole, rtol=1e-14, atol=0)
    torch.testing.assert_close(end, last, rtol=1e-14, atol=0)


def test_without_h0_gradients_come_for_a_and_kv_only():
    a, kv, _ = scan_inputs(1, 21, 2, torch.float64, seed=1, with_h0=False, device=DEVICE)
    leaves = [t.clone().requires_grad_() for t in (a, kv)]
    h, _ = triton_backend.scan(*leaves)
    ga, gkv = torch.autograd.grad(h.sum(), leaves)
    wide = [t.cpu().clone().requires_grad_() for t in (a, kv)]
    ra, rkv = torch.autograd.grad(oracle(*wide)[0].sum(), wide)
    torch.testing.assert_close(ga.cpu(), ra, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gkv.cpu(), rkv, rtol=1e-12, atol=1e-12)


def test_gradcheck_across_chunks():
    a, kv, h0 = scan_inputs(1, 19, 2, torch.float64, "signed", "normal", seed=5, device=DEVICE)
    run = lambda *t: triton_backend.triton_scan(*t, chunk_len=8, block_t=4)
    inputs = tuple(t.clone().requires_grad_() for t in (a, kv, h0))
    assert torch.autograd.gradcheck(run, inputs, fast_mode=True)  # every column: 40 s interpreted


def test_chunks_only_when_programs_leave_multiprocessors_idle(monkeypatch):
    monkeypatch.setattr(triton_backend, "_sm_count", lambda device: 132)
    device = torch.device("cuda")
    many = triton_backend.plan(8, 65536, 1536, device)  # 8 * 48 = 384 programs < 528 wanted
    assert many.chunks(65536) == 2
    wide = triton_backend.plan(32, 65536, 1536, device)  # 1536 programs: no second pass
    assert wide.chunks(65536) == 1
    narrow = triton_backend.plan(1, 65536, 32, device)
    assert narrow.chunks(65536) >= 132 and narrow.chunk_len % narrow.block_t == 0
    short = triton_backend.plan(1, 100, 32, device)  # never chunks shorter than 4 tiles
    assert short.chunks(100) == 1


def test_packs_run_in_the_kernels_unless_one_sequence_would_be_a_long_serial_walk(monkeypatch):
    monkeypatch.setattr(triton_backend, "_sm_count", lambda device: 132)
    device = torch.device("cuda")
    many_short = torch.tensor([0, *range(64, 65537, 64)])  # 1024 sequences of 64 steps
    assert triton_backend.packs_in_kernels(many_short, 65536, 256, device)
    half_in_one = torch.tensor([0, 32768, *range(33024, 65537, 256)])  # the varlen family's shape of row
    assert not triton_backend.packs_in_kernels(half_in_one, 65536, 256, device)
    # wide rows need no chunks: the dense plan walks the whole row in each program anyway
    assert triton_backend.packs_in_kernels(half_in_one, 65536, 32 * 528, device)


def test_the_perf_tables_say_which_path_each_pack_took(monkeypatch):
    """perf's `native_layout` row follows the plan, not only the declaration: the varlen family's row
    (half of L in one sequence) takes the adapter at D = 256 on a 132-SM GPU, the kernels when D fills it."""
    monkeypatch.setattr(triton_backend, "_sm_count", lambda device: 132)
    key = lambda width, layout: CaseKey(family="varlen", device="cuda", dtype="float32", mode="forward", B=1,
                                        L=4096, D=width, N=0, backend="triton", layout=layout)
    assert layout_path_row(key(256, "varlen"), "u")["note"] == "adapter"
    assert layout_path_row(key(32 * 528, "varlen"), "u")["note"] == "native"
    assert layout_path_row(key(256, "reverse"), "u")["note"] == "native"


@pytest.mark.parametrize("with_h0", [True, False], ids=["h0", "no-h0"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_pack_through_the_dense_kernels_agrees_and_keeps_a_nan_gradient_in_its_sequence(reverse, with_h0, monkeypatch):
    """The plan's other path (packs_in_kernels False): the adapter around the dense kernels, forward and
    every gradient against the oracle; a NaN in one sequence's upstream gradient, which a zero gate
    would pass to the sequence before, changes no gradient outside that sequence."""
    monkeypatch.setattr(triton_backend, "packs_in_kernels", lambda *args: False)
    adapted = []
    real = layouts.varlen_adapter
    monkeypatch.setattr(layouts, "varlen_adapter", lambda *args, **kw: adapted.append(1) or real(*args, **kw))
    cu = torch.tensor([0, 40, 50, 50, 51, 69])
    a, kv, _ = scan_inputs(1, 69, 3, torch.float64, "signed", "mixed", seed=9, device=DEVICE)
    h0 = torch.randn(5, 3, dtype=torch.float64).to(DEVICE) if with_h0 else None
    gen = torch.Generator().manual_seed(3)
    g, g_last = torch.randn(1, 69, 3, generator=gen, dtype=torch.float64), torch.randn(5, 3, generator=gen, dtype=torch.float64)

    def run(scan, g, device):
        leaves = [t.detach().cpu().to(device).requires_grad_() for t in (a, kv, h0) if t is not None]
        out = scan(*leaves, *([] if with_h0 else [None]), reverse=reverse, cu_seqlens=cu.to(device))
        return [t.cpu() for t in (*out, *torch.autograd.grad(out, leaves, (g.to(device), g_last.to(device))))]
    got, want = run(triton_backend.load(), g, DEVICE), run(oracle, g, "cpu")
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y)
    assert adapted
    poisoned = g.clone()
    poisoned[0, 45, 1] = float("nan")  # sequence 1, [40, 50)
    bad = run(triton_backend.load(), poisoned, DEVICE)
    outside = torch.ones(69, dtype=torch.bool)
    outside[40:50] = False
    for x, y in zip(bad[2:4], got[2:4]):
        torch.testing.assert_close(x[:, outside], y[:, outside])
    if with_h0:
        torch.testing.assert_close(bad[4][[0, 2, 3, 4]], got[4][[0, 2, 3, 4]])


def test_without_a_gpu_or_the_interpreter_the_backend_declares_cuda_only(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    backend = triton_backend.load()
    assert backend.devices == ("cuda",)
    assert "TRITON_INTERPRET=1" in backend.unsupported("cpu")
    assert "does not take complex64" in triton_backend.load().unsupported("cuda", torch.complex64)
