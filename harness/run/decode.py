"""The decode family: one generation step of every scan backend and of the layers over it, from a
state, at B in `batches` and D in `widths` (perf sweep, family `decode`), and generation end to end.

    scan:<backend>                 h = a * h0 + kv: the scan at L = 1 from h0           (B, D) state
    gate_loop_operator:<backend>   out = q * h, the operator with its cache (public call) (B, D)
    gate_loop:<backend>            SimpleGateLoopLayer(D), one token with its cache      (B, D)
    gss:<backend>                  GSS(dim=D), recurrent, one token with its cache      (B, H, N) complex
    lm:<backend>                   GatedStateSpacesLM(dim=D, depth=2), one token         a state per layer
    generate:recurrent|conv        GatedStateSpacesLM generating GENERATED tokens after an L-token prompt:
                                   step by step from the cache, or the conv mode run on the growing
                                   prefix each token (the seed's only way); B = 1, D = GENERATION_DIM

A step is checked before it is timed: the scan's against the oracle from the same state, a layer's
output against the same layer's full forward over the prefix and the step. The floor (backend
`floor`) is the fused state update moving a step's bytes, torch.addcmul(kv, a, h0): what any
backend must at least do per token; `scan` and `gate_loop_operator` are judged against it, the
layers (whose step is mostly their linear maps) are not.
"""
import functools

import torch

from ...impls import GatedStateSpacesLM, GSS, SimpleGateLoopLayer, get_scan_backend
from ...impls.layers.gate_loop import gate_loop_operator
from ...impls.tolerances import lookup

from ..results.case_key import CaseKey
from ..measure.inputs import scan_inputs
from ..check.verify import check_scan, judge_normwise

PREFIX = 3  # tokens a layer's cache has seen before the timed step
GENERATED = 256  # tokens generate:* produces after its prompt
GENERATION_DIM = 64
LM_SIZES = dict(num_tokens=256, depth=2, dim_expansion_factor=2, dss_kernel_N=16)
LAYER_DTYPES = ("float32", "float64")  # the layers' declared tolerances (impls/tolerances.py)


def decode_groups(config, device):
    """(unit_id, [CaseKey, ...]) per (dtype, B, D): every path of every backend, interleaved; then the
    generation pair."""
    from .perf import default_backends

    backends = config.get("backends") or default_backends("scan", device)
    groups = []
    for dtype in config["dtypes"]:
        for batch in [config["batch"]] if config.get("batch") else config["batches"]:
            for width in [config["channels"]] if config.get("channels") else config["widths"]:
                keys = [CaseKey(family="decode", device=device, dtype=dtype, mode="forward", B=batch, L=1, D=width,
                                N=0, backend=f"{path}:{name}")
                        for path in config["paths"] for name in backends]
                groups.append((f"decode|{dtype}|{batch}|{width}", keys))
    for prompt in config["lengths"]:
        keys = [CaseKey(family="decode", device=device, dtype="float32", mode="forward", B=1, L=prompt,
                        D=GENERATION_DIM, N=0, backend=f"generate:{mode}") for mode in ("recurrent", "conv")]
        groups.append((f"decode|generate|{prompt}", keys))
    return groups


def decode_case(key, Case, dtypes, timed_call):
    """The Case (harness/run/cases.py) of one decode key; `timed_call`: cases._timed_call, the checked
    kernel call (with its fallback for an `ab` BASE older than Backend.kernel)."""
    dtype = dtypes[key.dtype]
    path, _, name = key.backend.partition(":")
    if path == "generate":
        return _generation_case(key, Case, name)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if path in ("scan", "gate_loop_operator"):
        # scan: a, kv, h0 read, h written; the operator also reads q and writes out
        tensors = 4 if path == "scan" else 6
        return _scan_step_case(key, Case, dtype, path, name, tensors * key.B * key.D * itemsize, timed_call)
    if key.dtype not in LAYER_DTYPES:
        return Case(key, None, 0, 0, refusal=f"the layers declare tolerances for {', '.join(LAYER_DTYPES)} only")
    return _layer_step_case(key, Case, dtype, path, name)


def _scan_step_case(key, Case, dtype, path, name, state_bytes, timed_call):
    backend = get_scan_backend(name)
    a, kv, h0 = scan_inputs(key.B, 1, key.D, dtype, seed=key.D, device=key.device)
    refusal = backend.refusal(a, kv, h0) or backend.unsupported(key.device, dtype)
    if refusal:
        return Case(key, None, 0, 0, refusal=refusal)
    # no torch.no_grad() around each step: no input needs a gradient, and entering and leaving it
    # cost about 1 us a step here, which the floor does not pay (a model enters it once per generation)
    if path == "scan":
        run = timed_call(backend, "forward", a, kv, h0)
    else:  # through its public call, as a model calls it each step: its scan's checks included
        q = torch.randn_like(a)
        run = lambda: gate_loop_operator(q, kv, a, cache=h0, backend=backend)
    check = lambda: check_scan(backend, a, kv, h0, gradients=False)  # the oracle from the same state
    return Case(key, run, state_bytes, key.B, check)


