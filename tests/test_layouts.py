"""Reverse and packed variable-length scans: every backend (native path or the adapter) against the
oracle, which scans each sequence on its own; the oracle against worked numbers; bad offsets refused.

The properties live in harness/check/layout_agreement.py, which the pytest plugin runs on a user's backend."""
import itertools
import re

import pytest
import torch

from scanlab import get_scan_backend, oracle
from scanlab.harness.check import layout_agreement
from scanlab.harness.check.verify import check_scan
from scanlab.impls import layouts
from scanlab.impls.backend import ScanBackend
from scan_params import BACKENDS, property_test

# the layouts' own arithmetic is dtype-independent: a real and a complex dtype in full precision, and
# float32 where the backends' tolerances are widest
DTYPES = (torch.float32, torch.float64, torch.complex128)


def _property(check):
    return property_test(check, DTYPES, max_examples=10)


test_packed_sequences_agree_with_oracle = _property(layout_agreement.packed_sequences_agree_with_oracle)
test_packed_equals_each_sequence_alone = _property(layout_agreement.packed_equals_each_sequence_alone)
test_a_nonfinite_input_stays_in_its_sequence = _property(layout_agreement.a_nonfinite_input_stays_in_its_sequence)
test_reverse_is_flip_scan_flip = _property(layout_agreement.reverse_is_flip_scan_flip)

# three packed sequences, worked by hand: [0.5, 0.5 | (empty) | 2, 0.25, 4] with kv = 1 everywhere,
# h0 = [2, 5, 3] (D = 1)
A = torch.tensor([0.5, 0.5, 2.0, 0.25, 4.0], dtype=torch.float64).reshape(1, 5, 1)
KV = torch.ones(1, 5, 1, dtype=torch.float64)
H0 = torch.tensor([[2.0], [5.0], [3.0]], dtype=torch.float64)
CU = torch.tensor([0, 2, 2, 5])
# forward: 0.5*2+1 = 2, 0.5*2+1 = 2 | - | 2*3+1 = 7, 0.25*7+1 = 2.75, 4*2.75+1 = 12
FORWARD = ([2.0, 2.0, 7.0, 2.75, 12.0], [2.0, 5.0, 12.0])
# reverse: t=1: 0.5*2+1 = 2, t=0: 0.5*2+1 = 2 | - | t=4: 4*3+1 = 13, t=3: 0.25*13+1 = 4.25, t=2: 2*4.25+1 = 9.5
REVERSE = ([2.0, 2.0, 9.5, 4.25, 13.0], [2.0, 5.0, 9.5])


@pytest.mark.parametrize("reverse,expected", [(False, FORWARD), (True, REVERSE)])
def test_the_oracle_scans_each_packed_sequence_on_its_own(reverse, expected):
    h, h_last = oracle(A, KV, H0, reverse=reverse, cu_seqlens=CU)
    assert h.flatten().tolist() == expected[0] and h_last.flatten().tolist() == expected[1]


@pytest.mark.parametrize("name", sorted(BACKENDS))
@pytest.mark.parametrize("reverse,expected", [(False, FORWARD), (True, REVERSE)])
def test_every_backend_gives_the_worked_example(name, reverse, expected):
    backend = BACKENDS[name]
    if torch.float64 not in backend.dtypes:
        pytest.skip(f"{name} does not take float64")
    h, h_last = backend(A, KV, H0, reverse=reverse, cu_seqlens=CU)
    torch.testing.assert_close(h.flatten(), torch.tensor(expected[0], dtype=torch.float64))
    torch.testing.assert_close(h_last.flatten(), torch.tensor(expected[1], dtype=torch.float64))
    assert h_last.data_ptr() != H0.data_ptr() and h_last[1].item() == 5.0  # the empty one: a copy of its h0


def test_an_adapter_that_drops_a_sequences_h0_is_caught_by_the_check(monkeypatch):
    """The check can fail: an adapter that forgets to fold h0[i] into each sequence's first step."""
    real = layouts.varlen_adapter

    def forgetful(dense, *args):
        scan = real(dense, *args)
        return lambda a, kv, h0, cu_seqlens: scan(a, kv, None, cu_seqlens)
    monkeypatch.setattr(layouts, "varlen_adapter", forgetful)
    verdicts = check_scan(get_scan_backend("assoc"), A, KV, H0, gradients=True, cu_seqlens=CU)
    assert {v.quantity for v in verdicts if not v.passed} >= {"h", "h_last", "grad_h0"}


