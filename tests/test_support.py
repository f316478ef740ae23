"""Sweeps run only what can run here and say why not for the rest; declared limits refuse inputs
by name before a kernel runs; the GPU peers' limits; the CUDA-only parts of the harness on CPU."""
import pytest
import torch

from scanlab.harness.run import accuracy, perf
from scanlab.harness.measure.floor import copy_pass
from scanlab.harness.measure.machine import machine_info
from scanlab.harness.results.records import load_rows
from scanlab.harness.render.report import render_all
from scanlab.impls import UnsupportedInputError, get_scan_backend
from scanlab.impls.backend import ScanBackend
from scanlab.impls.scan import REGISTRY, sequential
from scanlab.impls.scan.accelerated_scan import warp_limits
from scanlab.impls.scan.fla_hgrn import positive_gates

CONFIG = {"lengths": [5], "batch": 1, "channels": 2, "dtypes": ["float32", "bfloat16"], "gate_regimes": ["sigmoid"],
          "kv_regimes": ["normal"], "gradients_max_len": 5, "backends": ["sequential", "gpu_only", "picky"]}


def _picky_limits(a, kv, h0):
    return "this kernel takes no negative inputs" if bool((kv < 0).any()) else None


@pytest.fixture
def fake_backends(monkeypatch):
    """A CUDA-only backend and one whose limits refuse negative inputs, beside the real ones."""
    backends = dict(REGISTRY.all())
    backends["gpu_only"] = ScanBackend(name="gpu_only", kind="scan", fn=sequential.scan, devices=("cuda",),
                                       device_note="a GPU kernel")
    backends["picky"] = ScanBackend(name="picky", kind="scan", fn=sequential.scan, limits=_picky_limits)
    monkeypatch.setattr(REGISTRY, "_backends", backends)
    monkeypatch.setattr("scanlab.impls.tolerances.TABLE", {
        **__import__("scanlab.impls.tolerances", fromlist=["TABLE"]).TABLE,
        ("scan", "picky", torch.float32): get_scan_backend("sequential").tolerance(torch.float32)})
    return backends


def test_a_cuda_only_backend_is_left_out_of_a_cpu_sweep_with_its_reason(fake_backends, tmp_path):
    units = [key.backend for _, key, _ in accuracy.accuracy_units(CONFIG, "cpu")]
    assert "gpu_only" not in units and "sequential" in units
    assert "gpu_only" in [key.backend for _, key, _ in accuracy.accuracy_units(CONFIG, "cuda")]
    accuracy.run_accuracy(CONFIG, "cpu", tmp_path, progress=False)
    rows = load_rows(next(tmp_path.glob("*/runs/accuracy-*.jsonl")))
    skipped = rows[rows["metric"] == "skipped"]
    assert skipped[skipped["backend"] == "gpu_only"]["note"].tolist() == ["runs on cuda only (a GPU kernel)"]
    assert not (rows[rows["metric"] == "worst_ratio"]["backend"] == "gpu_only").any()
    render_all(tmp_path)
    report = next(tmp_path.glob("*/accuracy.md")).read_text()
    assert "## Not run here" in report and "runs on cuda only (a GPU kernel)" in report


def test_perf_groups_hold_only_backends_that_run_on_the_device(fake_backends):
    config = {"lengths": [8], "batch": 1, "channels": 2, "dtypes": ["float32"], "modes": ["forward"], "backends": None}
    names = {key.backend for _, keys in perf.perf_groups("scan", config, "cpu") for key in keys}
    assert "gpu_only" not in names and "sequential" in names
    assert [r["backend"] for r in perf.scan_skips(config, "cpu") if r["backend"] == "gpu_only"] == ["gpu_only"]


def test_a_refused_input_is_an_error_naming_the_backend_and_a_skipped_accuracy_case(fake_backends, tmp_path):
    backend = fake_backends["picky"]
    with pytest.raises(UnsupportedInputError, match="'picky' cannot take these inputs: this kernel takes no negative"):
        backend(torch.rand(1, 3, 2), -torch.rand(1, 3, 2))
    accuracy.run_accuracy(dict(CONFIG, backends=["picky"]), "cpu", tmp_path, progress=False)
    rows = load_rows(next(tmp_path.glob("*/runs/accuracy-*.jsonl")))
    refused = rows[(rows["metric"] == "skipped") & (rows["dtype"] == "float32")]
    assert refused["note"].tolist() == ["this kernel takes no negative inputs"]


def test_accelerated_scan_warp_takes_power_of_two_lengths_from_32_only():
    for length, ok in [(32, True), (4096, True), (65536, True), (16, False), (100, False), (131072, False)]:
        a = torch.empty(1, length, 1)
        assert (warp_limits(a, a, None) is None) == ok, length
    assert "accelerated_scan_scalar takes any L" in warp_limits(torch.empty(1, 100, 1), None, None)


def test_fla_hgrn_refuses_gates_its_log_space_cannot_hold():
    assert positive_gates(torch.rand(1, 4, 2) + 0.1, None, None) is None
    zeros = torch.rand(1, 4, 2).index_fill(1, torch.tensor([2]), 0.0)
    assert "every a must be > 0" in positive_gates(zeros, None, None) and "2 of 8" in positive_gates(zeros, None, None)
    assert "min a = -0.5" in positive_gates(torch.full((1, 2, 1), -0.5), None, None)


def test_the_copy_floor_copies_and_counts_two_tensors():
    x = torch.randn(2, 5, 3)
    floor = copy_pass(x)
    assert floor.tensors == 2
    out = floor.run()
    assert torch.equal(out, x)


def test_machine_info_names_the_gpu_fields_even_without_a_gpu():
    info = machine_info()
    assert {"gpu", "gpu_driver", "gpu_capability", "cuda"} <= set(info)
    if not torch.cuda.is_available():
        assert info["gpu"] == info["gpu_driver"] == info["gpu_capability"] == ""
        assert info["machine_id"].startswith("cpu-")
