"""Parametrisation over every available scan backend and dtype, shared by the scan test files."""
import pytest

from scanlab.impls import scan_backends
from scanlab.harness.agreement import is_jit  # noqa: F401  (the scan test files take it from here)
from scanlab.harness.strategies import SCAN_DTYPES

BACKENDS = {name: b for name, b in scan_backends().items() if "cpu" in b.devices}  # the tests' tensors are CPU tensors
DIFFERENTIABLE = [name for name, b in BACKENDS.items() if b.differentiable]


def backend_dtype_params(names=None):
    names = BACKENDS if names is None else names
    return [pytest.param(BACKENDS[n], dtype, id=f"{n}-{str(dtype).removeprefix('torch.')}")
            for n in names for dtype in SCAN_DTYPES if dtype in BACKENDS[n].dtypes]