def test_the_adapter_maps_the_gradients_at_a_boundary_back_to_a_and_h0():
    """dL/da at a sequence's first step is dL/dh_s conj(h0[i]), and dL/dh0[i] gets dL/dh_s conj(a_s):
    the zero gate the adapter puts there must not zero them."""
    a, kv, h0 = (t.clone().requires_grad_() for t in (A, KV, H0))
    h, h_last = get_scan_backend("assoc")(a, kv, h0, cu_seqlens=CU)
    grad_a, grad_h0 = torch.autograd.grad(h[0, 2, 0], (a, h0))  # h_2 = a_2 h0[2] + kv_2
    assert grad_a[0, 2, 0].item() == 3.0 and grad_h0.flatten().tolist() == [0.0, 0.0, 2.0]


def test_native_layouts_are_used_where_declared_and_the_adapters_elsewhere():
    calls = []

    def native(a, kv, h0, **layout):
        calls.append(sorted(layout))
        return get_scan_backend("sequential").fn(a, kv, h0, **layout)
    both = ScanBackend(name="both", kind="scan", fn=native, native_layouts=(layouts.REVERSE, layouts.VARLEN))
    both(A, KV, H0, reverse=True, cu_seqlens=CU)
    varlen_only = ScanBackend(name="varlen_only", kind="scan", fn=native, native_layouts=(layouts.VARLEN,))
    varlen_only(A, KV, H0, reverse=True, cu_seqlens=CU)  # reverse adapted around its own varlen path
    neither = ScanBackend(name="neither", kind="scan", fn=native)
    neither(A, KV, H0, cu_seqlens=CU)
    assert calls == [["cu_seqlens", "reverse"], ["cu_seqlens"], []]


@pytest.mark.parametrize("cu_seqlens,match", [
    (torch.tensor([1, 2, 5]), "cu_seqlens must start at 0 and end at L = 5"),
    (torch.tensor([0, 2, 4]), "cu_seqlens must start at 0 and end at L = 5"),
    (torch.tensor([0, 3, 2, 5]), "cu_seqlens must be non-decreasing"),
    (torch.tensor([0.0, 5.0]), "cu_seqlens must be int32 or int64"),
    (torch.tensor([[0, 5]]), r"cu_seqlens must have shape \(N \+ 1,\)"),
    ([0, 5], "cu_seqlens must be a torch.Tensor"),
])
def test_bad_offsets_are_refused_by_name(cu_seqlens, match):
    with pytest.raises((ValueError, TypeError), match=match):
        get_scan_backend("assoc")(A, KV, None, cu_seqlens=cu_seqlens)


def test_packed_rows_and_states_are_checked_against_the_offsets():
    with pytest.raises(ValueError, match="cu_seqlens packs sequences into one row: a and kv must be .1, L, D., got B = 2"):
        get_scan_backend("assoc")(A.expand(2, 5, 1), KV.expand(2, 5, 1), None, cu_seqlens=CU)
    with pytest.raises(ValueError, match=r"h0 must have shape \(N, D\), one state per packed sequence, = \(3, 1\)"):
        get_scan_backend("assoc")(A, KV, H0[:2], cu_seqlens=CU)
    with pytest.raises(TypeError, match="reverse must be True or False"):
        get_scan_backend("assoc")(A, KV, None, reverse="yes")


def test_all_empty_sequences_return_their_states():
    a = torch.empty(1, 0, 2)
    h, h_last = get_scan_backend("native")(a, a, torch.ones(3, 2), cu_seqlens=torch.tensor([0, 0, 0, 0]))
    assert h.shape == (1, 0, 2) and h_last.tolist() == [[1.0, 1.0]] * 3


