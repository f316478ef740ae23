"""Applying a DSS layer: as a convolution with its kernel, or as N complex diagonal recurrences.

    recurrent:  x_t[h, n] = exp(Lambda_n) * x_{t-1}[h, n] + u_t[h],   y_t[h] = Re sum_n C'[h, n] x_t[h, n]

which equals the convolution with dss_kernel (unroll x_t). It runs on any scan backend, gives a
state (B, H, N) to decode step by step, never builds the (N, L) kernel matrix, and restarts at each
boundary of packed sequences (cu_seqlens), which the conv mode cannot. Its states
(B, L, H, N) are gigabytes at the seed's sizes, so L is processed in chunks of at most
STATE_ELEMENTS states, each contracted with C' before the next.
"""
import torch
from einops import einsum, rearrange, repeat

from ..conv import all_conv_backends, get_conv_backend
from ..layouts import check_cu_seqlens
from ..scan import all_scan_backends, get_scan_backend
from ..validation import require_rank, require_same
from ..tolerances import dss_path_tolerance
from .kernel import COMPLEX_FOR, check_dss_parameters, discretised_C, dss_kernel

MODES = ("conv", "recurrent")
STATE_ELEMENTS = 2 ** 22  # complex states per chunk: 32 MiB in complex64
DEFAULT_SCAN_BACKEND = "assoc"  # the fastest exact backend on CPU in reports/; pass scan_backend= to choose
DEFAULT_CONV_BACKEND = "fft"


def check_dss_inputs(u, Lambda, C):
    require_rank("u", u, 3, "(B, L, H)")
    check_dss_parameters(Lambda, C)
    if u.dtype not in COMPLEX_FOR:
        raise TypeError(f"u must be float32 or float64, got {u.dtype}")
    if Lambda.dtype != COMPLEX_FOR[u.dtype]:
        raise TypeError(f"Lambda and C must be {COMPLEX_FOR[u.dtype]} to match u ({u.dtype}); got {Lambda.dtype}")
    if C.shape[0] != u.shape[2]:
        raise ValueError(f"C must have shape (H, N) with H = {u.shape[2]} to match u {tuple(u.shape)}; got {tuple(C.shape)}")
    require_same("device", "u", u, "Lambda", Lambda)


