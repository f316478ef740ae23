"""The bytes a perf case must move, per mode: what GB/s and x floor divide by."""
import pytest

from harness.cases import build

SIZES = dict(device="cpu", dtype="float32", B=2, L=8, D=3, N=4)


@pytest.mark.parametrize("family,backend,forward,both", [
    # scan: a, kv in and h out (3 tensors); backward adds dh, a, h in and da, dkv out (8 in all)
    ("scan", "assoc", 3 * 48 * 4, 8 * 48 * 4),
    # conv: u in, y out, plus the (D, L) kernel K; backward adds dy in, du out, and dK out
    ("conv", "fft", 2 * 48 * 4 + 24 * 4, 4 * 48 * 4 + 2 * 24 * 4),
    # DSS: u in, y out; backward adds dy in, du out (Lambda and C are parameters of N and H*N)
    ("dss", "conv:fft", 2 * 48 * 4, 4 * 48 * 4),
])
def test_bytes_moved_by_mode(family, backend, forward, both):
    assert build(dict(SIZES, family=family, backend=backend, mode="forward")).bytes_moved == forward
    assert build(dict(SIZES, family=family, backend=backend, mode="forward+backward")).bytes_moved == both
