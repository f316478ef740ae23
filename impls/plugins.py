"""Backends from outside scanlab: declared with the metadata scanlab's own carry, found through
entry points or a module named on the command line, and held to the tolerances they declare.

A package registers backends under the entry-point groups ``scanlab.scan_backends`` and
``scanlab.conv_backends``; each entry point names a backend, a list of them, or a function
returning either::

    [project.entry-points."scanlab.scan_backends"]
    numpy_loop = "numpy_scan:backend"

A module that is not packaged is loaded by ``run_bench.py --backend-module pkg.module`` (or
``path/to/file.py``): every backend at its top level joins the registry. Either way a backend is
declared with `scan_backend` or `conv_backend` below: what it takes (dtypes, devices), whether it
has gradients, and the tolerance it promises per dtype (impls/tolerances.py: `Tolerance`, with the
`Domain` on which it holds). scanlab holds it to them, as it holds its own.

A plugin that fails to load is listed as unavailable with the reason and breaks nothing else.
"""
import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

from .backend import REAL_DTYPES, Backend, ConvBackend, ScanBackend
from .layouts import REVERSE, VARLEN
from .tolerances import Tolerance

GROUPS = {"scan": "scanlab.scan_backends", "conv": "scanlab.conv_backends"}
# modules loaded by name, passed on to the processes scanlab starts (the memory worker)
MODULES_ENV = "SCANLAB_BACKEND_MODULES"
_KINDS = {"scan": ScanBackend, "conv": ConvBackend}


def _declare(kind, name, fn, tolerances, dtypes, devices, differentiable, description, limits, deterministic=True,
             native_layouts=()):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: a backend's name is an identifier (it names CLI arguments and report rows); got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn: {name}'s function must be callable; got {type(fn).__name__}")
    dtypes = tuple(dtypes)
    if not isinstance(tolerances, dict) or not all(isinstance(t, Tolerance) for t in tolerances.values()):
        raise TypeError(f"tolerances: {name} declares {{dtype: scanlab.Tolerance}}; got {tolerances!r}")
    missing = [str(d).removeprefix("torch.") for d in dtypes if d not in tolerances]
    if missing:
        raise ValueError(f"tolerances: {name} takes {', '.join(missing)} but declares no tolerance for it; every dtype "
                         "it takes needs the accuracy it promises there")
    return _KINDS[kind](name=name, kind=kind, fn=fn, dtypes=dtypes, devices=tuple(devices),
                        differentiable=differentiable, description=description, limits=limits,
                        declared_tolerances=tuple(tolerances.items()), deterministic=bool(deterministic),
                        **({"native_layouts": _layouts(name, native_layouts)} if kind == "scan" else {}))


def _layouts(name, native_layouts):
    wrong = [layout for layout in native_layouts if layout not in (REVERSE, VARLEN)]
    if wrong:
        raise ValueError(f"native_layouts: {name} declares {wrong}; the layouts are {REVERSE!r} and {VARLEN!r}")
    return tuple(native_layouts)


def scan_backend(name, fn, *, tolerances, dtypes=REAL_DTYPES, devices=("cpu",), differentiable=True, description="",
                 limits=None, deterministic=True, native_layouts=()):
    """A scan backend: `fn(a, kv, h0)` computes h_t = a_t * h_{t-1} + kv_t over t (dim 1).

    a, kv: (B, L, D); h0: (B, D) or None (zeros). Returns (h (B, L, D), h_last (B, D)), new tensors of
    the inputs' dtype and device, leaving the inputs as they were. Called only with inputs scanlab has
    validated: same shape, dtype (one of `dtypes`) and device (one of `devices`). `tolerances`:
    {dtype: Tolerance} for every dtype taken. `limits(a, kv, h0)`: why it cannot take some valid
    inputs (a length it has no kernel for), or None. `deterministic=False` declares that two calls on
    the same inputs may differ in their last bits (GPU atomics): the suite then does not ask for it.
    `native_layouts`: "reverse" and/or "varlen" when fn itself takes reverse= / cu_seqlens= (the
    convention of impls/layouts.py); the others reach it through scanlab's exact adapters.
    """
    return _declare("scan", name, fn, tolerances, dtypes, devices, differentiable, description, limits, deterministic,
                    native_layouts)


def conv_backend(name, fn, *, tolerances, dtypes=REAL_DTYPES, devices=("cpu",), differentiable=True, description=""):
    """A causal depthwise convolution: `fn(u, K)` computes y_t = sum_{s<=t} K_s * u_{t-s}.

    u: (B, L, H); K: (L, H) (cut to u's length). Returns y (B, L, H). Otherwise as `scan_backend`.
    """
    return _declare("conv", name, fn, tolerances, dtypes, devices, differentiable, description, None)


