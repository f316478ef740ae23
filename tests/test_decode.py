"""The decode family: every step checked before it is timed, the floor in the same rounds, generation
end to end checked across modes, and the report's per-call overhead fit."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scanlab.harness.render.decode_report import per_call_overhead
from scanlab.harness.results.records import load_rows

ROOT = Path(__file__).resolve().parent.parent
FORGETFUL = '''import torch
from scanlab.impls.plugins import scan_backend
from scanlab.impls.tolerances import Tolerance


def _forgets(a, kv, h0):
    """Right from zero, wrong from a state: it drops h0 (a decode step loses the whole past)."""
    h = torch.zeros_like(kv[:, 0])
    states = []
    for t in range(kv.shape[1]):
        h = a[:, t] * h + kv[:, t]
        states.append(h)
    out = torch.stack(states, 1)
    return out, out[:, -1]


forgets = scan_backend("forgets", _forgets, dtypes=(torch.float32, torch.float64),
                       tolerances={d: Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-4) for d in (torch.float32, torch.float64)})
'''


def test_overhead_is_the_intercept_of_time_against_size():
    sizes = [64, 4096, 262144]
    overhead, slope = per_call_overhead(sizes, [5e-6 + 1e-10 * s for s in sizes])
    assert overhead == pytest.approx(5e-6, rel=1e-6) and slope == pytest.approx(1e-10, rel=1e-6)
    assert per_call_overhead([64, 64], [1e-6, 2e-6]) is None  # one size: nothing to fit


def test_every_step_is_checked_before_it_is_timed_and_generation_agrees_across_modes(tmp_path):
    (tmp_path / "forgets_kernels.py").write_text(FORGETFUL)
    run = lambda *argv: subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *argv], capture_output=True,
                                       text=True, cwd=ROOT, timeout=600)
    done = run("perf", "--family", "decode", "--backend-module", str(tmp_path / "forgets_kernels.py"), "--backends",
               "forgets,native", "--batch", "2", "--channels", "8", "--lengths", "4", "--rounds", "2", "--no-memory",
               "--no-progress", "--reports", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    failing = {line.split()[2] for line in done.stdout.splitlines() if line.startswith("  perf decode")}
    assert failing == {"scan:forgets", "gate_loop_operator:forgets", "gate_loop:forgets"}, done.stdout
    rows = load_rows(next(tmp_path.glob("*/runs/perf-decode-*.jsonl")))
    times = rows[rows["metric"] == "time_s"].set_index("backend")["value"].map(pd.to_numeric)
    assert times[[b for b in times.index if b.endswith(":forgets")]].isna().all()
    assert (times[["scan:native", "gate_loop_operator:native", "gate_loop:native", "floor"]] > 0).all()
    multiples = rows[rows["metric"] == "floor_multiple"]["backend"].tolist()
    assert sorted(multiples) == ["gate_loop_operator:native", "scan:native"]  # the layers are not judged on it
    generation = rows[rows["backend"].str.startswith("generate:")]
    checks = generation[generation["metric"] == "worst_ratio"]["value"].map(float)
    assert len(checks) == 2 and (checks <= 1).all()  # recurrent steps' logits match the conv mode's
    assert set(generation[generation["metric"] == "tokens_per_s"]["backend"]) == {"generate:recurrent", "generate:conv"}
    run("report", "--reports", str(tmp_path))
    text = next(tmp_path.glob("*/perf-decode.md")).read_text()
    section = text.split("## Decode: one generation step")[1]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert table[1].startswith("| floor ") and "| scan:native " in section and "### Generation end to end" in section
    [native] = [line for line in table if line.startswith("| scan:native ")]
    assert "x)" in native.split("|")[2] and native.split("|")[3].strip() == "-"  # x floor; one size: no overhead fit


@pytest.mark.parametrize("path", ["gss", "lm"])
def test_a_gss_or_lm_step_from_its_cache_is_checked_against_the_full_forward(path):
    from scanlab.harness.results.case_key import CaseKey
    from scanlab.harness.run.cases import build

    key = CaseKey(family="decode", device="cpu", dtype="float32", mode="forward", B=2, L=1, D=8, N=0,
                  backend=f"{path}:assoc")
    case = build(key)
    verdicts = case.check()
    assert case.refusal is None and verdicts and all(v.passed for v in verdicts)
    case.run()
    half = build(key.replace(dtype="bfloat16"))
    assert half.refusal == "the layers declare tolerances for float32, float64 only" and half.run is None
