"""The bytes a perf case must move, per mode: what GB/s and x floor divide by."""
import pytest
import torch

from scanlab.harness.results.case_key import CaseKey
from scanlab.harness.run import cases
from scanlab.harness.run.cases import build

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
    assert build(CaseKey(**SIZES, family=family, backend=backend, mode="forward")).bytes_moved == forward
    assert build(CaseKey(**SIZES, family=family, backend=backend, mode="forward+backward")).bytes_moved == both


LAYER = CaseKey(family="layer", device="cpu", dtype="float32", mode="forward+backward", B=2, L=33, D=8, N=8,
                backend="gate_loop:assoc")


@pytest.mark.parametrize("path", ["gate_loop:assoc", "gss:recurrent:chunked"])
def test_a_layer_backward_checks_the_input_and_every_parameter_gradient(path):
    verdicts = build(LAYER.replace(backend=path)).check()
    quantities = [v.quantity for v in verdicts]
    assert quantities[:2] == ["out", "dx"] and len(quantities) > 3
    assert all(v.passed for v in verdicts), [(v.quantity, v.worst_ratio) for v in verdicts if not v.passed]


def test_a_wrong_parameter_gradient_fails_the_backward_gate_and_not_the_forward(monkeypatch):
    real = cases._layer

    def off_by_two_percent(path, dim, modes):
        kind, layer = real(path, dim, modes)
        if path != "gate_loop:sequential":  # the reference stays right
            layer.to_qkva.weight.register_hook(lambda grad: grad * 1.02)
        return kind, layer

    monkeypatch.setattr(cases, "_layer", off_by_two_percent)
    failed = [v.quantity for v in build(LAYER).check() if not v.passed]
    assert failed == ["dto_qkva.weight"]
    assert all(v.passed for v in build(LAYER.replace(mode="forward")).check())


class _DoubledGradient(torch.autograd.Function):
    """The identity forward, twice the gradient back: a path whose outputs are right and gradients wrong."""

    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


@pytest.mark.parametrize("backend", ["conv:fft", "recurrent:chunked"])
def test_a_dss_forward_backward_case_checks_every_gradient_before_its_time_counts(backend, monkeypatch):
    key = CaseKey(family="dss", device="cpu", dtype="float32", mode="forward+backward", B=1, L=65, D=4, N=8,
                  backend=backend)
    verdicts = cases.build(key).check()
    assert [v.quantity for v in verdicts] == ["y", "grad_u", "grad_Lambda", "grad_C"] and all(v.passed for v in verdicts)
    right = cases.dss_forward
    monkeypatch.setattr(cases, "dss_forward", lambda *args, **kwargs: _DoubledGradient.apply(right(*args, **kwargs)))
    verdicts = cases.build(key).check()
    assert verdicts[0].passed and not any(v.passed for v in verdicts[1:])


@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_a_timed_call_runs_the_kernel_alone_its_limits_read_once_per_case(monkeypatch, mode):
    """fla_hgrn's declared limit reads every gate ((a > 0).all() and a host sync): it was timed with
    the kernel on every call."""
    from scanlab.impls.backend import ScanBackend

    calls = {"limits": 0, "kernel": 0}
    sequential = cases.get_scan_backend("sequential")

    def limits(a, kv, h0):
        calls["limits"] += 1
        return None

    def kernel(a, kv, h0):
        calls["kernel"] += 1
        return sequential.fn(a, kv, h0)
    counted = ScanBackend(name="counted", kind="scan", fn=kernel, limits=limits,
                          declared_tolerances=((torch.float32, sequential.tolerance(torch.float32)),))
    monkeypatch.setattr(cases, "get_scan_backend", lambda name: counted)
    case = build(CaseKey(family="scan", backend="counted", mode=mode, **SIZES))
    read = calls["limits"]
    assert 1 <= read <= 2 and calls["kernel"] == 0
    for _ in range(5):
        case.run()
    assert calls == {"limits": read, "kernel": 5}


def test_a_case_the_limits_refuse_is_never_run(monkeypatch):
    from scanlab.impls.backend import ScanBackend

    refusing = ScanBackend(name="refusing", kind="scan", fn=None, limits=lambda a, kv, h0: "gates a > 0 only")
    monkeypatch.setattr(cases, "get_scan_backend", lambda name: refusing)
    case = build(CaseKey(family="scan", backend="refusing", mode="forward", **SIZES))
    assert case.refusal == "gates a > 0 only"


def test_an_impls_older_than_the_checked_once_call_is_checked_once_and_its_function_timed(monkeypatch):
    """An `ab` BASE from before Backend.kernel: its cases are timed, not broken, and like HEAD's
    without the checks in every timed call."""
    sequential = cases.get_scan_backend("sequential")
    calls = {"public": 0, "fn": 0}

    def fn(a, kv, h0):
        calls["fn"] += 1
        return sequential.fn(a, kv, h0)

    class Older:  # what a backend was: callable, with refusal, fn and its metadata, no `kernel`
        name, kind, differentiable = "older", "scan", True

        def __call__(self, a, kv, h0=None):
            calls["public"] += 1
            return fn(a, kv, h0)

        def refusal(self, *inputs):
            return None

        def tolerance(self, dtype):
            return sequential.tolerance(dtype)

    Older.fn = staticmethod(fn)
    monkeypatch.setattr(cases, "get_scan_backend", lambda name: Older())
    case = build(CaseKey(family="scan", backend="older", mode="forward", **SIZES))
    assert calls == {"public": 1, "fn": 1}
    for _ in range(3):
        case.run()
    assert calls == {"public": 1, "fn": 4} and all(v.passed for v in case.check())


@pytest.mark.parametrize("family,backend", [("scan", "native"), ("scan", "chunked"), ("conv", "fft"), ("conv", "direct"),
                                            ("conv", "fft_fast"), ("dss", "conv:fft"), ("dss", "recurrent:chunked"),
                                            ("layer", "gate_loop:assoc")])
def test_every_family_runs_its_forward_and_backward_case(family, backend):
    """Found in review: binding the kernel before the leaves required grad left a convolution's K[:L]
    outside the graph, and every conv forward+backward case raised."""
    case = build(CaseKey(family=family, backend=backend, mode="forward+backward", **SIZES))
    case.run()
    assert all(v.passed for v in case.check())