def dss_recurrent(u, Lambda, C, scan_backend=None, state=None, cu_seqlens=None):
    """(y, state): y (B, L, H) and the final state (B, H, N); `state` continues a previous call.

    cu_seqlens: u (1, L, H) holds packed sequences (impls/layouts.py), each filtered on its own from
    its own state[i]; the state is then (num sequences, H, N), each sequence's final one."""
    check_dss_inputs(u, Lambda, C)
    scan = get_scan_backend(scan_backend or DEFAULT_SCAN_BACKEND)
    if Lambda.dtype not in scan.dtypes:
        raise ValueError(f"scan_backend {scan.name!r} cannot run DSS in recurrent mode: its states are {Lambda.dtype} "
                         f"and it takes {', '.join(str(d) for d in scan.dtypes)}; choose one that takes complex")
    batch, length, channels = u.shape
    modes = Lambda.shape[0]
    if cu_seqlens is not None:
        check_cu_seqlens(cu_seqlens, u, u, inputs="u")
    rows = batch if cu_seqlens is None else cu_seqlens.numel() - 1  # a state per batch row, or per sequence
    if state is not None:
        require_rank("state", state, 3, "(B, H, N)" if cu_seqlens is None else "(num sequences, H, N)")
        if tuple(state.shape) != (rows, channels, modes):
            raise ValueError(f"state must have shape {'(B, H, N)' if cu_seqlens is None else '(num sequences, H, N)'} = "
                             f"{(rows, channels, modes)}, got {tuple(state.shape)}")
        state = rearrange(state, "r h n -> r (h n)")
    C_step = discretised_C(Lambda, C)  # (h n)
    gate = Lambda.exp()  # (n)
    if length == 0 or modes == 0:  # no step, or a sum over no modes: y is zero, the state stays
        if state is None:
            return u.new_zeros(u.shape), torch.zeros(rows, channels, modes, dtype=Lambda.dtype, device=u.device)
        return u.new_zeros(u.shape), state.reshape(rows, channels, modes)  # einops cannot split an empty axis
    if cu_seqlens is not None and state is None:
        state = torch.zeros(rows, channels * modes, dtype=Lambda.dtype, device=u.device)
    chunk = max(1, STATE_ELEMENTS // max(1, batch * channels * modes))
    outputs = []
    for start in range(0, length, chunk):
        u_chunk = u[:, start:start + chunk].to(Lambda.dtype)  # (b c h)
        steps = u_chunk.shape[1]
        kv = repeat(u_chunk, "b c h -> b c (h n)", n=modes)
        a = repeat(gate, "n -> b c (h n)", b=batch, c=steps, h=channels)
        if cu_seqlens is None:
            x, state = scan(a, kv, h0=state)  # (b c (h n))
        else:
            x, state = _packed_chunk(scan, a, kv, state, cu_seqlens, start)
        x = rearrange(x, "b c (h n) -> b c h n", n=modes)
        outputs.append(einsum(x, C_step, "b c h n, h n -> b c h").real)
    y = torch.cat(outputs, dim=1)
    return y, rearrange(state, "r (h n) -> r h n", n=modes)


def _packed_chunk(scan, a, kv, state, cu_seqlens, start):
    """One chunk [start, start + c) of a packed row: the pieces of the sequences it holds scanned on
    their own, the first from the state its sequence reached in the chunks before, the others from
    their own start; (x (1 c d), every sequence's state after this chunk (n d))."""
    offsets = cu_seqlens.tolist()
    end = start + a.shape[1]
    held = [i for i in range(len(offsets) - 1) if offsets[i] < end and offsets[i + 1] > start]  # non-empty, here
    cuts = [max(offsets[i], start) - start for i in held] + [end - start]
    index = torch.tensor(held, dtype=torch.long, device=a.device)
    x, last = scan(a, kv, h0=state[index], cu_seqlens=torch.tensor(cuts, dtype=cu_seqlens.dtype, device=a.device))
    return x, state.index_copy(0, index, last)  # out of place: autograd reaches every sequence's start


def path_tolerance(u_dtype, mode, scan_backend=None, conv_backend=None):
    """The declared accuracy of one DSS path for inputs of u_dtype (see impls/tolerances.py)."""
    if mode == "recurrent":
        backend_tolerance = get_scan_backend(scan_backend or DEFAULT_SCAN_BACKEND).tolerance(COMPLEX_FOR[u_dtype])
    else:
        backend_tolerance = get_conv_backend(conv_backend or DEFAULT_CONV_BACKEND).tolerance(u_dtype)
    return dss_path_tolerance(backend_tolerance, u_dtype)


def _require_known(argument, name, registry):
    """A backend named for the mode not taken is still checked: a misspelt name must not pass unseen."""
    if name is not None and name not in registry():
        raise ValueError(f"{argument} {name!r} is not a known backend; known: {', '.join(registry())}")


def refuse_packed_conv(mode, cu_seqlens):
    if cu_seqlens is not None and mode != "recurrent":
        raise ValueError(f"cu_seqlens needs mode='recurrent': the {mode} mode convolves the whole packed row, so one "
                         "sequence's inputs would reach the sequences after it; the recurrent mode restarts each")


def dss_forward(u, Lambda, C, mode, scan_backend=None, conv_backend=None, cu_seqlens=None):
    """y (B, L, H) = causal convolution of u (B, L, H) with dss_kernel(Lambda, C, L), by `mode`;
    cu_seqlens (recurrent mode only): u (1, L, H) holds packed sequences, each filtered on its own."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _require_known("scan_backend", scan_backend, all_scan_backends)
    _require_known("conv_backend", conv_backend, all_conv_backends)
    refuse_packed_conv(mode, cu_seqlens)
    if mode == "recurrent":
        return dss_recurrent(u, Lambda, C, scan_backend, cu_seqlens=cu_seqlens)[0]
    check_dss_inputs(u, Lambda, C)
    conv = get_conv_backend(conv_backend or DEFAULT_CONV_BACKEND)
    return conv(u, dss_kernel(Lambda, C, u.shape[1]).to(u.dtype))
