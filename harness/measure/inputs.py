"""Inputs for every sweep and test, by named regime, generated in float64 on the CPU from a seed
and then cast, so the same case is the same numbers on every device and in every dtype."""
import itertools
import math

import torch

from ...impls.dss.kernel import COMPLEX_FOR

GATE_REGIMES = {
    "sigmoid": "sigmoid(randn): the gate of GateLoop/HGRN layers at init",
    "long_memory": "1 - 10^U(-4,-1): a in [0.9, 0.9999], slow decay",
    "zeros": "sigmoid(randn) with 10% exact zeros (state resets)",
    "ones": "exactly 1 everywhere: the scan is a cumulative sum",
    "signed": "U(-1, 1): negative gates flip the state's sign",
}
KV_REGIMES = {
    "normal": "randn",
    "mixed": "randn * 10^U(-3,3) with 20% exact zeros: both signs, mixed magnitudes",
}
DECAYS = {
    "fast": "Re Lambda = -exp(U(-1, 1)): kernels vanish within tens of steps",
    "slow": "Re Lambda = -exp(U(-9, -5)): kernels barely decay over thousands of steps",
}


def _gates(regime, shape, g):
    if regime == "sigmoid":
        return torch.randn(shape, generator=g, dtype=torch.float64).sigmoid()
    if regime == "long_memory":
        return 1 - 10 ** (-1 - 3 * torch.rand(shape, generator=g, dtype=torch.float64))
    if regime == "zeros":
        gates = torch.randn(shape, generator=g, dtype=torch.float64).sigmoid()
        return gates.masked_fill(torch.rand(shape, generator=g) < 0.1, 0.0)
    if regime == "ones":
        return torch.ones(shape, dtype=torch.float64)
    if regime == "signed":
        return 2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1
    raise ValueError(f"unknown gate regime {regime!r}; known: {', '.join(GATE_REGIMES)}")


def _values(regime, shape, g):
    values = torch.randn(shape, generator=g, dtype=torch.float64)
    if regime == "normal":
        return values
    if regime == "mixed":
        magnitudes = 10 ** (6 * torch.rand(shape, generator=g, dtype=torch.float64) - 3)
        return (values * magnitudes).masked_fill(torch.rand(shape, generator=g) < 0.2, 0.0)
    raise ValueError(f"unknown kv regime {regime!r}; known: {', '.join(KV_REGIMES)}")


def _complexify(x, g):
    """A complex value of the same modulus and a uniform random phase."""
    phase = (2 * torch.rand(x.shape, generator=g, dtype=torch.float64) - 1) * math.pi
    return torch.polar(x.abs(), phase)


def scan_inputs(batch, length, channels, dtype=torch.float32, gate_regime="sigmoid", kv_regime="normal",
                seed=0, with_h0=True, device="cpu"):
    """(a, kv, h0) of shapes (B, L, D), (B, L, D), (B, D) or None; complex dtypes get random phases."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, length, channels)
    a, kv = _gates(gate_regime, shape, g), _values(kv_regime, shape, g)
    h0 = _values(kv_regime, (batch, channels), g) if with_h0 else None
    if dtype.is_complex:
        a, kv = _complexify(a, g), _complexify(kv, g)
        h0 = None if h0 is None else _complexify(h0, g)
    cast = lambda t: None if t is None else t.to(dtype=dtype, device=device)
    return cast(a), cast(kv), cast(h0)


# after a packed row's one long sequence, pieces in turn: empty ones, one step, and lengths either side
# of the backends' chunk and block edges (chunked's 8, native's reverse blocks of 16, GPU chunks of 64)
PACKED_PIECES = (0, 1, 7, 8, 9, 15, 16, 17, 0, 63, 64, 65, 2)


def packed_lengths(length):
    """Lengths of the sequences a packed row of `length` steps holds, summing to it: one long sequence
    (half the row), then PACKED_PIECES in turn, the last cut to fit."""
    pieces, left = [length // 2], length - length // 2
    for piece in itertools.cycle(PACKED_PIECES):
        if left == 0:
            return pieces
        pieces.append(min(piece, left))
        left -= pieces[-1]


def packed_offsets(lengths, device="cpu"):
    """cu_seqlens (N + 1,) int64 for sequence lengths."""
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int64, device=device)


def dss_parameters(modes, channels, dtype=torch.float32, decay="fast", seed=0, device="cpu"):
    """(Lambda (N,), C (H, N)) complex, for float dtype `dtype` of the input they will filter."""
    g = torch.Generator().manual_seed(seed)
    if decay not in DECAYS:
        raise ValueError(f"unknown decay {decay!r}; known: {', '.join(DECAYS)}")
    low, high = {"fast": (-1, 1), "slow": (-9, -5)}[decay]
    real = -torch.exp(low + (high - low) * torch.rand(modes, generator=g, dtype=torch.float64))
    imag = torch.randn(modes, generator=g, dtype=torch.float64).exp()
    C = torch.complex(torch.randn(channels, modes, generator=g, dtype=torch.float64),
                      torch.randn(channels, modes, generator=g, dtype=torch.float64)) / math.sqrt(modes)
    complex_dtype = COMPLEX_FOR[dtype]
    return torch.complex(real, imag).to(complex_dtype).to(device), C.to(complex_dtype).to(device)


def conv_inputs(batch, length, channels, dtype=torch.float32, decay="fast", modes=16, seed=0, device="cpu"):
    """(u (B, L, H), K (L, H)): K is a DSS kernel, so it decays as real kernels do."""
    from ...impls.dss import dss_kernel

    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, channels, generator=g, dtype=torch.float64)
    Lambda, C = dss_parameters(modes, channels, torch.float64, decay, seed + 1)
    return u.to(dtype=dtype, device=device), dss_kernel(Lambda, C, length).to(dtype=dtype, device=device)
