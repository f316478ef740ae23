import os
import sys
from pathlib import Path

import triton_interpreter  # noqa: F401  (first: sets TRITON_INTERPRET before any kernel is defined)
import pytest
import torch
from hypothesis import settings

import scanlab

import scanlab.harness.pytest_plugin  # noqa: F401  (registers the profiles: scanlab-dev, quick local runs; scanlab-ci, derandomized)

CHECKOUT = Path(__file__).resolve().parent.parent
if Path(scanlab.__file__).resolve().parent != CHECKOUT:  # the tests must test this tree, not another install
    pytest.exit(f"scanlab is imported from {Path(scanlab.__file__).parent}, not this checkout {CHECKOUT}: "
                "run `pip install -e .` here first", returncode=2)
# `python -m pytest` puts the checkout first on the path, where its folders would import under their
# own names (impls, harness) too: a second copy of scanlab's modules
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != CHECKOUT]

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "scanlab-dev"))


@pytest.fixture(autouse=True)
def poison_uninitialised_memory():
    """torch.empty and friends come back full of NaN, so a backend that reads memory it never wrote fails."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(False)


def pytest_collection_modifyitems(config, items):
    """Benchmarks run only under --benchmark-only; the default test run skips them."""
    if config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="benchmark: run with pytest --benchmark-only")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)
