"""The properties of reverse and packed variable-length scans (impls/layouts.py) every backend must
have, native path or adapter: as harness/check/agreement.py, functions of (backend, dtype, Hypothesis data)
run by scanlab's tests (tests/test_layouts.py) and the pytest plugin's suite alike."""
import itertools

import torch
from hypothesis import note
from hypothesis import strategies as st

from ...impls import oracle
from ...impls.layouts import sequences

from .agreement import _failed, is_jit
from ..measure.inputs import scan_inputs
from .strategies import channel_counts, chunk_edges, gate_regimes, kv_regimes, packed_segment_lengths, seeds
from .verify import check_scan, gates_seen, judge_output, scan_references


def _packed_inputs(backend, dtype, data, max_len=300):
    """(a, kv (1, L, D), h0 (N, D) or None, cu_seqlens, where) for drawn segment lengths."""
    lengths = data.draw(packed_segment_lengths(chunk_edges(backend), jit=is_jit(backend), max_len=max_len))
    cu_seqlens = torch.tensor([0, *itertools.accumulate(lengths)])
    channels = data.draw(st.sampled_from((1, 5)) if is_jit(backend) else channel_counts(), label="D")
    gates, kv_regime, seed = data.draw(gate_regimes(), label="gates"), data.draw(kv_regimes(), label="kv"), data.draw(seeds())
    a, kv, _ = scan_inputs(1, int(cu_seqlens[-1]), channels, dtype, gates, kv_regime, seed=seed, with_h0=False)
    h0 = scan_inputs(len(lengths), 1, channels, dtype, seed=seed + 1)[2] if data.draw(st.booleans(), label="h0") else None
    where = f"segments {lengths}, D={channels}, gates {gates}, kv {kv_regime}, seed {seed}, h0 {'given' if h0 is not None else 'none'}"
    return a, kv, h0, cu_seqlens, where


def _in_domain(backend, a, cu_seqlens, references=()):
    """The declared domain, judged on the gates the backend's path sees: with the varlen adapter, a
    zero gate at each sequence's first step (a log-space backend's log span grows by them)."""
    outside = backend.tolerance(a.dtype).domain.violations(gates_seen(backend, a, cu_seqlens), references=references)
    note(f"outside the declared domain: {outside}" if outside else "inside the declared domain")
    return not outside


def packed_sequences_agree_with_oracle(backend, dtype, data):
    """h, each sequence's h_last and (where differentiable) dL/da, dL/dkv, dL/dh0[i] against the
    oracle, which scans each sequence on its own; forward or reverse."""
    a, kv, h0, cu_seqlens, where = _packed_inputs(backend, dtype, data)
    reverse = data.draw(st.booleans(), label="reverse")
    gradients = backend.differentiable and a.shape[1] <= 200
    verdicts = check_scan(backend, a, kv, h0, gradients=gradients, reverse=reverse, cu_seqlens=cu_seqlens)
    references = scan_references(a, kv, h0, gradients, reverse=reverse, cu_seqlens=cu_seqlens)
    if _in_domain(backend, a, cu_seqlens, references):
        assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts, where + f", reverse={reverse}")
    elif not backend.tolerance(dtype).domain.max_value:
        h, h_last = backend(a, kv, h0, reverse=reverse, cu_seqlens=cu_seqlens)
        assert torch.isfinite(h).all() and torch.isfinite(h_last).all(), f"{backend.name}: non-finite outside its domain"


def packed_equals_each_sequence_alone(backend, dtype, data):
    """The packed call equals the backend's own dense call on each sequence from its h0[i]."""
    a, kv, h0, cu_seqlens, where = _packed_inputs(backend, dtype, data)
    if not _in_domain(backend, a, cu_seqlens, scan_references(a, kv, h0, False, cu_seqlens=cu_seqlens)):
        return
    h, h_last = backend(a, kv, h0, cu_seqlens=cu_seqlens)
    tol = backend.tolerance(dtype)
    scale, scale_last = oracle(a.abs(), kv.abs(), None if h0 is None else h0.abs(), cu_seqlens=cu_seqlens)
    alone, alone_last = [], []
    for i, (start, end) in enumerate(sequences(cu_seqlens)):
        first = None if h0 is None else h0[i:i + 1]
        if end == start:
            alone_last.append(kv.new_zeros(kv.shape[2]) if first is None else first[0])
            continue
        states, last = backend(a[:, start:end], kv[:, start:end], first)
        alone.append(states)
        alone_last.append(last[0])
    wide = torch.complex128 if dtype.is_complex else torch.float64
    reference = torch.cat(alone, dim=1).to(wide) if alone else h.to(wide)
    # both sides carry their own rounding, hence twice the declared tolerance
    doubled = type(tol)(2 * tol.rtol, tol.atol, tol.grad_rtol, tol.domain, tol.norm)
    verdicts = [judge_output("h", h, reference, scale, doubled),
                judge_output("h_last", h_last, torch.stack(alone_last).to(wide), scale_last, doubled)]
    assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts, where + ", against each sequence alone")


