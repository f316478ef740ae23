"""A measurable case from its CaseKey, so the timing loop and the memory worker build the same thing."""
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ...impls import (GSS, SimpleGateLoopLayer, UnsupportedInputError, all_conv_backends, dss_forward, get_conv_backend,
                     get_scan_backend)
from ...impls.dss import path_tolerance
from ...impls.tolerances import lookup

from ..results.case_key import CaseKey, layout_of
from ..measure.floor import copy_pass, floor_pass
from ..measure.inputs import conv_inputs, dss_parameters, packed_lengths, packed_offsets, scan_inputs
from ..check.verify import (check_conv, check_dss_gradients, check_scan, dss_reference, gates_seen, judge_normwise,
                     judge_output, layout_arguments, scan_references)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64,
          "complex128": torch.complex128, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKWARD = "forward+backward"


def family_dtypes(family):
    """The dtypes a family's cases take. A scan backend that does not take one of them is skipped
    with its reason (support.py); the other families' backends all take the same two."""
    if family in ("scan", "varlen"):
        return list(DTYPES)
    if family == "decode":  # the scan paths; the layers' cases refuse what their tolerances do not declare
        return ["float32", "float64", "bfloat16"]
    if family == "conv":
        taken = {dtype for backend in all_conv_backends().values() for dtype in backend.dtypes}
        return [name for name, dtype in DTYPES.items() if dtype in taken]
    return ["float32", "float64"]  # DSS (u real, its states complex) and layers: their tolerances cover these


@dataclass
class Case:
    key: CaseKey
    run: Callable[[], None]
    bytes_moved: int  # the least traffic the computation needs (its floor); 0 when no floor applies
    tokens: int
    check: Optional[Callable[[], list]] = None  # verdicts against the oracle; None: nothing to check
    refusal: Optional[str] = None  # why the backend's declared limits refuse these inputs; then run is never called
    # why the inputs lie outside the backend's declared domain (empty: inside), where it declares one
    outside_domain: Optional[Callable[[], list]] = None


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


def _timed_call(backend, mode, *inputs, **layout):
    """The call a timing loop makes: the kernel alone, its inputs checked once here (README: what a
    timed call includes). Forward+backward: the inputs become leaves first, so that what the checks
    hand the kernel (a convolution's K cut to L) is part of the graph. An `impls/` older than
    Backend.kernel (an `ab` BASE) is checked once through its public call, then its function timed
    the same way."""
    if mode == BACKWARD:
        for leaf in inputs:
            if leaf is not None:
                leaf.requires_grad_()
    if hasattr(backend, "kernel"):
        return backend.kernel(*inputs, **layout)
    with torch.no_grad():
        backend(*inputs, **layout)
    if backend.kind == "conv":
        inputs = (inputs[0], inputs[1][: inputs[0].shape[1]])
    fn = backend.fn
    return lambda: fn(*inputs)


def scan_case(key):
    """A scan backend on (B, L, D) inputs; a packed layout is one row of packed_lengths(L) sequences
    (the varlen family), timed through the backend's own path or the adapter, whichever it runs."""
    dtype, device = DTYPES[key.dtype], key.device
    backend = get_scan_backend(key.backend)
    reverse, packed = layout_of(key.layout)
    a, kv, _ = scan_inputs(key.B, key.L, key.D, dtype, seed=key.L, with_h0=False, device=device)
    cu_seqlens = packed_offsets(packed_lengths(key.L), device) if packed else None
    layout = layout_arguments(reverse, cu_seqlens)
    if key.mode == BACKWARD and not backend.differentiable:
        return Case(key, None, 0, 0, None, "it declares no gradient (forward only)")
    refusal = backend.refusal(a, kv, None)
    try:
        kernel = None if refusal else _timed_call(backend, key.mode, a, kv, None, **layout)
    except UnsupportedInputError as error:  # packed sequences through an adapter its limits refuse
        kernel, refusal = None, str(error)
    run = _forward_or_both(lambda: kernel()[0], [a, kv], key.mode)
    elements = a.numel()
    # forward reads a, kv and writes h; backward also reads dh, a, h and writes da, dkv
    tensors = 8 if key.mode == BACKWARD else 3
    gradients = key.mode == BACKWARD
    check = lambda: check_scan(backend, a.detach(), kv.detach(), None, gradients=gradients, **layout)
    outside = lambda: backend.tolerance(dtype).domain.violations(
        gates_seen(backend, a.detach(), cu_seqlens),
        references=scan_references(a.detach(), kv.detach(), None, gradients and backend.differentiable, **layout))
    return Case(key, run, tensors * elements * _itemsize(dtype), key.B * key.L, check, refusal, outside)


