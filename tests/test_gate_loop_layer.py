"""gate_loop_operator and SimpleGateLoopLayer over every scan backend."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from einops import rearrange

from scanlab.harness.check.verify import judge_output
from scanlab.impls import SimpleGateLoopLayer, gate_loop_operator, oracle
from scan_params import BACKENDS
from scanlab.harness.check.strategies import sequence_lengths

FLOAT32 = {name: b.tolerance(torch.float32) for name, b in BACKENDS.items()}


def _layer(backend, **kwargs):
    torch.manual_seed(0)
    return SimpleGateLoopLayer(8, backend=backend, **kwargs)


@pytest.mark.parametrize("reverse", [False, True])
@given(length=sequence_lengths(jit=True, max_len=200))
def test_same_output_under_every_backend(reverse, length):
    """out = q * h: each backend's output is within its declared scan tolerance, times |q|, of the oracle's."""
    x = torch.randn(2, length, 8, generator=torch.Generator().manual_seed(length))
    reference = _layer("sequential", reverse=reverse)
    x_in = x.flip(1) if reverse else x
    q, kv, a = rearrange(reference.to_qkva(reference.norm(x_in)), "b n (three d) -> three b n d", three=3)
    h_ref, _ = oracle(a.sigmoid(), kv)
    scale, _ = oracle(a.sigmoid().abs(), kv.abs())
    expected, allowed_scale = q.double() * h_ref, q.double().abs() * scale
    if reverse:
        expected, allowed_scale = expected.flip(1), allowed_scale.flip(1)
    for name in BACKENDS:
        layer = _layer(name, reverse=reverse)
        layer.load_state_dict(reference.state_dict())
        tol = FLOAT32[name]
        with torch.no_grad():
            assert judge_output("out", layer(x), expected, allowed_scale, tol).passed, name


def test_post_layernorm_normalises_the_gated_output():
    layer = _layer("assoc", post_ln=True)
    plain = _layer("assoc")
    plain.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("maybe_post_ln")})
    x = torch.randn(2, 9, 8)
    assert torch.allclose(layer(x), torch.nn.functional.layer_norm(plain(x), (8,)), atol=1e-5)


@pytest.mark.parametrize("name", list(BACKENDS))
@given(data=st.data())
def test_cached_decoding_equals_full_forward(name, data):
    length = data.draw(st.integers(1, 12), label="L")
    split = data.draw(st.integers(0, length), label="prefix")
    layer = _layer(name).double()
    x = torch.randn(2, length, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(length))
    full = layer(x)
    pieces, cache = [], None
    prefix, cache = layer(x[:, :split], cache=cache, return_cache=True)
    pieces.append(prefix)
    for t in range(split, length):  # then one token at a time
        out, cache = layer(x[:, t:t + 1], cache=cache, return_cache=True)
        pieces.append(out)
    assert torch.allclose(torch.cat(pieces, dim=1), full, rtol=1e-9, atol=1e-12)


def test_reverse_refuses_a_cache():
    with pytest.raises(ValueError, match="reverse=False"):
        _layer("assoc", reverse=True)(torch.randn(1, 3, 8), return_cache=True)


def test_operator_cache_continues_the_sequence():
    q, kv, a = torch.randn(1, 6, 4), torch.randn(1, 6, 4), torch.rand(1, 6, 4)
    whole, last = gate_loop_operator(q, kv, a)
    first, cache = gate_loop_operator(q[:, :2], kv[:, :2], a[:, :2])
    second, cache = gate_loop_operator(q[:, 2:], kv[:, 2:], a[:, 2:], cache=cache)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)
    assert torch.allclose(cache, last, atol=1e-6)


def test_rmsnorm_divides_by_the_root_mean_square():
    from scanlab.impls.layers.gate_loop import RMSNorm

    x = torch.tensor([[3.0, 4.0]])  # rms = sqrt((9 + 16) / 2)
    norm = RMSNorm(2)
    torch.testing.assert_close(norm(x), x / (12.5 ** 0.5))
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([2.0, -0.5]))  # a learned per-channel gain multiplies
    torch.testing.assert_close(norm(x), x / (12.5 ** 0.5) * torch.tensor([2.0, -0.5]))


def test_the_default_layer_normalises_before_and_not_after():
    from scanlab.impls.layers.gate_loop import RMSNorm

    layer = SimpleGateLoopLayer(4)
    assert isinstance(layer.norm, RMSNorm) and isinstance(layer.maybe_post_ln, torch.nn.Identity)


def test_the_layer_has_the_seeds_parameters_and_no_others():
    """lucidrains' SimpleGateLoopLayer: an RMSNorm gain and one bias-free dim -> 3 dim projection."""
    shapes = {name: tuple(p.shape) for name, p in SimpleGateLoopLayer(4).named_parameters()}
    assert shapes == {"norm.gamma": (4,), "to_qkva.weight": (12, 4)}