def a_nonfinite_input_stays_in_its_sequence(backend, dtype, data):
    """A NaN or inf in one sequence reaches no state of another, forward or reverse."""
    a, kv, h0, cu_seqlens, where = _packed_inputs(backend, dtype, data)
    spans = [(s, e) for s, e in sequences(cu_seqlens) if e > s]
    if len(spans) < 2 or not _in_domain(backend, a, cu_seqlens, scan_references(a, kv, h0, False, cu_seqlens=cu_seqlens)):
        return
    reverse = data.draw(st.booleans(), label="reverse")
    spoiled = data.draw(st.integers(0, len(spans) - 1), label="spoiled sequence")
    start, end = spans[spoiled]
    step = data.draw(st.integers(start, end - 1), label="step")
    value = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]), label="value")
    where_spoilt = data.draw(st.sampled_from(["kv", "a"] + (["h0"] if h0 is not None else [])), label="spoilt")
    clean_h, clean_last = backend(a, kv, h0, reverse=reverse, cu_seqlens=cu_seqlens)
    spoilt = {"a": a.clone(), "kv": kv.clone(), "h0": None if h0 is None else h0.clone()}
    if where_spoilt == "h0":
        spoilt["h0"][[i for i, span in enumerate(sequences(cu_seqlens)) if span == (start, end)][0], 0] = value
    else:
        spoilt[where_spoilt][0, step, 0] = value
    h, h_last = backend(spoilt["a"], spoilt["kv"], spoilt["h0"], reverse=reverse, cu_seqlens=cu_seqlens)
    others = torch.ones(a.shape[1], dtype=torch.bool)
    others[start:end] = False
    index = [i for i, span in enumerate(sequences(cu_seqlens)) if span != (start, end)]
    # the clean call may take the adapter's one-pass path and this one its sequence-by-sequence path:
    # equal within rounding, hence twice the declared tolerance, on the other sequences' every state
    tol = backend.tolerance(dtype)
    doubled = type(tol)(2 * tol.rtol, tol.atol, tol.grad_rtol, tol.domain, tol.norm)
    scale, scale_last = oracle(a.abs(), kv.abs(), None if h0 is None else h0.abs(), reverse=reverse, cu_seqlens=cu_seqlens)
    wide = torch.complex128 if dtype.is_complex else torch.float64
    verdicts = [judge_output("h", h[0, others], clean_h[0, others].to(wide), scale[0, others], doubled),
                judge_output("h_last", h_last[index], clean_last[index].to(wide), scale_last[index], doubled)]
    assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts,
                                                    where + f", a {value} in {where_spoilt} (step {step}), reverse={reverse}")


def reverse_is_flip_scan_flip(backend, dtype, data):
    """reverse=True equals flipping the sequence, scanning forwards and flipping back; and scanning
    the tail backwards, then the head from the tail's final state, equals one backward pass."""
    a, kv, h0, cu_seqlens, where = _packed_inputs(backend, dtype, data)
    a, kv = a[0:1], kv[0:1]
    first = None if h0 is None else h0[:1]
    if not _in_domain(backend, a, None):
        return
    tol = backend.tolerance(dtype)
    h, h_last = backend(a, kv, first, reverse=True)
    ref, ref_last = oracle(a.flip(1), kv.flip(1), first)
    scale, scale_last = oracle(a.abs().flip(1), kv.abs().flip(1), None if first is None else first.abs())
    split = data.draw(st.integers(0, a.shape[1]), label="split")
    tail, state = backend(a[:, split:], kv[:, split:], first, reverse=True)
    head, last = backend(a[:, :split], kv[:, :split], state, reverse=True)
    verdicts = [judge_output("h", h, ref.flip(1), scale.flip(1), tol), judge_output("h_last", h_last, ref_last, scale_last, tol),
                judge_output("h continued", torch.cat([head, tail], dim=1), ref.flip(1), scale.flip(1), tol),
                judge_output("h_last continued", last, ref_last, scale_last, tol)]
    assert all(v.passed for v in verdicts), _failed(backend, dtype, verdicts, where + f", reverse, split at {split}")


LAYOUT_PROPERTIES = (packed_sequences_agree_with_oracle, packed_equals_each_sequence_alone,
                     a_nonfinite_input_stays_in_its_sequence, reverse_is_flip_scan_flip)