def floor_case(key):
    """The bandwidth floor for the key's mode (floor.py); backend 'floor_prealloc' writes into buffers
    made once instead of fresh ones, 'copy' measures the copy bandwidth."""
    dtype, device = DTYPES[key.dtype], key.device
    x, y, _ = scan_inputs(key.B, key.L, key.D, dtype, with_h0=False, device=device)
    if key.backend == "copy":
        floor = copy_pass(x)
    else:
        floor = floor_pass(x, y, key.mode, preallocated=key.backend == "floor_prealloc")
    return Case(key, floor.run, floor.tensors * x.numel() * _itemsize(dtype), key.B * key.L)


def conv_case(key):
    """A convolution backend on a precomputed DSS kernel: where `fft` overtakes `direct`."""
    dtype, device = DTYPES[key.dtype], key.device
    backend = get_conv_backend(key.backend)
    u, K = conv_inputs(key.B, key.L, key.D, dtype, "fast", seed=key.L, device=device)
    refusal = backend.refusal(u, K[: u.shape[1]])
    kernel = None if refusal else _timed_call(backend, key.mode, u, K)
    run = _forward_or_both(kernel, [u, K], key.mode)
    check = lambda: check_conv(backend, u.detach(), K.detach(), gradients=key.mode == BACKWARD)
    # forward reads u, K and writes y; backward also reads dy and writes du, dK
    both = key.mode == BACKWARD
    moved = (4 if both else 2) * u.numel() * _itemsize(dtype) + (2 if both else 1) * K.numel() * K.element_size()
    return Case(key, run, moved, key.B * key.L, check, refusal)


def dss_case(key):
    dtype, device = DTYPES[key.dtype], key.device
    mode, _, name = key.backend.partition(":")
    Lambda, C = dss_parameters(key.N, key.D, dtype, "fast", seed=key.L, device=device)
    u = torch.randn(key.B, key.L, key.D, generator=torch.Generator().manual_seed(key.L),
                    dtype=torch.float64).to(dtype=dtype, device=device)
    paths = {"scan_backend": name} if mode == "recurrent" else {"conv_backend": name}
    forward = lambda: dss_forward(u, Lambda, C, mode, **paths)
    run = _forward_or_both(forward, [u, Lambda, C], key.mode)

    def check():
        """y against the oracle; forward+backward also every gradient, before any backward time counts."""
        tol = path_tolerance(dtype, mode, **paths)
        picked, ref, scale = dss_reference(u, Lambda, C)
        with torch.no_grad():
            verdicts = [judge_output("y", forward().cpu()[..., picked], ref, scale, tol)]
        if key.mode == BACKWARD:
            verdicts += check_dss_gradients(lambda *leaves: dss_forward(*leaves, mode, **paths), u, Lambda, C, tol)
        return verdicts
    # forward reads u and writes y; backward also reads dy and writes du (Lambda and C are N and H*N)
    tensors = 4 if key.mode == BACKWARD else 2
    return Case(key, run, tensors * u.numel() * _itemsize(dtype), key.B * key.L, check)


