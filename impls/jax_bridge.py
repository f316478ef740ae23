"""Calling a JAX function from torch, with autograd: forward under jax.jit, backward by jax.vjp.

jax2torch 0.0.7 is not used: it converts through jax.dlpack.to_dlpack, removed in JAX 0.7, and
fails on its first call with "The array passed to from_dlpack must have __dlpack__ and
__dlpack_device__ methods". DLPack itself works both ways and shares memory
(torch.from_dlpack(array), jax.dlpack.from_dlpack(tensor)); JAX wants dense row-major tensors,
so inputs are made contiguous (and conjugation resolved) first.
"""
import functools
import importlib

import torch


def import_jax():
    """(jax, None), or (None, why not)."""
    try:
        jax = importlib.import_module("jax")
    except ImportError as error:
        return None, f"jax is not installed ({error}); pip install 'jax>=0.10'"
    return jax, None


def x64():
    """A context in which JAX keeps float64 and complex128 (by default it silently makes them 32-bit),
    for the bridge's calls only: the process's global JAX config stays as the user set it."""
    import jax

    if hasattr(jax, "enable_x64"):  # JAX >= 0.6
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


def jax_devices():
    jax, _ = import_jax()
    return ("cpu", "cuda") if any(d.platform == "gpu" for d in jax.devices()) else ("cpu",)


def jax_device_note():
    """Why a JAX backend is CPU-only here, when it is."""
    if "cuda" in jax_devices():
        return ""
    return "the installed jaxlib sees no GPU; a CUDA jaxlib (pip install 'jax[cuda12]') runs these on cuda"


def to_jax(tensor):
    """Call within x64(), or float64 tensors arrive as float32 arrays."""
    tensor = tensor.detach().resolve_conj().resolve_neg().contiguous()
    fast = _cpu_dlpack_import() if tensor.device.type == "cpu" else None
    if fast is not None:
        return fast(tensor)
    import jax

    return jax.dlpack.from_dlpack(tensor)


@functools.cache
def _cpu_dlpack_import():
    """jaxlib's own DLPack import for CPU tensors, where this jaxlib has the signature known here; else None.

    jax.dlpack.from_dlpack costs ~0.11 ms an array on the CPU whatever its size, most of the bridge's
    overhead over raw JAX at small L: it asks the CPU device for a stream, which only GPUs have (a
    JaxRuntimeError raised and caught, 19 us), wraps the result again with jnp.asarray (17 us) and
    places it on its device again. The import itself, zero-copy, is 10 us.
    """
    try:
        import jax
        from jax._src.lib import _jax, jaxlib_extension_version
    except ImportError:
        return None
    convert = getattr(_jax, "dlpack_managed_tensor_to_buffer", None)
    if convert is None or jaxlib_extension_version < 467:
        return None
    device, cpu_device_type = jax.devices("cpu")[0], 1  # kDLCPU
    return lambda tensor: convert(tensor.__dlpack__(), device, None, None, cpu_device_type)


def to_torch(array):
    return torch.from_dlpack(array.block_until_ready())


def torch_op(fn):
    """A torch callable with autograd for `fn(*arrays) -> array`.

    When a gradient will be asked for, the forward runs `jax.vjp` under jit and keeps its residuals
    (a pytree of arrays), so the backward only runs the pullback: recomputing the forward inside
    the backward made JAX's forward+backward pay the forward twice, unlike every torch backend.
    """
    import jax

    forward = jax.jit(fn)
    forward_keeping_residuals = jax.jit(lambda *primals: jax.vjp(fn, *primals))
    pull = jax.jit(lambda pullback, cotangent: pullback(cotangent))

    class JaxOp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            with x64():
                arrays = tuple(map(to_jax, tensors))
                if not any(ctx.needs_input_grad):
                    return to_torch(forward(*arrays))
                out, ctx.pullback = forward_keeping_residuals(*arrays)
                return to_torch(out)

        @staticmethod
        def backward(ctx, grad):
            with x64():
                # JAX's cotangent of a complex value is the conjugate of torch's gradient
                grads = pull(ctx.pullback, to_jax(grad.conj()))
                return tuple(to_torch(g).conj() for g in grads)

    return JaxOp.apply