def test_list_says_which_layouts_each_backend_runs_natively(capsys):
    from scanlab import run_bench

    assert run_bench.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "differentiable: True; reverse: native, varlen: native; from: scanlab\n    plain loop" in out  # sequential
    assert "reverse: adapted, varlen: adapted; from: scanlab\n    odd/even associative scan" in out  # assoc
    assert "reverse: native, varlen: native; from: scanlab\n    compiled sequential pass (numba)" in out  # native
    assert "reverse: native, varlen: adapted; from: scanlab\n    torch._higher_order_ops" in out  # torch_hop


def test_a_plugin_declares_its_native_layouts_and_nothing_else():
    from scanlab import Tolerance, scan_backend

    promise = {torch.float64: Tolerance(1e-12, 1e-300, 1e-12)}
    mine = scan_backend("mine", get_scan_backend("sequential").fn, dtypes=(torch.float64,), tolerances=promise,
                        native_layouts=("reverse", "varlen"))
    assert mine.native_layouts == ("reverse", "varlen")
    assert all(v.passed for v in check_scan(mine, A, KV, H0, reverse=True, cu_seqlens=CU))
    with pytest.raises(ValueError, match="native_layouts: mine declares \\['sideways'\\]"):
        scan_backend("mine", get_scan_backend("sequential").fn, tolerances=promise, dtypes=(torch.float64,),
                     native_layouts=("sideways",))


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_a_state_that_overflows_in_one_sequence_reaches_no_other(name):
    """Found in review: finite inputs whose states overflow took the adapter's one-pass path, where
    inf times the next sequence's zero gate is NaN (chunked, native, jax_scan gave NaN there)."""
    backend = BACKENDS[name]
    if torch.float64 not in backend.dtypes:
        pytest.skip(f"{name} does not take float64")
    a = torch.tensor([1e200, 1e200, 1e200, 0.5], dtype=torch.float64).reshape(1, 4, 1)
    kv = torch.ones(1, 4, 1, dtype=torch.float64)
    for reverse, cu in ((False, torch.tensor([0, 3, 4])), (True, torch.tensor([0, 1, 4]))):
        flipped = a.flip(1) if reverse else a
        h, h_last = backend(flipped, kv, None, reverse=reverse, cu_seqlens=cu)
        lone = 0 if reverse else 3  # the one-step sequence: h = 0.5 * 0 + 1
        assert h[0, lone, 0].item() == 1.0 and h_last[0 if reverse else 1, 0].item() == 1.0


def test_a_log_space_backend_goes_sequence_by_sequence():
    """Found in review: heinsen clamps a zero gate to the dtype's tiny, so tiny * 1e300 = 2e-8 of one
    sequence's state reached the next (2225x its tolerance in float64)."""
    a = torch.tensor([1.0, 1e300, 0.5, 0.9], dtype=torch.float64).reshape(1, 4, 1)
    kv = torch.ones(1, 4, 1, dtype=torch.float64)
    verdicts = check_scan(get_scan_backend("heinsen"), a, kv, None, gradients=True, cu_seqlens=torch.tensor([0, 2, 4]))
    assert all(v.passed for v in verdicts), verdicts


def test_the_sequence_by_sequence_path_asks_the_backends_limits_of_each_sequence():
    """A kernel for power-of-two lengths only: the whole row of 8 is one, its sequences of 3 and 5 are not."""
    from scanlab.impls.backend import UnsupportedInputError

    limited = ScanBackend(name="pow2", kind="scan", fn=get_scan_backend("sequential").fn,
                          limits=lambda a, kv, h0: None if a.shape[1] & (a.shape[1] - 1) == 0 else "L a power of two")
    kv = torch.ones(1, 8, 1)
    kv[0, 4, 0] = float("nan")  # non-finite: the adapter goes sequence by sequence
    with pytest.raises(UnsupportedInputError, match="L a power of two"):
        limited(torch.full((1, 8, 1), 0.5), kv, None, cu_seqlens=torch.tensor([0, 3, 8]))


def test_the_oracle_refuses_bad_offsets_by_name():
    with pytest.raises(ValueError, match="cu_seqlens must start at 0 and end at L = 5"):
        oracle(A, KV, None, cu_seqlens=torch.tensor([0, 2, 4]))


