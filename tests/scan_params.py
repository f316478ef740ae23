"""Parametrisation over every available scan backend and dtype, shared by the scan test files."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanlab.impls import scan_backends
from scanlab.harness.check import agreement
from scanlab.harness.check.agreement import is_jit  # noqa: F401  (the scan test files take it from here)
from scanlab.harness.check.strategies import SCAN_DTYPES

BACKENDS = {name: b for name, b in scan_backends().items() if "cpu" in b.devices}  # the tests' tensors are CPU tensors
DIFFERENTIABLE = [name for name, b in BACKENDS.items() if b.differentiable]


def backend_dtype_params(names=None):
    names = BACKENDS if names is None else names
    return [pytest.param(BACKENDS[n], dtype, id=f"{n}-{str(dtype).removeprefix('torch.')}")
            for n in names for dtype in SCAN_DTYPES if dtype in BACKENDS[n].dtypes]



def property_test(check, dtypes=None, max_examples=None):
    """A test of one agreement property (harness/check/agreement.py, harness/check/layout_agreement.py) on every
    backend here, in every dtype it takes (or those of `dtypes`)."""
    @given(data=st.data())
    def test(backend, dtype, data):
        agreement.check_property(check, backend, dtype, data)

    if max_examples is not None:
        test = settings(max_examples=max_examples)(test)
    params = [p for p in backend_dtype_params() if dtypes is None or p.values[1] in dtypes]
    test = pytest.mark.parametrize("backend,dtype", params)(test)
    test.__doc__ = check.__doc__
    return test
