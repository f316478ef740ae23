"""DSS, GSS and GatedStateSpacesLM: one set of parameters, every path, step-by-step decoding."""
import pytest
import torch

from scanlab.harness.check.verify import judge_normwise
from scanlab.impls import DSS, GSS, GatedStateSpacesLM, conv_backends, scan_backends
from scanlab.impls.tolerances import lookup

PATHS = [dict(mode="conv", conv_backend=c) for c in conv_backends()] + \
        [dict(mode="recurrent", scan_backend=s) for s, b in scan_backends().items()
         if "cpu" in b.devices and torch.complex64 in b.dtypes]  # DSS states are complex
PATH_IDS = [p.get("conv_backend") or p.get("scan_backend") for p in PATHS]
SIZES = dict(dim=8, dss_kernel_N=6, dss_kernel_H=5)


def _lm(dtype=torch.float64, **path):
    torch.manual_seed(0)
    return GatedStateSpacesLM(num_tokens=11, depth=2, **SIZES, **path).to(dtype)


def _tokens(length=13):
    g = torch.Generator().manual_seed(length)
    return torch.randint(0, 11, (2, length), generator=g), torch.randint(0, 11, (2, length), generator=g)


def test_parameter_names_do_not_depend_on_the_path():
    names = {tuple(_lm(**path).state_dict()) for path in PATHS}
    assert len(names) == 1


def test_parameters_match_the_seed_layout():
    block = GSS(dim=8, dim_expansion_factor=2, dss_kernel_N=6, dss_kernel_H=5)
    assert {n: tuple(p.shape) for n, p in block.dss.named_parameters()} == {
        "norm.weight": (5,), "norm.bias": (5,), "Lambda_real": (6,), "Lambda_imag": (6,),
        "C_real": (5, 6), "C_imag": (5, 6), "param_D": (5,)}
    assert block.to_u[0].weight.shape == (16, 8) and block.to_gate.weight.shape == (16, 5)


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_logits_and_loss_agree_across_paths(path, dtype):
    reference = _lm(torch.float64, mode="conv", conv_backend="direct")
    model = _lm(dtype, **path)
    model.load_state_dict(reference.state_dict())
    tokens, labels = _tokens()
    tol = lookup("layer", "gss", dtype)
    assert judge_normwise("logits", model(tokens), reference(tokens), tol.rtol, tol.atol).passed
    loss, ref_loss = model(tokens, labels=labels), reference(tokens, labels=labels)
    assert loss.ndim == 0
    assert judge_normwise("loss", loss, ref_loss, tol.rtol, tol.atol).passed
    grads = torch.autograd.grad(loss, list(model.parameters()))
    ref_grads = torch.autograd.grad(ref_loss, list(reference.parameters()))
    for (name, _), got, want in zip(model.named_parameters(), grads, ref_grads):
        assert judge_normwise(name, got, want, tol.grad_rtol, tol.atol).passed, name


RECURRENT = [p["scan_backend"] for p in PATHS if p["mode"] == "recurrent"]


@pytest.mark.parametrize("scan_backend", RECURRENT)
def test_step_by_step_decoding_equals_full_forward(scan_backend):
    model = _lm(mode="recurrent", scan_backend=scan_backend)
    tokens, _ = _tokens(9)
    full = model(tokens)
    prefix, cache = model(tokens[:, :4], return_cache=True)
    steps = [prefix]
    for t in range(4, 9):
        logits, cache = model(tokens[:, t:t + 1], cache=cache, return_cache=True)
        steps.append(logits)
    tol = lookup("layer", "gss", torch.float64)
    assert judge_normwise("logits", torch.cat(steps, 1), full, tol.rtol, tol.atol).passed


def test_reverse_seq_flips_time():
    torch.manual_seed(0)
    forward_block = GSS(dim=8, dss_kernel_N=4, dss_kernel_H=4).double()
    backward_block = GSS(dim=8, dss_kernel_N=4, dss_kernel_H=4, reverse_seq=True).double()
    backward_block.load_state_dict(forward_block.state_dict())
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    assert torch.allclose(backward_block(x), forward_block(x.flip(1)).flip(1))


