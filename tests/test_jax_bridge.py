"""The torch <-> JAX bridge that replaces jax2torch: zero-copy where it can, and autograd."""
import pytest
import torch

jax = pytest.importorskip("jax")
from scanlab.impls.jax_bridge import to_jax, to_torch, torch_op, x64  # noqa: E402


def test_tensor_to_jax_shares_memory():
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert to_jax(tensor).unsafe_buffer_pointer() == tensor.data_ptr()


def test_jax_to_tensor_shares_memory():
    array = jax.numpy.arange(6.0)
    assert to_torch(array).data_ptr() == array.unsafe_buffer_pointer()


def test_non_contiguous_tensors_are_copied_dense():
    tensor = torch.arange(12, dtype=torch.float64).reshape(3, 4).t()
    assert (to_torch(to_jax(tensor)) == tensor).all()


def test_float64_stays_float64():
    with x64():
        assert to_jax(torch.zeros(2, dtype=torch.float64)).dtype == jax.numpy.float64


@pytest.mark.parametrize("name", ["jax_scan", "jax_assoc"])
def test_a_float64_jax_scan_is_float64_and_leaves_the_global_config_alone(name):
    from scanlab.impls import get_scan_backend

    gate = 1 - 2 ** -40  # 1 in float32: a 32-bit scan gives h_2 = 3
    a, kv = torch.full((1, 3, 1), gate, dtype=torch.float64), torch.ones(1, 3, 1, dtype=torch.float64)
    h, _ = get_scan_backend(name)(a, kv)
    assert h.dtype == torch.float64 and abs(float(h[0, 2, 0]) - (gate * gate + gate + 1)) < 1e-14
    assert not jax.config.jax_enable_x64  # JAX's default, which importing and running scanlab leaves alone


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_autograd_matches_torch(dtype):
    """f(x, y) = x * sin(y), holomorphic, so the complex convention is exercised too."""
    op = torch_op(lambda x, y: x * jax.numpy.sin(y))
    x = torch.randn(5, dtype=dtype, requires_grad=True)
    y = torch.randn(5, dtype=dtype, requires_grad=True)
    g = torch.randn(5, dtype=dtype)
    ours = torch.autograd.grad(op(x, y), (x, y), g)
    reference = torch.autograd.grad(x * torch.sin(y), (x, y), g)
    for got, want in zip(ours, reference):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128], ids=str)
def test_fast_cpu_import_agrees_with_jax_from_dlpack(dtype):
    """to_jax skips jax.dlpack.from_dlpack's CPU overheads (impls/jax_bridge.py); the values must not change,
    conjugate views included."""
    tensor = torch.randn(3, 4, dtype=dtype)
    view = tensor.conj() if dtype.is_complex else tensor
    with x64():
        ours = to_jax(view)
        theirs = jax.dlpack.from_dlpack(view.resolve_conj().contiguous())
        assert ours.dtype == theirs.dtype and (ours == theirs).all()


def test_forward_and_backward_run_the_forward_once():
    """The backward uses the residuals the forward kept; it does not run the forward again."""
    import jax

    runs = []

    def doubled(x):
        jax.debug.callback(lambda: runs.append(1))
        return x * 2

    op = torch_op(doubled)
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    op(x).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 2.0, dtype=torch.float64))
    assert len(runs) == 1
    with torch.no_grad():
        op(x)
    assert len(runs) == 2


def test_cpu_tensors_take_jaxlibs_own_import(monkeypatch):
    """jax.dlpack.from_dlpack costs ~0.11 ms an array on the CPU; the bridge goes around it where this
    jaxlib allows (jaxlib_extension_version >= 467), and this one does."""
    def slow_path(*args, **kwargs):
        raise AssertionError("jax.dlpack.from_dlpack was called for a CPU tensor")
    monkeypatch.setattr(jax.dlpack, "from_dlpack", slow_path)
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert to_jax(tensor).unsafe_buffer_pointer() == tensor.data_ptr()


def test_a_jaxlib_without_a_gpu_runs_on_the_cpu_only_and_says_how_to_get_cuda():
    import jax

    from scanlab.impls.jax_bridge import jax_device_note, jax_devices

    if {d.platform for d in jax.devices()} != {"cpu"}:
        pytest.skip("this jaxlib sees an accelerator")
    assert jax_devices() == ("cpu",)
    assert "jax[cuda12]" in jax_device_note()
