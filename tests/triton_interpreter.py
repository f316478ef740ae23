"""Triton kernels on a machine without a GPU: the Triton interpreter, made fast enough to test with.

TRITON_INTERPRET must be set before `triton.jit` decorates a kernel, so conftest imports this module
before anything else. The interpreter runs `tl.associative_scan` with a generic fallback that calls
the combine function once per element in Python (170 ms for a 64 x 16 tile); `_scan_along_axis`
is the same left fold along the axis with one call per step on whole slices, which is what the
kernels' combine functions (elementwise) are written for. It also truncates float32 -> bfloat16
(an error up to 2^-8), where a GPU rounds to nearest even (`cvt.rn.bf16.f32`, at most 2^-9);
`_convert_float` below rounds as the GPU does, so tolerances measured here hold there.
"""
import os

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _scan_along_axis(self, inputs):
    data = [t.handle.data for t in inputs]
    axis, length = self.axis, data[0].shape[self.axis]
    out = [np.empty_like(d) for d in data]

    def step(i):
        return tuple(self.to_tensor(np.take(d, [i], axis=axis), t.dtype) for d, t in zip(data, inputs))

    def put(i, acc):
        for o, value in zip(out, acc):
            index = [slice(None)] * o.ndim
            index[axis] = slice(i, i + 1)
            o[tuple(index)] = value.handle.data

    acc = step(0)
    put(0, acc)
    for i in range(1, length):
        combined = self.combine_fn.fn(*acc, *step(i))
        acc = combined if isinstance(combined, tuple) else (combined,)
        put(i, acc)
    return [self.to_tensor(o, t.dtype) for o, t in zip(out, inputs)]


def _rounding_to_bfloat16(convert):
    import triton.language as tl

    def convert_float(data, input_dtype, output_dtype, rounding_mode):
        if input_dtype == tl.float32 and output_dtype == tl.bfloat16:
            rounded = torch.from_numpy(np.ascontiguousarray(data).view(np.float32)).to(torch.bfloat16)
            return rounded.view(torch.int16).numpy().view(np.uint16).reshape(data.shape)
        return convert(data, input_dtype, output_dtype, rounding_mode)
    return convert_float


def patch_interpreter():
    """Replace the interpreter's per-element scan and its bfloat16 truncation, where this triton
    has the functions known here; False where it does not (tests then run slower, or fail on bf16)."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return False
    scan_ops = getattr(interpreter, "ScanOps", None)
    if scan_ops is None or not hasattr(scan_ops, "generic_scan") or not hasattr(interpreter, "_convert_float"):
        return False
    scan_ops.generic_scan = _scan_along_axis
    interpreter._convert_float = _rounding_to_bfloat16(interpreter._convert_float)
    return True


if os.environ.get("TRITON_INTERPRET") == "1":
    patch_interpreter()