class TestErrors:
    def test_cache_needs_recurrent_mode(self):
        with pytest.raises(ValueError, match="cache needs mode='recurrent'"):
            _lm(mode="conv")(_tokens()[0], return_cache=True)

    def test_reverse_refuses_a_cache(self):
        block = GSS(dim=8, dss_kernel_N=4, dss_kernel_H=4, reverse_seq=True, mode="recurrent")
        with pytest.raises(ValueError, match="reverse_seq=False"):
            block(torch.randn(1, 3, 8), return_cache=True)

    def test_unknown_mode(self):
        with pytest.raises(ValueError, match="mode must be one of"):
            DSS(dim=4, kernel_N=2, mode="fourier")

    def test_cache_length(self):
        with pytest.raises(ValueError, match="one state per layer"):
            _lm(mode="recurrent")(_tokens()[0], cache=[None])

    def test_unknown_scan_backend(self):
        with pytest.raises(ValueError, match="unknown scan backend 'warp'"):
            _lm(mode="recurrent", scan_backend="warp")(_tokens()[0])

    def test_a_scan_backend_without_complex_is_refused_by_name(self):
        with pytest.raises(ValueError, match="scan_backend 'triton' cannot run DSS in recurrent mode"):
            _lm(mode="recurrent", scan_backend="triton")(_tokens()[0])


def test_the_default_shapes_are_the_gss_papers():
    """dim_expansion_factor 4, a DSS of H = 256 channels and N = 512 modes, exp'd imaginary parts, no biases
    but the output projection's (lucidrains' gated-state-spaces, the semantics reproduced here)."""
    block = GSS(dim=8)
    assert block.to_u[0].weight.shape == (32, 8) and block.to_u[0].bias is None
    assert block.to_v[0].weight.shape == (256, 8) and block.to_v[0].bias is None
    assert block.to_gate.weight.shape == (32, 256) and block.to_gate.bias is None
    assert block.dss.Lambda_real.shape == (512,) and block.dss.dss_kernel_lambda_imag_exp
    model = GatedStateSpacesLM(num_tokens=11, dim=8, depth=1)
    assert model.to_logits.bias is None and model.layers[0].dss.C_real.shape == (256, 512)
    assert model.layers[0].to_u[0].weight.shape == (32, 8) and model.layers[0].dss.dss_kernel_lambda_imag_exp
    dss = DSS(dim=4)  # the DSS layer alone has the same defaults
    assert dss.Lambda_real.shape == (512,) and dss.dss_kernel_lambda_imag_exp


def test_dss_adds_the_input_weighted_by_d():
    layer = DSS(dim=3, kernel_N=4)
    u = torch.randn(2, 5, 3)
    with_d = layer(u)
    normed = layer.norm(u)
    with torch.no_grad():
        d = layer.param_D.clone()
        layer.param_D.zero_()
    torch.testing.assert_close(with_d - layer(u), normed * d)


def test_a_gss_block_adds_its_input_back():
    block = GSS(dim=4, dss_kernel_N=8, dss_kernel_H=6)
    with torch.no_grad():
        block.to_out.weight.zero_()
        block.to_out.bias.zero_()
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(block(x), x)


def test_the_conv_mode_refuses_to_return_a_cache_it_does_not_keep():
    with pytest.raises(ValueError, match="cache needs mode='recurrent'"):
        DSS(dim=3, kernel_N=4)(torch.randn(1, 5, 3), return_cache=True)


PACKED = [5, 0, 1, 9, 3]  # an empty sequence and a single step among them; 18 tokens in all
CU = torch.tensor([0, 5, 5, 6, 15, 18])


def _each_alone(run, x, *per_sequence):
    """run(x_i, *rows_i) on each sequence alone: its outputs put back in a row, and its other results."""
    outs, rest = [], []
    for i, (s, e) in enumerate(zip(CU.tolist(), CU[1:].tolist())):
        out, *more = run(x[:, s:e], *(t[i:i + 1] for t in per_sequence))
        outs.append(out)
        rest.append(more)
    return torch.cat(outs, dim=1), rest


