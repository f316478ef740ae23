"""What every backend carries: a name, what it runs on, and the accuracy it promises.

Scan backends are called as ``backend(a, kv, h0=None) -> (h, h_last)``; convolution backends as
``backend(u, K) -> y``. Both validate their arguments before any work (see ``validation.py``) and
look their tolerances up in ``tolerances.py``, the one table that holds them.
"""
import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import layouts, tolerances, validation

REAL_DTYPES = (torch.float32, torch.float64)
ALL_DTYPES = REAL_DTYPES + (torch.complex64, torch.complex128)
HALF_DTYPES = (torch.bfloat16, torch.float16)


class BackendUnavailableError(RuntimeError):
    """The backend exists but cannot run in this environment; the message says why."""


class UnsupportedInputError(ValueError):
    """Valid inputs that this backend declares it cannot take (its `limits`), refused before it runs."""


@dataclass(frozen=True)
class Backend:
    name: str
    kind: str
    fn: Optional[Callable]
    dtypes: tuple = REAL_DTYPES
    devices: tuple = ("cpu", "cuda")
    differentiable: bool = True
    description: str = ""
    unavailable_reason: Optional[str] = None
    # (a, kv, h0) -> why this backend cannot take these inputs, or None: limits of a kernel that a
    # dtype and device check cannot express (power-of-two lengths only, positive gates only)
    limits: Optional[Callable] = None
    device_note: str = ""  # how to run it on a device it does not list, where there is a way
    origin: str = "scanlab"  # or the package (entry point) or module that declared it (impls/plugins.py)
    # ((dtype, Tolerance), ...): a plugin's own declaration; scanlab's backends are in tolerances.TABLE
    declared_tolerances: tuple = ()
    deterministic: bool = True  # two calls on the same inputs agree bitwise (False: GPU atomics, say)
    # the layouts its fn runs itself (layouts.REVERSE, layouts.VARLEN: fn takes reverse=, cu_seqlens=);
    # the others go through impls/layouts.py's exact adapters
    native_layouts: tuple = ()
    # (cu_seqlens, L, D, device) -> whether its own varlen path takes this pack (None: every pack), for
    # a backend whose plan sends some packs through the adapter (`triton`: one long sequence)
    packs_natively: Optional[Callable] = None
    # a zero gate gives exactly zero (False: a log-space backend clamps it to the dtype's tiny), which
    # the varlen adapter's one-pass path needs
    exact_zero_gates: bool = True

    def __repr__(self):  # what a failing test prints as its falsifying example
        return f"<{self.kind} backend {self.name!r} from {self.origin}>"

    @property
    def available(self):
        return self.unavailable_reason is None

    def tolerance(self, dtype):
        if self.declared_tolerances:
            declared = dict(self.declared_tolerances)
            if dtype not in declared:
                raise KeyError(f"no tolerance declared for {self.kind} backend {self.name!r} in {dtype}")
            return declared[dtype]
        return tolerances.lookup(self.kind, self.name, dtype)

    def unsupported(self, device, dtype=None):
        """Why this backend cannot run here on `device` (and `dtype`), or None when it can."""
        if not self.available:
            return f"unavailable: {self.unavailable_reason}"
        device = torch.device(device).type
        if device not in self.devices:
            return f"runs on {', '.join(self.devices)} only" + (f" ({self.device_note})" if self.device_note else "")
        if dtype is not None and dtype not in self.dtypes:
            return f"does not take {str(dtype).removeprefix('torch.')}"
        return None

    def refusal(self, *inputs):
        """Why this backend cannot take these (valid) inputs, or None."""
        return self.limits(*inputs) if self.limits is not None else None

    def _refuse(self, *inputs):
        reason = self.refusal(*inputs)
        if reason:
            raise UnsupportedInputError(f"{self.kind} backend {self.name!r} cannot take these inputs: {reason}")

    def _require_available(self):
        if not self.available:
            raise BackendUnavailableError(f"{self.kind} backend {self.name!r} is unavailable: {self.unavailable_reason}")

    def _bind(self, *inputs):
        """Check these inputs once (arguments, then the declared limits, which may read the data),
        then a callable that runs the kernel alone on them: what a timing loop calls, so that its
        time is the kernel's and not the checks' (README: what a timed call includes). The inputs
        must not be changed or resized between its calls."""
        self._require_available()
        inputs = self._checked(*inputs)
        self._refuse(*inputs)
        empty = self._empty(*inputs)
        if empty is not None:
            return empty
        fn = self.fn
        return functools.partial(fn, *inputs)


class ScanBackend(Backend):
    def __call__(self, a, kv, h0=None, *, reverse=False, cu_seqlens=None):
        return self.kernel(a, kv, h0, reverse=reverse, cu_seqlens=cu_seqlens)()

    def kernel(self, a, kv, h0=None, *, reverse=False, cu_seqlens=None):
        """`backend(a, kv, h0, reverse=, cu_seqlens=)` as a callable of no arguments, its inputs checked
        once (Backend._bind). A reverse or packed scan runs the backend's own path where it declares
        one (`native_layouts`), else the exact adapters of impls/layouts.py around its dense path."""
        self._require_available()
        if not isinstance(reverse, bool):
            raise TypeError(f"reverse must be True or False, got {reverse!r}")
        validation.check_scan_inputs(self, a, kv, h0, cu_seqlens)
        self._refuse(a, kv, h0)
        if cu_seqlens is not None and layouts.VARLEN not in self.native_layouts and self.limits is not None:
            why = self.refusal(layouts.boundary_gates(a, cu_seqlens), kv, None)
            if why:
                raise UnsupportedInputError(f"{self.kind} backend {self.name!r} cannot take packed sequences through "
                                            f"the varlen adapter (a zero gate at each sequence's first step): {why}")
        if not a.numel():
            return self._empty(a, kv, h0, cu_seqlens)
        fn = layouts.layout_call(self.fn, self.native_layouts, reverse, cu_seqlens, self._refuse, self.exact_zero_gates)
        return functools.partial(fn, a, kv, h0)  # one Python frame fewer than a lambda, per timed call

    @staticmethod
    def _empty(a, kv, h0, cu_seqlens):
        def empty():  # an empty batch, length or channel axis: no kernel is asked to launch on it
            rows = a.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1
            # a copy of h0, never h0 itself: an output must not be a view of an input
            h_last = torch.zeros(rows, a.shape[2], dtype=a.dtype, device=a.device) if h0 is None else h0.clone()
            return a * kv, h_last  # empty, and part of the graph for autograd
        return empty


class ConvBackend(Backend):
    def __call__(self, u, K):
        return self._bind(u, K)()

    def kernel(self, u, K):
        """`backend(u, K)` as a callable of no arguments, its inputs checked once (Backend._bind)."""
        return self._bind(u, K)

    def _checked(self, u, K):
        validation.check_conv_inputs(self, u, K)
        return u, K[: u.shape[1]]

    def _empty(self, u, K):
        if u.numel():
            return None
        return lambda: u * K  # (b l h), empty, and part of the graph for autograd: FFT libraries refuse empty plans
