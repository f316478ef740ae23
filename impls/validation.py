"""Up-front checks shared by every backend: a bad argument fails here, by name, before any work."""
import torch

from .layouts import check_cu_seqlens


def require_tensor(name, value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def require_rank(name, value, rank, layout):
    require_tensor(name, value)
    if value.ndim != rank:
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(value.shape)} (rank {value.ndim})")


def require_same(what, name_a, a, name_b, b):
    """what is 'dtype' or 'device'; mismatches are TypeError for dtypes, ValueError for devices."""
    va, vb = getattr(a, what), getattr(b, what)
    if va != vb:
        error = TypeError if what == "dtype" else ValueError
        raise error(f"{name_a} and {name_b} must have the same {what}; got {name_a} {va} and {name_b} {vb}")


def require_supported(backend, name, value):
    if value.dtype not in backend.dtypes:
        supported = ", ".join(str(d) for d in backend.dtypes)
        raise TypeError(f"{backend.kind} backend {backend.name!r} does not support {name} dtype {value.dtype}; "
                        f"supported: {supported}")
    if value.device.type not in backend.devices:
        raise ValueError(f"{backend.kind} backend {backend.name!r} does not run on device {value.device}; "
                         f"supported device types: {', '.join(backend.devices)}")


def check_scan_inputs(backend, a, kv, h0, cu_seqlens=None):
    require_rank("a", a, 3, "(B, L, D)")
    require_rank("kv", kv, 3, "(B, L, D)")
    if a.shape != kv.shape:
        raise ValueError(f"a and kv must have the same shape (B, L, D); got a {tuple(a.shape)} and kv {tuple(kv.shape)}")
    require_same("dtype", "a", a, "kv", kv)
    require_same("device", "a", a, "kv", kv)
    require_supported(backend, "a", a)
    if cu_seqlens is not None:
        check_cu_seqlens(cu_seqlens, a, kv)
    if h0 is None:
        return
    rows = "(B, D)" if cu_seqlens is None else "(N, D), one state per packed sequence,"
    require_rank("h0", h0, 2, rows)
    expected = (a.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1, a.shape[2])
    if tuple(h0.shape) != expected:
        raise ValueError(f"h0 must have shape {rows} = {expected} to match a {tuple(a.shape)}"
                         + ("" if cu_seqlens is None else f" and {expected[0]} sequences in cu_seqlens")
                         + f"; got {tuple(h0.shape)}")
    require_same("dtype", "h0", h0, "a", a)
    require_same("device", "h0", h0, "a", a)


def check_conv_inputs(backend, u, K):
    require_rank("u", u, 3, "(B, L, H)")
    require_rank("K", K, 2, "(L_K, H) with L_K >= L")
    length, channels = u.shape[1], u.shape[2]
    if K.shape[1] != channels:
        raise ValueError(f"K must have shape (L_K, H) with H = {channels} to match u {tuple(u.shape)}; "
                         f"got K {tuple(K.shape)}")
    if K.shape[0] < length:
        raise ValueError(f"K is shorter than the input: K has {K.shape[0]} taps, u has length L = {length}; "
                         f"a causal convolution needs L_K >= L")
    require_same("dtype", "u", u, "K", K)
    require_same("device", "u", u, "K", K)
    require_supported(backend, "u", u)


def nonfinite(why, **named):
    """A declared limit (Backend.limits): which named tensor holds a NaN or inf, and `why` that matters;
    None when all are finite. It reads the data, so it runs once per case, not in a timed call."""
    for name, value in named.items():
        if not bool(torch.isfinite(value).all()):
            return f"{name} must be finite (no NaN or inf): {why}"
    return None