@pytest.mark.parametrize("with_state", [True, False], ids=["states", "zero starts"])
@pytest.mark.parametrize("scan_backend", ["assoc", "native"])
def test_packed_dss_filters_each_sequence_alone_across_its_chunks(scan_backend, with_state, monkeypatch):
    """Chunks of 4 steps (STATE_ELEMENTS cut down) put boundaries inside chunks and sequences across
    them: y, each sequence's final state, and the gradients of u, its start state, Lambda and C."""
    from scanlab.impls.dss import forward as dss_module
    from scanlab.harness.measure.inputs import dss_parameters

    monkeypatch.setattr(dss_module, "STATE_ELEMENTS", 4 * 3 * 2)  # 4 steps of H = 3, N = 2
    Lambda, C = dss_parameters(2, 3, torch.float64, seed=1)
    u = torch.randn(1, 18, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    state = torch.randn(5, 3, 2, dtype=torch.complex128, generator=torch.Generator().manual_seed(3))
    if not with_state:
        state = torch.zeros_like(state)
    leaves = [t.clone().requires_grad_() for t in (u, state, Lambda, C)]
    given = leaves[1] if with_state else None  # None: each sequence starts from zero, chunk after chunk
    y, last = dss_module.dss_recurrent(leaves[0], leaves[2], leaves[3], scan_backend, state=given, cu_seqlens=CU)
    alone = [t.clone().requires_grad_() for t in (u, state, Lambda, C)]
    y_ref, rest = _each_alone(lambda u_i, s_i: dss_module.dss_recurrent(u_i, alone[2], alone[3], scan_backend, state=s_i),
                              alone[0], alone[1])
    last_ref = torch.cat([r[0] for r in rest])
    assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-12) and torch.allclose(last, last_ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(last[1], state[1])  # the empty sequence keeps its start
    g = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    used = [0, 1, 2, 3] if with_state else [0, 2, 3]
    got = torch.autograd.grad((y * g).sum() + last.abs().sum(), [leaves[i] for i in used])
    want = torch.autograd.grad((y_ref * g).sum() + last_ref.abs().sum(), [alone[i] for i in used])
    for name, a, b in zip([("u", "state", "Lambda", "C")[i] for i in used], got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), name


@pytest.mark.parametrize("reverse_seq", [False, True])
def test_a_packed_gss_row_gives_each_sequence_what_it_gets_alone(reverse_seq):
    torch.manual_seed(0)
    block = GSS(dim=8, dss_kernel_N=4, dss_kernel_H=4, mode="recurrent", reverse_seq=reverse_seq).double()
    x = torch.randn(1, 18, 8, dtype=torch.float64)
    packed = block(x, cu_seqlens=CU)
    alone, _ = _each_alone(lambda x_i: (block(x_i),), x)
    assert torch.allclose(packed, alone, rtol=1e-12, atol=1e-12)


def test_a_packed_lm_keeps_one_cache_row_per_sequence_and_continues_each():
    model = _lm(mode="recurrent", scan_backend="assoc")
    tokens = torch.randint(0, 11, (1, 18), generator=torch.Generator().manual_seed(5))
    logits, cache = model(tokens, return_cache=True, cu_seqlens=CU)
    alone, rests = _each_alone(lambda t: model(t, return_cache=True), tokens)
    assert torch.allclose(logits, alone, rtol=1e-12, atol=1e-12)
    for layer, state in enumerate(cache):
        assert state.shape == (5, 5, 6)  # (sequences, H, N)
        assert torch.allclose(state, torch.cat([r[0][layer] for r in rests]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", ["dss", "gss", "lm"])
def test_the_conv_mode_refuses_packed_sequences_saying_why(layer):
    x = torch.randn(1, 18, 8)
    run = {"dss": lambda: DSS(dim=8, kernel_N=4)(x, cu_seqlens=CU),
           "gss": lambda: GSS(dim=8, dss_kernel_N=4, dss_kernel_H=4)(x, cu_seqlens=CU),
           "lm": lambda: _lm(torch.float32, mode="conv")(torch.zeros(1, 18, dtype=torch.long), cu_seqlens=CU)}[layer]
    with pytest.raises(ValueError, match="cu_seqlens needs mode='recurrent': the conv mode convolves the whole packed row"):
        run()


def test_packed_dss_checks_its_offsets_and_states_by_name():
    block = DSS(dim=8, kernel_N=4, mode="recurrent")
    with pytest.raises(ValueError, match="cu_seqlens must start at 0 and end at L = 18"):
        block(torch.randn(1, 18, 8), cu_seqlens=torch.tensor([0, 5, 17]))
    with pytest.raises(ValueError, match=r"cu_seqlens packs sequences into one row: u must be \(1, L, D\)"):
        block(torch.randn(2, 18, 8), cu_seqlens=CU)
    backwards = GSS(dim=8, dss_kernel_N=4, dss_kernel_H=4, mode="recurrent", reverse_seq=True)
    with pytest.raises(ValueError, match=r"cu_seqlens must start at 0 and end at L = 18; got 0 \.\. 17"):
        backwards(torch.randn(1, 18, 8), cu_seqlens=torch.tensor([0, 5, 17]))  # as given, not as flipped
    with pytest.raises(ValueError, match=r"state must have shape \(num sequences, H, N\) = \(5, 8, 4\)"):
        block(torch.randn(1, 18, 8), cache=torch.zeros(2, 8, 4, dtype=torch.complex64), cu_seqlens=CU)
