"""Which backends a sweep runs on this device and dtype, and a record of why it runs no other.

A CUDA sweep meets backends that declare CPU only (native, JAX without a GPU jaxlib) and a CPU
sweep meets CUDA-only kernels (triton, the GPU peers); neither is an error. Each is left out
with its reason, written as a `skipped` row, and listed under "Not run here" in the report.
"""
from ...impls.backend import Backend

from .cases import DTYPES

SKIPPED = "skipped"


def runnable(backend: Backend, device, dtype=None):
    return backend.unsupported(device, DTYPES[dtype] if dtype else None) is None


def skipped_rows(suite, family, backends, device, dtypes):
    """One `skipped` row per backend that cannot run on `device` at all, else per dtype it does not take."""
    rows = []
    for name, backend in backends.items():
        reason = backend.unsupported(device)
        missing = [("", reason)] if reason else [(d, backend.unsupported(device, DTYPES[d])) for d in dtypes]
        rows += [skipped_row(suite, family, name, device, dtype, why) for dtype, why in missing if why]
    return rows


def skipped_row(suite, family, backend, device, dtype, reason, **where):
    return dict({"B": "", "L": "", "D": "", "N": "", "regime": ""}, **where, suite=suite, family=family,
                unit_id=f"{SKIPPED}|{family}|{backend}|{dtype}|{where.get('regime', '')}|{where.get('L', '')}"
                        + (f"|{where['layout']}" if where.get("layout", "dense") != "dense" else ""),
                backend=backend, mode="", device=device, dtype=dtype, metric=SKIPPED, value=None, unit="",
                note=reason)