@functools.lru_cache(maxsize=8)
def _layer(path, name, width, dtype, device):
    torch.manual_seed(0)
    if path == "gate_loop":
        layer = SimpleGateLoopLayer(width, backend=name)
    elif path == "gss":
        layer = GSS(dim=width, dim_expansion_factor=2, dss_kernel_N=16, dss_kernel_H=min(width, 512),
                    mode="recurrent", scan_backend=name)
    elif path == "lm":
        layer = GatedStateSpacesLM(dim=width, dss_kernel_H=min(width, 512), mode="recurrent", scan_backend=name,
                                   **LM_SIZES)
    else:
        raise ValueError(f"unknown decode path {path!r}; known: scan, gate_loop_operator, gate_loop, gss, lm, generate")
    return layer.to(dtype=dtype, device=device).eval()


def _layer_step_case(key, Case, dtype, path, name):
    scan = get_scan_backend(name)
    state_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    if path in ("gss", "lm") and state_dtype not in scan.dtypes:
        return Case(key, None, 0, 0, refusal=f"the DSS state is {state_dtype} and {name} does not take it")
    if scan.unsupported(key.device, dtype if path == "gate_loop" else state_dtype):
        return Case(key, None, 0, 0, refusal=scan.unsupported(key.device, dtype if path == "gate_loop" else state_dtype))
    layer = _layer(path, name, key.D, dtype, key.device)
    g = torch.Generator().manual_seed(key.D)
    if path == "lm":
        tokens = torch.randint(0, LM_SIZES["num_tokens"], (key.B, PREFIX + 1), generator=g).to(key.device)
    else:
        tokens = torch.randn(key.B, PREFIX + 1, key.D, generator=g, dtype=torch.float64).to(dtype=dtype, device=key.device)
    with torch.no_grad():
        _, cache = layer(tokens[:, :PREFIX], return_cache=True)
    step = tokens[:, PREFIX:]

    def run():
        with torch.no_grad():
            layer(step, cache=cache, return_cache=True)

    def check():
        """The step's output from the cache against the full forward's at that position."""
        with torch.no_grad():
            got, _ = layer(step, cache=cache, return_cache=True)
            want = layer(tokens)[:, PREFIX:]
        tol = lookup("layer", "gate_loop" if path == "gate_loop" else "gss", dtype)
        return [judge_normwise("out", got.double().cpu(), want.double().cpu(), tol.rtol, tol.atol)]
    return Case(key, run, 0, key.B, check)  # no floor: a layer's step is its linear maps (D^2), not the state


def _generation_case(key, Case, mode):
    """GENERATED greedy tokens after a key.L-token prompt, one call; its check generates by the cache,
    then runs the conv mode once over the prompt and the tokens fed, and compares the logits of every
    position stepped (greedy choices could part on a near tie, so the conv mode is not left to choose)."""
    torch.manual_seed(0)
    recurrent = GatedStateSpacesLM(dim=key.D, dss_kernel_H=key.D, mode="recurrent", scan_backend="native"
                                   if get_scan_backend("native").available else "assoc", **LM_SIZES).eval()
    conv = GatedStateSpacesLM(dim=key.D, dss_kernel_H=key.D, mode="conv", conv_backend="fft", **LM_SIZES).eval()
    conv.load_state_dict(recurrent.state_dict())
    prompt = torch.randint(0, LM_SIZES["num_tokens"], (1, key.L), generator=torch.Generator().manual_seed(key.L))

    def by_cache():
        """(the tokens fed, each step's logits): the first token from the prompt's last logits."""
        logits, cache = recurrent(prompt, return_cache=True)
        token, fed, steps = logits[:, -1:].argmax(-1), [], []
        for _ in range(GENERATED):
            fed.append(token)
            logits, cache = recurrent(token, cache=cache, return_cache=True)
            steps.append(logits)
            token = logits.argmax(-1)
        return torch.cat(fed, dim=1), torch.cat(steps, dim=1)

    def by_prefix():
        tokens = prompt
        for _ in range(GENERATED):
            tokens = torch.cat([tokens, conv(tokens)[:, -1:].argmax(-1)], dim=1)
        return tokens

    def run():
        with torch.no_grad():
            (by_cache if mode == "recurrent" else by_prefix)()

    def check():
        with torch.no_grad():
            fed, stepped = by_cache()
            teacher = conv(torch.cat([prompt, fed], dim=1))[:, key.L:]  # the same positions, all at once
        tol = lookup("layer", "gss", torch.float32)
        return [judge_normwise("logits", stepped.double(), teacher.double(), tol.rtol, tol.atol)]
    return Case(key, run, 0, GENERATED, check)


def decode_floor(key, Case, dtypes):
    """The fused state update moving a step's bytes: read a, kv, h0, write h (backend 'floor'), or
    into a buffer made once ('floor_prealloc'); 'copy' (CUDA sweeps) copies the state."""
    dtype = dtypes[key.dtype]
    a, kv, h0 = scan_inputs(key.B, 1, key.D, dtype, seed=key.D, device=key.device)
    a, kv = a[:, 0], kv[:, 0]  # (b d)
    if key.backend == "copy":
        out = torch.empty_like(h0)
        return Case(key, lambda: out.copy_(h0), 2 * h0.numel() * h0.element_size(), key.B)
    if key.backend == "floor_prealloc":
        out = torch.empty_like(a)
        run = lambda: torch.addcmul(kv, a, h0, out=out)
    else:
        run = lambda: torch.addcmul(kv, a, h0)
    return Case(key, run, 4 * a.numel() * a.element_size(), key.B)