LEAKY = '''import torch
from scanlab.impls.plugins import scan_backend
from scanlab.impls.tolerances import Tolerance


def _leaky(a, kv, h0, cu_seqlens=None):
    """A packed path that forgets the boundaries: the whole row as one sequence from h0[0]."""
    h = torch.zeros_like(kv[:, 0]) if h0 is None else h0 if cu_seqlens is None else h0[:1]
    states = []
    for t in range(kv.shape[1]):
        h = a[:, t] * h + kv[:, t]
        states.append(h)
    out = torch.stack(states, 1)
    return out, out[:, -1] if cu_seqlens is None else out[0, (cu_seqlens[1:] - 1).clamp_min(0)]


leaky = scan_backend("leaky", _leaky, dtypes=(torch.float64,), native_layouts=("varlen",),
                     tolerances={torch.float64: Tolerance(rtol=1e-12, atol=1e-300, grad_rtol=1e-12)})
'''


def test_the_accuracy_sweep_judges_each_layout_in_rows_of_its_own(tmp_path):
    """A varlen path that leaks state across boundaries passes every dense and reverse case and fails
    the packed ones: exit 1 naming the layout, and the report's layout section shows where."""
    import subprocess
    import sys
    from pathlib import Path

    from scanlab.harness.results.records import load_rows

    (tmp_path / "leaky_kernels.py").write_text(LEAKY)
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "run_bench.py"), "accuracy", "--backend-module",
                           str(tmp_path / "leaky_kernels.py"), "--backends", "leaky", "--lengths", "40",
                           "--dtypes", "float64", "--channels", "2", "--no-progress", "--reports", str(tmp_path)],
                          capture_output=True, text=True, cwd=root, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    named = [line.split(":")[0].strip() for line in done.stdout.splitlines() if line.startswith("  accuracy scan leaky")]
    assert "accuracy scan leaky float64 h [varlen]" in named and "accuracy scan leaky float64 h [varlen+reverse]" in named
    assert not any("[reverse]" in n or n.endswith(" h") for n in named), named  # dense and reverse are right
    rows = load_rows(tmp_path / next(p.name for p in tmp_path.iterdir() if p.is_dir()))
    packed = rows[(rows["layout"] == "varlen") & (rows["metric"] == "passed") & (rows["mode"] == "h")]
    assert len(packed) == 3 and set(packed["B"]) == {1}  # the quick preset's 3 gate regimes, one packed row each
    report = subprocess.run([sys.executable, str(root / "run_bench.py"), "report", "--reports", str(tmp_path)],
                            capture_output=True, text=True, cwd=root, timeout=600)
    text = next(tmp_path.glob("*/accuracy.md")).read_text()
    section = text.split("## Reverse and packed sequences")[1]
    [leaky_row] = [line for line in section.splitlines() if line.startswith("| leaky")]
    cells = [re.fullmatch(r"(\S+) \((\d+)/(\d+)\)", cell.strip()) for cell in leaky_row.split("|")[3:7]]
    (dense, reverse, varlen, both) = [(float(m[1]), int(m[2]), int(m[3])) for m in cells]
    assert dense[0] <= 1 and dense[1] == dense[2] == 15 and reverse[0] <= 1 and reverse[1] == 15, (report.stderr, leaky_row)
    assert varlen[0] > 1 and varlen[1] < varlen[2] == 15 and both[0] > 1


def test_records_from_before_layouts_are_dense_cases(tmp_path):
    import json

    from scanlab.harness.results.case_key import CaseKey
    from scanlab.harness.results.records import load_rows

    old = {"suite": "perf", "family": "scan", "device": "cpu", "dtype": "float32", "mode": "forward", "B": 1,
           "L": 8, "D": 2, "N": 0, "backend": "assoc", "metric": "time_s", "value": 1.0}
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps({**old, "backend": "native", "layout": ""}) + "\n")
    assert load_rows(path)["layout"].tolist() == ["dense", "dense"]
    assert CaseKey.from_row(old).layout == "dense"