PACKED = [3, 0, 1, 7]  # an empty sequence, a one-step one, and the longest last: odd total 11


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", ["assoc", "sequential"])  # the adapted path and a native one
def test_a_packed_row_equals_each_sequence_through_the_layer_alone(name, reverse):
    """Packing for training: each sequence's outputs and (forward) final state are those it has alone,
    in the same row as the others; reverse runs each sequence backwards without reordering them."""
    layer = _layer(name, reverse=reverse).double()
    pieces = [torch.randn(1, n, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(n)) for n in PACKED]
    cu_seqlens = torch.tensor([0, *torch.tensor(PACKED).cumsum(0).tolist()])
    if reverse:
        packed = layer(torch.cat(pieces, 1), cu_seqlens=cu_seqlens)
    else:
        packed, cache = layer(torch.cat(pieces, 1), cu_seqlens=cu_seqlens, return_cache=True)
        assert cache.shape == (len(PACKED), 8)
    for i, piece in enumerate(pieces):
        alone = layer(piece, return_cache=not reverse)
        out = packed[:, cu_seqlens[i]:cu_seqlens[i + 1]]
        if reverse:
            assert torch.allclose(out, alone, rtol=1e-12, atol=1e-12), i
        else:
            alone, state = alone
            assert torch.allclose(out, alone, rtol=1e-12, atol=1e-12), i
            assert torch.allclose(cache[i], state[0], rtol=1e-12, atol=1e-12), i  # zeros for the empty one


def test_a_packed_cache_continues_each_sequence():
    layer = _layer("assoc").double()
    x = torch.randn(1, 10, 8, dtype=torch.float64)
    whole = layer(x, cu_seqlens=torch.tensor([0, 4, 10]))
    head, cache = layer(torch.cat([x[:, :2], x[:, 4:7]], 1), cu_seqlens=torch.tensor([0, 2, 5]), return_cache=True)
    tail = layer(torch.cat([x[:, 2:4], x[:, 7:]], 1), cu_seqlens=torch.tensor([0, 2, 5]), cache=cache)
    assert torch.allclose(torch.cat([head[:, :2], tail[:, :2], head[:, 2:], tail[:, 2:]], 1), whole, atol=1e-12)


@pytest.mark.parametrize("cu_seqlens,message", [
    (torch.tensor([0, 2, 5]), "cu_seqlens"),  # ends at 5, the row holds 6
    (torch.tensor([0.0, 6.0]), "cu_seqlens"),  # offsets are integers
])
def test_bad_offsets_are_refused_naming_cu_seqlens(cu_seqlens, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _layer("assoc")(torch.randn(1, 6, 8), cu_seqlens=cu_seqlens)


def test_a_packed_row_needs_one_cache_state_per_sequence():
    with pytest.raises(ValueError, match="h0"):
        gate_loop_operator(*torch.rand(3, 1, 6, 4), cache=torch.zeros(1, 4), cu_seqlens=torch.tensor([0, 2, 6]))
