"""pytest-benchmark cases: `pytest --benchmark-only --benchmark-json=bench.json`, then
`python run_bench.py import-benchmark bench.json` adds them to the records. Skipped otherwise."""
import pytest
import torch

from scanlab.harness.results.case_key import CaseKey
from scanlab.harness.run.cases import build
from scanlab.impls import scan_backends

SHAPE = dict(B=4, D=256)


@pytest.mark.parametrize("L", [1024, 4096])
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize("name", list(scan_backends()))
def test_scan(benchmark, name, mode, L):
    key = CaseKey(family="scan", backend=name, mode=mode, device="cpu", dtype="float32", L=L, N=0, **SHAPE)
    case = build(key)
    assert all(v.passed for v in case.check())  # correctness gates speed here too
    benchmark.extra_info.update(key.as_row())
    benchmark.pedantic(case.run, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("L", [1024])
@pytest.mark.parametrize("path", ["conv:direct", "conv:fft", "conv:fft_fast", "recurrent:chunked"])
def test_dss(benchmark, path, L):
    key = CaseKey(family="dss", backend=path, mode="forward", device="cpu", dtype="float32", L=L, N=64, B=2, D=64)
    case = build(key)
    assert all(v.passed for v in case.check())
    benchmark.extra_info.update(key.as_row())
    with torch.no_grad():
        benchmark.pedantic(case.run, rounds=5, warmup_rounds=1)
