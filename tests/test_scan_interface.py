"""The scan interface: registry, metadata, validation errors, layouts."""
import pytest
import torch

from scanlab.impls import BackendUnavailableError, all_scan_backends, get_scan_backend, oracle, scan_backends
from scanlab.impls.backend import ScanBackend
from scanlab.impls.registry import Registry
from scan_params import BACKENDS, backend_dtype_params

EXPECTED_NAMES = {"sequential", "assoc", "heinsen", "heinsen_chunked", "chunked", "torch_hop", "native", "jax_assoc",
                  "jax_scan", "triton", "accelerated_scan", "accelerated_scan_scalar", "fla_hgrn", "fla_hgrn_recurrent"}


def test_every_named_backend_is_registered():
    assert set(all_scan_backends()) == EXPECTED_NAMES


def test_core_backends_are_available_everywhere():
    assert {"sequential", "assoc", "heinsen", "chunked"} <= set(scan_backends())


def test_every_backend_declares_a_tolerance_for_every_dtype_it_supports():
    for backend in all_scan_backends().values():
        for dtype in backend.dtypes:
            tol = backend.tolerance(dtype)
            assert 0 < tol.rtol < 1 and 0 < tol.grad_rtol < 1


def test_unknown_backend_error_names_the_available_ones():
    with pytest.raises(ValueError, match="unknown scan backend 'nope'.*assoc"):
        get_scan_backend("nope")


def test_unavailable_backend_says_why():
    registry = Registry("scan", {"ghost": lambda: ScanBackend(name="ghost", kind="scan", fn=None,
                                                              unavailable_reason="jax is not installed")})
    assert registry.available() == {}
    with pytest.raises(BackendUnavailableError, match="ghost.*jax is not installed"):
        registry.get("ghost")


def test_what_a_backend_cannot_run_on_is_said_before_it_runs():
    loop = get_scan_backend("sequential")
    cpu_only = ScanBackend(name="sequential", kind="scan", fn=loop.fn, devices=("cpu",), device_note="use triton")
    assert cpu_only.unsupported("cpu", torch.float32) is None and cpu_only.unsupported("cpu") is None
    assert cpu_only.unsupported("cuda") == "runs on cpu only (use triton)"
    assert cpu_only.unsupported("cpu", torch.float16) == "does not take float16"  # default dtypes: float32, float64
    ghost = ScanBackend(name="ghost", kind="scan", fn=None, unavailable_reason="jax is not installed")
    assert ghost.unsupported("cpu", torch.float32) == "unavailable: jax is not installed"


def test_a_declared_backend_is_differentiable_unless_it_says_not_and_cannot_be_changed():
    backend = ScanBackend(name="sequential", kind="scan", fn=get_scan_backend("sequential").fn)
    assert backend.differentiable
    with pytest.raises(AttributeError):
        backend.name = "other"


def _inputs(dtype=torch.float32, shape=(2, 5, 3)):
    return torch.rand(shape, dtype=dtype), torch.randn(shape, dtype=dtype)


@pytest.mark.parametrize("backend", BACKENDS.values(), ids=list(BACKENDS))
class TestValidation:
    def test_wrong_rank(self, backend):
        a, kv = _inputs()
        with pytest.raises(ValueError, match=r"a must have shape \(B, L, D\), got shape \(2, 5\)"):
            backend(a[..., 0], kv)

    def test_mismatched_shapes_are_not_broadcast(self, backend):
        a, kv = _inputs()
        with pytest.raises(ValueError, match=r"a and kv must have the same shape.*\(2, 5, 3\).*\(2, 5, 1\)"):
            backend(a, kv[..., :1])

    def test_mismatched_dtypes(self, backend):
        a, kv = _inputs()
        with pytest.raises(TypeError, match="a and kv must have the same dtype.*float32.*float64"):
            backend(a, kv.double())

    def test_mismatched_devices(self, backend):
        a, kv = _inputs()
        with pytest.raises(ValueError, match="same device.*cpu.*meta"):
            backend(a, kv.to("meta"))

    def test_bad_h0_shape(self, backend):
        a, kv = _inputs()
        with pytest.raises(ValueError, match=r"h0 must have shape \(B, D\) = \(2, 3\).*\(3, 2\)"):
            backend(a, kv, torch.zeros(3, 2))

    def test_bad_h0_dtype(self, backend):
        a, kv = _inputs()
        with pytest.raises(TypeError, match="h0 and a must have the same dtype"):
            backend(a, kv, torch.zeros(2, 3, dtype=torch.float64))

    @pytest.mark.parametrize("dtype", [torch.int64, torch.uint8])
    def test_unsupported_dtype(self, backend, dtype):
        a, kv = (t.to(dtype) for t in _inputs())
        with pytest.raises(TypeError, match=f"does not support a dtype {dtype}"):
            backend(a, kv)

    def test_not_a_tensor(self, backend):
        with pytest.raises(TypeError, match="kv must be a torch.Tensor, got list"):
            backend(torch.rand(1, 2, 1), [[[1.0], [2.0]]])

    def test_empty_sequence_returns_the_initial_state(self, backend):
        a, kv = _inputs(shape=(2, 0, 3))
        h0 = torch.randn(2, 3)
        h, h_last = backend(a, kv, h0)
        assert h.shape == (2, 0, 3) and torch.equal(h_last, h0)


@pytest.mark.parametrize("backend,dtype", backend_dtype_params())
def test_non_contiguous_inputs(backend, dtype):
    """Transposed views (the seed's '(b d) n' layouts produce them) give the same answer as copies."""
    a = torch.rand(2, 3, 11, dtype=torch.float64).to(dtype).transpose(1, 2)  # (b l d), strided
    kv = torch.randn(2, 3, 11, dtype=torch.float64).to(dtype).transpose(1, 2)
    h0 = torch.randn(3, 2, dtype=torch.float64).to(dtype).t()
    assert not a.is_contiguous() and not h0.is_contiguous()
    h, h_last = backend(a, kv, h0)
    h_copy, last_copy = backend(a.contiguous(), kv.contiguous(), h0.contiguous())
    ref, _ = oracle(a, kv, h0)
    tol = backend.tolerance(dtype)
    assert torch.allclose(h, h_copy, rtol=tol.rtol, atol=0)
    assert torch.allclose(h.to(ref.dtype), ref, rtol=tol.rtol * 10, atol=tol.rtol)


def test_a_backend_with_its_own_tolerances_uses_them_and_names_a_dtype_it_did_not_declare():
    from scanlab.impls.tolerances import Tolerance

    mine = Tolerance(rtol=1e-3, atol=1e-30, grad_rtol=1e-2)
    backend = ScanBackend("mine", "scan", lambda a, kv, h0: None, declared_tolerances=((torch.float32, mine),))
    assert backend.tolerance(torch.float32) is mine
    with pytest.raises(KeyError, match=r"no tolerance declared for scan backend 'mine' in torch.float64"):
        backend.tolerance(torch.float64)


def test_a_core_scan_without_a_reverse_of_its_own_refuses_reverse_by_name():
    from scanlab.impls.scan.assoc import scan as assoc_scan
    from scanlab.impls.scan.interface import scan_from_core

    with pytest.raises(ValueError, match="reverse=True: this scan has no reverse of its own"):
        assoc_scan(torch.rand(1, 3, 2), torch.rand(1, 3, 2), reverse=True)
    with pytest.raises(ValueError, match="reverse_core differentiates through its own graph"):
        scan_from_core(lambda a, kv: kv, adjoint_backward=True, reverse_core=lambda a, kv: kv)
