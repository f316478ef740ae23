"""A measurable case from a plain spec, so the timing loop and the memory worker build the same thing.

spec: {"family": scan | conv | dss | layer | floor | alloc, "backend", "mode", "device", "dtype", "B", "L", "D", "N"}
"""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from impls import GSS, SimpleGateLoopLayer, dss_forward, get_conv_backend, get_scan_backend
from impls.dss import path_tolerance
from impls.tolerances import lookup

from .floor import copy_pass, floor_pass
from .inputs import conv_inputs, dss_parameters, scan_inputs
from .verify import check_conv, check_scan, dss_reference, judge_normwise, judge_output

DTYPES = {"float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64,
          "complex128": torch.complex128, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKWARD = "forward+backward"


@dataclass
class Case:
    spec: dict
    run: Callable[[], None]
    bytes_moved: int  # the least traffic the computation needs (its floor); 0 when no floor applies
    tokens: int
    check: Optional[Callable[[], list]] = None  # verdicts against the oracle; None: nothing to check
    refusal: Optional[str] = None  # why the backend's declared limits refuse these inputs; then run is never called


def _itemsize(dtype):
    return torch.empty((), dtype=dtype).element_size()


def _forward_or_both(forward, leaves, mode):
    """A callable running forward only, or forward and the gradient of every leaf."""
    if mode != BACKWARD:
        def run():
            with torch.no_grad():
                forward()
        return run
    for leaf in leaves:
        leaf.requires_grad_()
    upstream = {}

    def run():
        out = forward()
        if "g" not in upstream:
            upstream["g"] = torch.randn_like(out)
        torch.autograd.grad(out, leaves, upstream["g"])
    return run


def scan_case(spec):
    dtype, device = DTYPES[spec["dtype"]], spec["device"]
    backend = get_scan_backend(spec["backend"])
    a, kv, _ = scan_inputs(spec["B"], spec["L"], spec["D"], dtype, seed=spec["L"], with_h0=False, device=device)
    run = _forward_or_both(lambda: backend(a, kv)[0], [a, kv], spec["mode"])
    elements = a.numel()
    # forward reads a, kv and writes h; backward also reads dh, a, h and writes da, dkv
    tensors = 8 if spec["mode"] == BACKWARD else 3
    check = lambda: check_scan(backend, a.detach(), kv.detach(), None, gradients=spec["mode"] == BACKWARD)
    return Case(spec, run, tensors * elements * _itemsize(dtype), spec["B"] * spec["L"], check,
                backend.refusal(a, kv, None))


def floor_case(spec):
    """The bandwidth floor for the spec's mode (floor.py); backend 'floor_prealloc' writes into buffers
    made once instead of fresh ones, 'copy' measures the copy bandwidth."""
    dtype, device = DTYPES[spec["dtype"]], spec["device"]
    x, y, _ = scan_inputs(spec["B"], spec["L"], spec["D"], dtype, with_h0=False, device=device)
    if spec["backend"] == "copy":
        floor = copy_pass(x)
    else:
        floor = floor_pass(x, y, spec["mode"], preallocated=spec["backend"] == "floor_prealloc")
    return Case(spec, floor.run, floor.tensors * x.numel() * _itemsize(dtype), spec["B"] * spec["L"])


def conv_case(spec):
    """A convolution backend on a precomputed DSS kernel: where `fft` overtakes `direct`."""
    dtype, device = DTYPES[spec["dtype"]], spec["device"]
    backend = get_conv_backend(spec["backend"])
    u, K = conv_inputs(spec["B"], spec["L"], spec["D"], dtype, "fast", seed=spec["L"], device=device)
    run = _forward_or_both(lambda: backend(u, K), [u, K], spec["mode"])
    check = lambda: check_conv(backend, u.detach(), K.detach(), gradients=spec["mode"] == BACKWARD)
    # forward reads u, K and writes y; backward also reads dy and writes du, dK
    both = spec["mode"] == BACKWARD
    moved = (4 if both else 2) * u.numel() * _itemsize(dtype) + (2 if both else 1) * K.numel() * K.element_size()
    return Case(spec, run, moved, spec["B"] * spec["L"], check)


def dss_case(spec):
    dtype, device = DTYPES[spec["dtype"]], spec["device"]
    mode, _, name = spec["backend"].partition(":")
    Lambda, C = dss_parameters(spec["N"], spec["D"], dtype, "fast", seed=spec["L"], device=device)
    u = torch.randn(spec["B"], spec["L"], spec["D"], generator=torch.Generator().manual_seed(spec["L"]),
                    dtype=torch.float64).to(dtype=dtype, device=device)
    paths = {"scan_backend": name} if mode == "recurrent" else {"conv_backend": name}
    forward = lambda: dss_forward(u, Lambda, C, mode, **paths)
    run = _forward_or_both(forward, [u, Lambda, C], spec["mode"])

    def check():
        tol = path_tolerance(dtype, mode, **paths)
        ref, scale = dss_reference(u.cpu(), Lambda.cpu(), C.cpu())
        with torch.no_grad():
            return [judge_output("y", forward().cpu(), ref, scale, tol)]
    # forward reads u and writes y; backward also reads dy and writes du (Lambda and C are N and H*N)
    tensors = 4 if spec["mode"] == BACKWARD else 2
    return Case(spec, run, tensors * u.numel() * _itemsize(dtype), spec["B"] * spec["L"], check)


def _layer(path, dim, modes):
    kind, _, rest = path.partition(":")
    if kind == "gate_loop":
        return "gate_loop", SimpleGateLoopLayer(dim, backend=rest)
    mode, _, name = rest.partition(":")
    paths = {"scan_backend": name} if mode == "recurrent" else {"conv_backend": name}
    return "gss", GSS(dim=dim, dim_expansion_factor=2, dss_kernel_N=modes, dss_kernel_H=dim, mode=mode, **paths)


def layer_case(spec):
    """Layers end to end: 'gate_loop:<scan backend>' or 'gss:conv:<conv backend>' / 'gss:recurrent:<scan backend>'."""
    dtype, device = DTYPES[spec["dtype"]], spec["device"]
    torch.manual_seed(0)
    kind, layer = _layer(spec["backend"], spec["D"], spec["N"] or 64)
    reference_path = "gate_loop:sequential" if kind == "gate_loop" else "gss:conv:direct"
    layer = layer.to(dtype=dtype, device=device)
    x = torch.randn(spec["B"], spec["L"], spec["D"], generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64).to(dtype=dtype, device=device)
    run = _forward_or_both(lambda: layer(x), [x], spec["mode"])

    def check():
        torch.manual_seed(0)
        _, reference = _layer(reference_path, spec["D"], spec["N"] or 64)
        reference.load_state_dict(layer.state_dict())
        tol = lookup("layer", kind, dtype)
        with torch.no_grad():
            want = reference.double()(x.detach().cpu().double())
            return [judge_normwise("out", layer(x).cpu(), want, tol.rtol, tol.atol)]
    return Case(spec, run, 0, spec["B"] * spec["L"], check)


def alloc_case(spec):
    """Allocates and touches spec['bytes'] bytes: proves the memory method measures what it should."""
    count = spec["bytes"] // 4
    return Case(spec, lambda: torch.ones(count, dtype=torch.float32), spec["bytes"], 0)


BUILDERS = {"scan": scan_case, "floor": floor_case, "conv": conv_case, "dss": dss_case, "layer": layer_case, "alloc": alloc_case}


def build(spec):
    if spec["family"] not in BUILDERS:
        raise ValueError(f"unknown case family {spec['family']!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[spec["family"]](spec)
