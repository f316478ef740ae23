"""scanlab: benchmarks and numerical verification of linear-recurrence scans and DSS/GSS convolutions.

The public API, what kernel authors and users import (README: "One name, and what it promises"):

    from scanlab import scan_backend, conv_backend, Tolerance, Domain     # declaring backends
    from scanlab import scan_backends, get_scan_backend, conv_backends, get_conv_backend, oracle
    from scanlab import SimpleGateLoopLayer, gate_loop_operator, DSS, GSS, GatedStateSpacesLM
    from scanlab import dss_forward, dss_kernel, dss_recurrent

Everything else (`scanlab.impls.*`, `scanlab.harness.*`) is internal and may move. This folder is the
package: `impls/` installs as `scanlab.impls`, `harness/` as `scanlab.harness`, `run_bench.py` as
`scanlab.run_bench` (the `scanlab` command). Names resolve on first use, so importing scanlab
imports no backend: an `ab` worker chooses which tree `scanlab.impls` is before anything loads it.
"""
import importlib

_WHERE = {
    **dict.fromkeys(["scan_backend", "conv_backend"], ".impls.plugins"),
    **dict.fromkeys(["Tolerance", "Domain"], ".impls.tolerances"),
    **dict.fromkeys([
        "scan_backends", "get_scan_backend", "conv_backends", "get_conv_backend", "oracle",
        "SimpleGateLoopLayer", "gate_loop_operator", "DSS", "GSS", "GatedStateSpacesLM",
        "dss_forward", "dss_kernel", "dss_recurrent", "BackendUnavailableError", "UnsupportedInputError",
    ], ".impls"),
}
__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'scanlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
