"""Hypothesis strategies, named for what they generate. Inputs themselves come from harness.measure.inputs
(seeded), so a failing example is reproducible from its drawn shape, regime and seed."""
import torch
from hypothesis import event
from hypothesis import strategies as st

from ..measure.inputs import DECAYS, GATE_REGIMES, KV_REGIMES

# Backends that compile per shape draw shapes from these small sets, so each compiles a few times.
JIT_BACKENDS = frozenset({"jax_assoc", "jax_scan"})
JIT_LENGTHS = (1, 2, 7, 64, 127, 1021)
# jax.jit compiles once per shape, dtype and h0-or-not: whole (B, L, D) shapes from a fixed set keep
# the compiles per test at a dozen, where independent draws made ~25.
JIT_SHAPES = ((1, 1, 1), (3, 2, 5), (1, 7, 5), (3, 64, 1), (1, 127, 5), (3, 1021, 1))
# Triton kernels run by the interpreter (tests/triton_interpreter.py) cost ~0.1 ms a step in Python:
# short odd lengths that still cross the interpreter's 16-step tiles. `jit="interpreted"` draws these.
INTERPRETED_BACKENDS = frozenset({"triton", "accelerated_scan_scalar"})
INTERPRETED_LENGTHS = (1, 2, 7, 17, 37, 127)
NOTABLE_LENGTHS = (1, 2, 3, 5, 7, 31, 32, 33, 127, 128, 257, 1021, 1024, 2048, 3001, 4099)

REAL_DTYPES = (torch.float32, torch.float64)
HALF_DTYPES = (torch.bfloat16, torch.float16)
SCAN_DTYPES = REAL_DTYPES + (torch.complex64, torch.complex128) + HALF_DTYPES


def sequence_lengths(jit=False, max_len=4100):
    """Odd, prime, power-of-two and arbitrary lengths from 1 to a few thousand."""
    if jit == "interpreted":
        return st.sampled_from([n for n in INTERPRETED_LENGTHS if n <= max_len])
    if jit:
        return st.sampled_from([n for n in JIT_LENGTHS if n <= max_len])
    return st.one_of(st.sampled_from([n for n in NOTABLE_LENGTHS if n <= max_len]), st.integers(1, max_len))


def batch_sizes(jit=False):
    return st.sampled_from((1, 3)) if jit else st.integers(1, 4)


def channel_counts(jit=False):
    return st.sampled_from((1, 5)) if jit else st.integers(1, 9)


def gate_regimes():
    return st.sampled_from(sorted(GATE_REGIMES))


def kv_regimes():
    return st.sampled_from(sorted(KV_REGIMES))


def kernel_decays():
    return st.sampled_from(sorted(DECAYS))


def seeds():
    return st.integers(0, 2 ** 31 - 1)


@st.composite
def scan_shapes(draw, jit=False, max_len=4100):
    """(B, L, D)."""
    if jit is True:
        return draw(st.sampled_from([s for s in JIT_SHAPES if s[1] <= max_len]), label="shape")
    return (draw(batch_sizes(jit), label="B"), draw(sequence_lengths(jit, max_len), label="L"),
            draw(channel_counts(jit), label="D"))


@st.composite
def scan_input_specs(draw, jit=False, max_len=4100):
    """Keyword arguments for harness.measure.inputs.scan_inputs, dtype excluded."""
    batch, length, channels = draw(scan_shapes(jit, max_len), label="shape")
    spec = dict(batch=batch, length=length, channels=channels,
                gate_regime=draw(gate_regimes(), label="gates"), kv_regime=draw(kv_regimes(), label="kv"),
                seed=draw(seeds(), label="seed"), with_h0=draw(st.booleans(), label="with_h0"))
    _record_draw(spec)
    return spec


def _is_prime(n):
    return n > 1 and all(n % p for p in range(2, int(n ** 0.5) + 1))


def _record_draw(spec):
    """Hypothesis `event`s, so `pytest --hypothesis-show-statistics` shows what was drawn."""
    length = spec["length"]
    event(f"L {'1' if length == 1 else '2-127' if length <= 127 else '128-1023' if length < 1024 else '1024+'}")
    event(f"L {'prime' if _is_prime(length) else 'odd' if length % 2 else 'even'}")
    event(f"gates {spec['gate_regime']}, kv {spec['kv_regime']}")
    event(f"h0 {'given' if spec['with_h0'] else 'none'}")


# Packed layouts for JIT backends: the whole row's length is one of JIT_LENGTHS (one compile of the
# dense path); the segments themselves are free
JIT_PACKINGS = ((7,), (0, 7, 0), (1, 1, 5), (2, 0, 5), (60, 4), (1,) * 7 + (57,))


def chunk_edges(backend):
    """The step counts at which `backend`'s chunks or tiles end (its own constants), where a sequence
    boundary is the interesting case."""
    import importlib

    edges = set()
    try:
        module = importlib.import_module(f"...impls.scan.{backend.name}", __package__)
    except ImportError:  # a plugin's, or a backend with no module of that name: no edges known
        return ()
    for name in ("CHUNK", "BLOCK_T", "TILE", "BACKWARD_STEPS"):
        value = getattr(module, name, None)
        edges |= set(value.values()) if isinstance(value, dict) else {value} if isinstance(value, int) else set()
    return tuple(sorted(edges))


@st.composite
def packed_segment_lengths(draw, edges=(), jit=False, max_len=300):
    """Lengths of the sequences packed in one row: 0 and 1 among them, boundaries just before, at and
    after a chunk edge (the first one, or every one along the row), and one long sequence among many
    short ones."""
    if jit:
        return list(draw(st.sampled_from(JIT_PACKINGS), label="segments"))
    fitting = [e for e in edges if 2 * e + 1 <= max_len]
    if fitting and draw(st.booleans(), label="a boundary at every edge"):
        return draw(boundaries_at_every_edge(fitting, max_len))
    near_edges = [e + d for e in edges for d in (-1, 0, 1) if 0 <= e + d <= max_len] or [8]
    short = st.one_of(st.sampled_from([0, 1, 2]), st.sampled_from(near_edges), st.integers(0, 12))
    lengths = draw(st.lists(short, min_size=1, max_size=8), label="segments")
    if draw(st.booleans(), label="one long"):
        at = draw(st.integers(0, len(lengths)), label="long at")
        lengths.insert(at, draw(st.integers(20, max_len // 2), label="long"))
    event(f"segments {'with' if 0 in lengths else 'without'} an empty one")
    return lengths


@st.composite
def boundaries_at_every_edge(draw, edges, max_len):
    """Lengths whose boundaries fall just before, at or just after each multiple of one chunk edge
    along the row (a chunked kernel meets a boundary in every chunk, not only the first), with an
    empty sequence among them now and then."""
    edge = draw(st.sampled_from(edges), label="edge")
    count = draw(st.integers(1, max(1, min(6, (max_len - 1) // edge - 1))), label="edges crossed")
    cuts = [m * edge + draw(st.sampled_from((-1, 0, 1)), label=f"boundary near {m * edge}") for m in range(1, count + 2)]
    lengths = [later - earlier for earlier, later in zip([0] + cuts, cuts)]
    if draw(st.booleans(), label="an empty one"):
        lengths.insert(draw(st.integers(0, len(lengths)), label="empty at"), 0)
    event(f"boundaries near every multiple of {edge}")
    return lengths