def test_the_varlen_perf_family_times_packed_rows_beside_dense_ones_and_fails_a_wrong_packed_path(tmp_path):
    """Packed and dense groups of the same (1, L, D), each with its floor; a packed path that leaks
    state is checked before it is timed: no time, exit 1; the report puts the two side by side."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from scanlab.harness.results.records import load_rows

    (tmp_path / "leaky_kernels.py").write_text(LEAKY)
    root = Path(__file__).resolve().parent.parent
    run = lambda *argv: subprocess.run([sys.executable, str(root / "run_bench.py"), *argv], capture_output=True,
                                       text=True, cwd=root, timeout=600)
    done = run("perf", "--family", "varlen", "--backend-module", str(tmp_path / "leaky_kernels.py"), "--backends",
               "leaky,native", "--lengths", "100", "--dtypes", "float64", "--channels", "3", "--modes", "forward",
               "--rounds", "2", "--no-memory", "--no-progress", "--reports", str(tmp_path))
    assert done.returncode == 1 and re.search(r"perf varlen leaky float64 \S+ \[varlen\]:", done.stdout), done.stdout
    rows = load_rows(next(tmp_path.glob("*/runs/perf-varlen-*.jsonl")))
    times = rows[rows["metric"] == "time_s"].set_index(["backend", "layout"])["value"]
    assert set(rows["B"]) == {1} and set(rows["family"]) == {"varlen"}
    assert pd.isna(times["leaky", "varlen"]) and times["leaky", "dense"] > 0 and times["native", "varlen"] > 0
    assert times["floor", "varlen"] > 0 and times["floor", "dense"] > 0  # each group against its own floor
    run("report", "--reports", str(tmp_path))
    section = next(tmp_path.glob("*/perf-varlen.md")).read_text().split("## Packed sequences beside dense ones")[1]
    [leaky] = [line for line in section.splitlines() if line.startswith("| leaky")]
    [native] = [line for line in section.splitlines() if line.startswith("| native")]
    assert leaky.split("|")[2].strip() == "native" and leaky.split("|")[5].strip() == "-"  # declared native, no time
    assert all(float(cell) > 0 for cell in native.split("|")[3:8])


def test_fla_recurrent_hgrn_hands_packed_sequences_to_flas_own_cu_seqlens(monkeypatch):
    """The wiring, on a CPU stand-in for fla (its kernels need a GPU): log gates, each sequence's start as
    initial_state, fla's final states as h_last, int64 offsets as fla's examples use."""
    import sys
    import types

    from scanlab.impls.scan import fla_hgrn

    seen = {}

    def fused_recurrent_hgrn(x, g, initial_state=None, output_final_state=False, cu_seqlens=None):
        seen.update(cu_dtype=cu_seqlens.dtype, final=output_final_state)
        return get_scan_backend("sequential").fn(g.exp(), x, initial_state, cu_seqlens=cu_seqlens)

    hgrn = types.ModuleType("fla.ops.hgrn")
    hgrn.fused_recurrent_hgrn = fused_recurrent_hgrn
    for name, module in (("fla", types.ModuleType("fla")), ("fla.ops", types.ModuleType("fla.ops")), ("fla.ops.hgrn", hgrn)):
        monkeypatch.setitem(sys.modules, name, module)
    positive = A.abs() + 0.1
    h, h_last = fla_hgrn._recurrent_scan(positive, KV, H0, cu_seqlens=CU.int())
    want, want_last = oracle(positive, KV, H0, cu_seqlens=CU)
    torch.testing.assert_close(h, want)
    torch.testing.assert_close(h_last, want_last)
    assert seen == {"cu_dtype": torch.int64, "final": True}


def test_packed_rows_can_put_a_boundary_near_every_chunk_edge():
    """Not only the first: chunked kernels go wrong where a boundary falls inside a later chunk."""
    from hypothesis import given, settings

    from scanlab.harness.check.strategies import boundaries_at_every_edge

    @settings(max_examples=50, database=None, deadline=None)
    @given(boundaries_at_every_edge((8, 64), 300))
    def check(lengths):
        cuts = set(itertools.accumulate(lengths))
        edge = 64 if max(lengths) > 20 else 8
        assert sum(lengths) <= 300 and all(length >= 0 for length in lengths)
        assert all(cuts & {m * edge - 1, m * edge, m * edge + 1} for m in range(1, sum(lengths) // edge + 1)), lengths

    check()
