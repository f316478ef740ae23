"""The bandwidth floor (harness/measure/floor.py): what it computes and how many tensors it moves."""
import pytest
import torch

from scanlab.harness.measure.floor import floor_pass, stream_kernel


@pytest.mark.skipif(stream_kernel() is None, reason="numba missing: the floor falls back to torch")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64], ids=str)
def test_fused_pass_reads_three_and_writes_two(dtype):
    g, x, z = (torch.randn(3, 5, 7, dtype=dtype) for _ in range(3))
    p, q = torch.empty_like(g), torch.empty_like(g)
    stream_kernel()(*(t.view(-1).numpy() for t in (g, x, z, p, q)))
    assert torch.equal(p, g + x) and torch.equal(q, g * z)


@pytest.mark.parametrize("preallocated", [False, True])
def test_floor_moves_what_a_scan_must(preallocated):
    x, y = torch.rand(2, 9, 4), torch.rand(2, 9, 4)
    assert floor_pass(x, y, "forward", preallocated).tensors == 3
    both = floor_pass(x, y, "forward+backward", preallocated)
    assert both.tensors == (8 if stream_kernel() is not None else 9)
    both.run()