def loaded_modules():
    """The modules named by --backend-module in this process and the ones that started it."""
    return tuple(m for m in os.environ.get(MODULES_ENV, "").split(os.pathsep) if m)


class RenamedImportError(ImportError):
    """A plugin imports scanlab by its names before 0.2 (`impls`, `harness`), which are no longer installed."""


OLD_NAMES = ("impls", "harness")
PLUGIN_PREFIX = "scanlab_plugin_"  # a plugin file's module name: the prefix, its stem and its path's digest
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _old_names(load, what):
    """load(), with one clear error where `what` imports scanlab's names before 0.2 (no shim: a shim
    would install the generic top-level names again). In a checkout, whose folder is on the path when
    run_bench.py runs, the old names would import a second copy of scanlab's folders: refused too."""
    before = set(sys.modules)
    try:
        found = load()
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in OLD_NAMES:
            raise
        old = error.name
    else:
        copies = [name for name in set(sys.modules) - before if name.partition(".")[0] in OLD_NAMES
                  and Path(getattr(sys.modules[name], "__file__", None) or "/").resolve().is_relative_to(_PACKAGE_ROOT)]
        if not copies:
            return found
        old = min(copies, key=len)
    for name in set(sys.modules) - before:  # the plugin and the copies it made: loading it again fails again
        if name.partition(".")[0] in OLD_NAMES or name.startswith(PLUGIN_PREFIX) or name == what:
            del sys.modules[name]
    raise RenamedImportError(
        f"{what} imports {old!r}, scanlab's name before version 0.2: scanlab installs one name now. "
        "Write `from scanlab import scan_backend, conv_backend, Tolerance, Domain` (README: One name, "
        "and what it promises)") from None


def _import(spec):
    return _old_names(lambda: _import_module(spec), spec)


def _import_module(spec):
    if spec.endswith(".py"):
        path = Path(spec).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no file {spec}")
        # the file's own identity: p1/kernels.py and p2/kernels.py are two modules, not one loaded twice
        name = f"{PLUGIN_PREFIX}{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        if name not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return sys.modules[name]
    return importlib.import_module(spec)


def load_module(spec):
    """Import 'pkg.module' or 'path/to/file.py' now (its errors are the caller's to report), add its
    backends to the registries, in this process and the ones it starts, and return the module."""
    if spec.endswith(".py"):
        spec = str(Path(spec).resolve())
    module = _import(spec)
    if spec not in loaded_modules():
        os.environ[MODULES_ENV] = os.pathsep.join(loaded_modules() + (spec,))
    return module


def _unavailable(kind, name, origin, why):
    return _KINDS[kind](name=name, kind=kind, fn=None, unavailable_reason=why, origin=origin)


def _as_backends(value, kind):
    if callable(value) and not isinstance(value, Backend):
        value = value()
    backends = [value] if isinstance(value, Backend) else list(value)
    wrong = [b for b in backends if not isinstance(b, _KINDS[kind])]
    if wrong:
        raise TypeError(f"expected {_KINDS[kind].__name__}s (scanlab.{kind}_backend), got {wrong[0]!r}")
    return backends


def _found(kind):
    """(origin, [backends] or the exception that stopped them) per entry point and loaded module."""
    for point in entry_points(group=GROUPS[kind]):
        origin = f"{point.dist.name if point.dist else 'a package'} (entry point {point.value})"
        try:
            yield point.name, origin, _as_backends(_old_names(point.load, point.value), kind)
        except Exception as error:  # a broken plugin is listed with the reason, never breaks the others
            yield point.name, origin, error
    for spec in loaded_modules():
        try:
            module = _import(spec)
            yield spec, f"module {spec}", [v for v in vars(module).values() if isinstance(v, _KINDS[kind])]
        except Exception as error:
            yield spec, f"module {spec}", error


def plugin_backends(kind, taken=()):
    """name -> backend for every plugin backend of `kind`; names in `taken` (scanlab's own) are refused."""
    backends = {}
    for label, origin, found in _found(kind):
        if isinstance(found, Exception):
            backends[label] = _unavailable(kind, label, origin, f"plugin failed to load: {type(found).__name__}: {found}")
            continue
        for backend in found:
            backend = _with_origin(backend, origin)
            if backend.name in taken or backend.name in backends:
                clash = f"{backend.name}@{origin}"
                backends[clash] = _unavailable(kind, clash, origin, f"the name {backend.name!r} is taken by "
                                               f"{'scanlab' if backend.name in taken else backends[backend.name].origin}")
            else:
                backends[backend.name] = backend
    return backends


def _with_origin(backend, origin):
    return replace(backend, origin=origin)