def _layer(path, dim, modes):
    kind, _, rest = path.partition(":")
    if kind == "gate_loop":
        return "gate_loop", SimpleGateLoopLayer(dim, backend=rest)
    mode, _, name = rest.partition(":")
    paths = {"scan_backend": name} if mode == "recurrent" else {"conv_backend": name}
    return "gss", GSS(dim=dim, dim_expansion_factor=2, dss_kernel_N=modes, dss_kernel_H=dim, mode=mode, **paths)


def layer_case(key):
    """Layers end to end: 'gate_loop:<scan backend>' or 'gss:conv:<conv backend>' / 'gss:recurrent:<scan backend>'.
    Forward+backward takes the gradient of the input and of every parameter, as a training step does,
    and its check compares each of them with the float64 reference layer's before any time counts."""
    dtype, device = DTYPES[key.dtype], key.device
    torch.manual_seed(0)
    kind, layer = _layer(key.backend, key.D, key.N or 64)
    reference_path = "gate_loop:sequential" if kind == "gate_loop" else "gss:conv:direct"
    layer = layer.to(dtype=dtype, device=device)
    x = torch.randn(key.B, key.L, key.D, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64).to(dtype=dtype, device=device)
    run = _forward_or_both(lambda: layer(x), [x, *layer.parameters()], key.mode)

    def check():
        torch.manual_seed(0)
        _, reference = _layer(reference_path, key.D, key.N or 64)
        reference.load_state_dict(layer.state_dict())
        reference = reference.double()
        tol = lookup("layer", kind, dtype)
        x_ref = x.detach().cpu().double()
        if key.mode != BACKWARD:
            with torch.no_grad():
                return [judge_normwise("out", layer(x).cpu(), reference(x_ref), tol.rtol, tol.atol)]
        x_in, x_ref = x.detach().requires_grad_(), x_ref.requires_grad_()
        out, want = layer(x_in), reference(x_ref)
        # the upstream gradient in the layer's dtype, and the reference starting from the same numbers
        upstream = torch.randn(want.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        upstream = upstream.to(dtype).double()
        names = ["x"] + [name for name, _ in layer.named_parameters()]
        reference_params = dict(reference.named_parameters())
        got = torch.autograd.grad(out, [x_in, *layer.parameters()], upstream.to(dtype=dtype, device=device))
        expected = torch.autograd.grad(want, [x_ref, *(reference_params[n] for n in names[1:])], upstream)
        return [judge_normwise("out", out.detach().cpu(), want, tol.rtol, tol.atol)] + [
            judge_normwise(f"d{name}", g.cpu(), w, tol.grad_rtol, tol.atol) for name, g, w in zip(names, got, expected)]
    return Case(key, run, 0, key.B * key.L, check)


def alloc_case(key):
    """Allocates and touches B * L * D elements of the dtype: proves the memory method measures what it should."""
    shape, dtype = (key.B, key.L, key.D), DTYPES[key.dtype]
    return Case(key, lambda: torch.ones(shape, dtype=dtype, device=key.device), key.B * key.L * key.D * _itemsize(dtype), 0)


def _decode_case(key):
    from .decode import decode_case

    return decode_case(key, Case, DTYPES, _timed_call)


def _decode_floor_case(key):
    from .decode import decode_floor

    return decode_floor(key, Case, DTYPES)


BUILDERS = {"scan": scan_case, "varlen": scan_case, "decode": _decode_case, "decode_floor": _decode_floor_case, "floor": floor_case, "conv": conv_case, "dss": dss_case, "layer": layer_case, "alloc": alloc_case}


def floor_family(family):
    """The family a group's floors are built as: the decode family's is the fused state update."""
    return "decode_floor" if family == "decode" else "floor"


def build(key: CaseKey):
    if key.family not in BUILDERS:
        raise ValueError(f"unknown case family {key.family!r}; known: {', '.join(BUILDERS)}")
    return BUILDERS[key.family](key)
